"""A real Prometheus of one test's own, scraping the given targets every second.

Tests of the metrics figures compare against the real thing, so this starts the pinned
Prometheus (3.13.1, the stack's version, as ``make backends`` builds it; see
:mod:`tests.support.backends`) on a free loopback port with its storage in the test's folder.
It can be killed and started again on the same port and storage, as a server that crashes and
comes back. Starting and waiting are async: the app under test is served by the same event
loop, and blocking it would make Prometheus's scrapes of it fail. An unbuilt ``prometheus``
fails the test with how to build it; it never skips.

Ready is not scraping: Prometheus answers ``/-/ready`` within a fraction of a second, but its
scrape manager takes the discovered targets only at its first reload, 5 s after start (the
hidden ``--scrape.discovery-reload-interval``), and scrapes each at its own offset within the
interval after that. :meth:`PrometheusProcess.start` waits for readiness only; a test that
needs data waits for it with :meth:`~PrometheusProcess.wait_for_samples` or
:meth:`~PrometheusProcess.wait_for_scrape`, whose timeouts allow for those 5 to 6 s.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import httpx
import yaml

from tests.support.backends import backend_binary
from tests.support.process import LoggedProcess
from tests.support.servers import free_port

_START_ATTEMPTS = 3


def simple_config(
    targets: Sequence[str], scrape_interval: str, rule_files: Sequence[str | Path]
) -> dict[str, Any]:
    """One job ``simulator`` scraping ``targets`` at ``/metrics``."""
    return {
        "global": {
            "scrape_interval": scrape_interval,
            "scrape_timeout": scrape_interval,
            "evaluation_interval": scrape_interval,
        },
        "rule_files": [str(path) for path in rule_files],
        "scrape_configs": [
            {
                "job_name": "simulator",
                "metrics_path": "/metrics",
                "static_configs": [{"targets": list(targets)}],
            }
        ],
    }


class PrometheusProcess:
    """``prometheus`` scraping ``targets`` (``host:port``, path ``/metrics``) as job
    ``simulator``; ``extra_args`` are added to its command line. ``config``, given the port,
    returns another configuration document to run instead."""

    def __init__(
        self,
        workdir: Path,
        targets: Sequence[str],
        scrape_interval: str = "1s",
        rule_files: Sequence[str | Path] = (),
        extra_args: Sequence[str] = (),
        config: Callable[[int], dict[str, Any]] | None = None,
    ) -> None:
        self._binary = str(backend_binary("prometheus"))
        self._workdir = workdir
        self._config = workdir / "prometheus.yml"
        self._storage = workdir / "data"
        self._process = LoggedProcess(workdir / "prometheus.log")
        self._extra_args = tuple(extra_args)
        self.port = free_port()
        self._started_once = False
        self._target_count = 0
        self._make_config = config or (
            lambda _port: simple_config(targets, scrape_interval, rule_files)
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self._process.running

    async def start(self, timeout: float = 20.0) -> None:
        """Start (or start again, on the same port and storage) and wait until ready.

        The first start moves to another free port if this one was taken meanwhile.
        """
        if self.running:
            raise RuntimeError("prometheus is already running")
        attempts = 1 if self._started_once else _START_ATTEMPTS
        for _ in range(attempts):
            self._spawn()
            if await self._wait_ready(timeout):
                self._started_once = True
                return
            self.kill()
            if not self._started_once:
                self.port = free_port()
        raise RuntimeError(f"prometheus did not become ready:\n{self.log_tail()}")

    def _spawn(self) -> None:
        document = self._make_config(self.port)
        self._target_count = _static_targets(document)
        self._config.write_text(yaml.safe_dump(document, sort_keys=False))
        command = [
            self._binary,
            f"--config.file={self._config}",
            f"--storage.tsdb.path={self._storage}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--enable-feature=exemplar-storage",
            "--web.enable-lifecycle",
            "--log.level=warn",
            *self._extra_args,
        ]
        self._process.spawn(command)

    async def _wait_ready(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        async with httpx.AsyncClient(timeout=1.0) as client:
            while time.monotonic() < deadline and self.running:
                try:
                    if (await client.get(f"{self.url}/-/ready")).status_code == 200:
                        return True
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(0.05)
        return False

    def kill(self) -> None:
        """SIGKILL, as a crash: no clean shutdown of the storage."""
        self._process.kill()

    def log_tail(self, chars: int = 3000) -> str:
        return self._process.log_tail(chars)

    async def query(self, promql: str) -> list[dict[str, Any]]:
        """The result of an instant query at now (a vector's series)."""
        async with httpx.AsyncClient(timeout=5.0) as client:
            response = await client.get(f"{self.url}/api/v1/query", params={"query": promql})
        body = response.json()
        if body.get("status") != "success":
            raise AssertionError(f"query {promql!r} failed: {body}")
        result: list[dict[str, Any]] = body["data"]["result"]
        return result

    async def wait_for_samples(self, promql: str, timeout: float = 15.0) -> list[dict[str, Any]]:
        """Poll ``promql`` until it answers at least one series; its result."""
        deadline = time.monotonic() + timeout
        while True:
            result = await self.query(promql)
            if result:
                return result
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"no samples for {promql!r} within {timeout:g} s\n{self.log_tail()}"
                )
            await asyncio.sleep(0.2)

    async def wait_for_scrape(self, after: float, timeout: float = 15.0) -> float:
        """Wait until every configured target has been scraped at a time later than ``after``
        (Unix seconds); the time of the oldest of those newest scrapes.

        A target not yet scraped at all has no ``up`` series, so the scrapes are counted
        against the targets of the configuration rather than against the ``up`` series.
        """
        if self._target_count == 0:
            raise ValueError("the configuration scrapes no targets")
        deadline = time.monotonic() + timeout
        while True:
            result = await self.query(f"timestamp(up) > {after:.3f}")
            if len(result) >= self._target_count:
                return min(float(series["value"][1]) for series in result)
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"no scrape after {after:.3f} within {timeout:g} s\n{self.log_tail()}"
                )
            await asyncio.sleep(0.1)

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.kill()


def _static_targets(document: dict[str, Any]) -> int:
    """How many targets a configuration document scrapes (all are static here)."""
    return sum(
        len(group.get("targets", []))
        for job in document.get("scrape_configs") or []
        for group in job.get("static_configs", [])
    )
