"""A real Prometheus running the project's own ``prometheus/prometheus.yml`` and rules.

The configuration is the committed one, loaded and changed only where a test must: targets
point at the test's loopback ports, intervals are 1 s so a test sees data within seconds, and
rule files are absolute paths (optionally replaced by test copies). Job names, metrics paths
and everything else stay as committed, so the recording rules and dashboards are exercised
against the labels they will really see.
"""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Self, TypeVar

import httpx
import yaml

from tests.stack.stackfiles import PROMETHEUS_CONFIG, rule_files
from tests.support.prometheus import prometheus_binary
from tests.support.servers import free_port

T = TypeVar("T")


def project_config(
    targets: Mapping[str, str],
    rules: Sequence[Path],
    interval: str = "1s",
) -> dict[str, Any]:
    """The committed config with job ``name``'s targets replaced by ``targets[name]``."""
    document: dict[str, Any] = yaml.safe_load(PROMETHEUS_CONFIG.read_text(encoding="utf-8"))
    document["global"].update(
        scrape_interval=interval, scrape_timeout=interval, evaluation_interval=interval
    )
    document["rule_files"] = [str(path) for path in rules]
    jobs = {job["job_name"] for job in document["scrape_configs"]}
    if jobs != set(targets):
        raise AssertionError(f"the config scrapes {sorted(jobs)}, the test has {sorted(targets)}")
    for job in document["scrape_configs"]:
        job["static_configs"] = [{"targets": [targets[job["job_name"]]]}]
    return document


class ProjectPrometheus:
    """``prometheus`` with the project's config; ``targets`` maps job name to ``host:port``
    (the ``prometheus`` job is pointed at this process itself)."""

    def __init__(
        self,
        workdir: Path,
        targets: Mapping[str, str],
        rules: Sequence[Path] | None = None,
    ) -> None:
        self._binary = prometheus_binary()
        self.port = free_port()
        self._workdir = workdir
        self._log_path = workdir / "prometheus.log"
        self._config = workdir / "prometheus.yml"
        document = project_config(
            {**targets, "prometheus": f"127.0.0.1:{self.port}"},
            rule_files() if rules is None else rules,
        )
        self._config.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self._client = httpx.AsyncClient(base_url=self.url, timeout=5.0)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self, timeout: float = 20.0) -> None:
        self._spawn()
        assert self._proc is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self._proc.poll() is None:
            try:
                if (await self._client.get("/-/ready")).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.05)
        raise RuntimeError(f"prometheus did not become ready:\n{self.log_tail()}")

    def _spawn(self) -> None:
        self._log = self._log_path.open("ab")
        self._proc = subprocess.Popen(
            [
                self._binary,
                f"--config.file={self._config}",
                f"--storage.tsdb.path={self._workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--enable-feature=exemplar-storage",
                "--log.level=warn",
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(timeout=10)
            self._proc = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def log_tail(self, chars: int = 3000) -> str:
        if not self._log_path.exists():
            return "(no log)"
        return self._log_path.read_text(errors="replace")[-chars:]

    async def api(self, path: str, **params: str) -> Any:
        """``data`` of a successful ``/api/v1/<path>`` answer."""
        response = await self._client.get(f"/api/v1/{path}", params=params)
        body = response.json()
        if body.get("status") != "success":
            raise AssertionError(f"{path} {params} failed: {body}")
        return body["data"]

    async def query(self, promql: str) -> list[dict[str, Any]]:
        """An instant query at now: the series of the resulting vector."""
        data = await self.api("query", query=promql)
        if data["resultType"] != "vector":
            raise AssertionError(f"{promql!r} gave a {data['resultType']}, not a vector")
        result: list[dict[str, Any]] = data["result"]
        return result

    async def alerts(self) -> list[dict[str, Any]]:
        data = await self.api("alerts")
        alerts: list[dict[str, Any]] = data["alerts"]
        return alerts

    async def exemplars(self, promql: str, seconds: float = 120.0) -> list[dict[str, Any]]:
        now = time.time()
        result: list[dict[str, Any]] = await self.api(
            "query_exemplars", query=promql, start=f"{now - seconds:.3f}", end=f"{now:.3f}"
        )
        return result

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
        await self._client.aclose()


async def eventually(
    probe: Callable[[], Awaitable[T]],
    check: Callable[[T], bool],
    *,
    timeout: float,
    interval: float = 0.5,
    what: str,
) -> T:
    """Await ``probe()`` until ``check(result)`` holds; its result, or AssertionError naming
    ``what`` and the last result after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = await probe()
        if check(result):
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout:g} s; last answer: {result!r:.2000}")
        await asyncio.sleep(interval)
