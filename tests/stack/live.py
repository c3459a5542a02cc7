"""A real Prometheus running the project's own ``prometheus/prometheus.yml`` and rules.

The configuration is the committed one, loaded and changed only where a test must: targets
point at the test's loopback ports, intervals are 1 s so a test sees data within seconds, and
rule files are absolute paths (optionally replaced by test copies). Job names, metrics paths
and everything else stay as committed, so the recording rules and dashboards are exercised
against the labels they will really see.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import httpx
import yaml

from tests.stack.stackfiles import PROMETHEUS_CONFIG, rule_files
from tests.support.prometheus import PrometheusProcess

T = TypeVar("T")


def project_config(
    targets: Mapping[str, str | Sequence[str]],
    rules: Sequence[Path],
    interval: str = "1s",
) -> dict[str, Any]:
    """The committed config with job ``name``'s targets replaced by ``targets[name]`` (one
    ``host:port``, or several: replicas of the job)."""
    document: dict[str, Any] = yaml.safe_load(PROMETHEUS_CONFIG.read_text(encoding="utf-8"))
    document["global"].update(
        scrape_interval=interval, scrape_timeout=interval, evaluation_interval=interval
    )
    document["rule_files"] = [str(path) for path in rules]
    jobs = {job["job_name"] for job in document["scrape_configs"]}
    if jobs != set(targets):
        raise AssertionError(f"the config scrapes {sorted(jobs)}, the test has {sorted(targets)}")
    for job in document["scrape_configs"]:
        chosen = targets[job["job_name"]]
        job["static_configs"] = [{"targets": [chosen] if isinstance(chosen, str) else list(chosen)}]
    return document


class ProjectPrometheus(PrometheusProcess):
    """``prometheus`` with the project's config; ``targets`` maps job name to ``host:port``
    (the ``prometheus`` job is pointed at this process itself)."""

    def __init__(
        self,
        workdir: Path,
        targets: Mapping[str, str | Sequence[str]],
        rules: Sequence[Path] | None = None,
    ) -> None:
        chosen = rule_files() if rules is None else rules
        super().__init__(
            workdir,
            (),
            config=lambda port: project_config(
                {**targets, "prometheus": f"127.0.0.1:{port}"}, chosen
            ),
        )

    async def api(self, path: str, **params: str) -> Any:
        """``data`` of a successful ``/api/v1/<path>`` answer."""
        async with httpx.AsyncClient(base_url=self.url, timeout=5.0) as client:
            response = await client.get(f"/api/v1/{path}", params=params)
        body = response.json()
        if body.get("status") != "success":
            raise AssertionError(f"{path} {params} failed: {body}")
        return body["data"]

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
