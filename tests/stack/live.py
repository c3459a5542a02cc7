"""A real Prometheus running the project's own ``prometheus/prometheus.yml`` and rules.

The configuration is the committed one, loaded and changed only where a test must: targets
point at the test's loopback ports (static targets in place of the committed service
discovery, such as the simulator job's DNS lookup of every replica), intervals are 1 s so a
test sees data within seconds, and rule files are absolute paths (optionally replaced by test
copies). A job the test runs nothing for may be left out (``None``). Job names, metrics paths
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


Targets = Mapping[str, str | Sequence[str] | None]
"""Job name -> one ``host:port``, several (replicas of the job), or None: the job left out."""


def project_config(targets: Targets, rules: Sequence[Path], interval: str = "1s") -> dict[str, Any]:
    """The committed config with job ``name``'s targets replaced by static ``targets[name]``,
    whatever service discovery the committed job uses; jobs mapped to None are left out."""
    document: dict[str, Any] = yaml.safe_load(PROMETHEUS_CONFIG.read_text(encoding="utf-8"))
    document["global"].update(
        scrape_interval=interval, scrape_timeout=interval, evaluation_interval=interval
    )
    document["rule_files"] = [str(path) for path in rules]
    jobs = {job["job_name"] for job in document["scrape_configs"]}
    if jobs != set(targets):
        raise AssertionError(f"the config scrapes {sorted(jobs)}, the test has {sorted(targets)}")
    kept = []
    for job in document["scrape_configs"]:
        chosen = targets[job["job_name"]]
        if chosen is None:
            continue
        for key in [key for key in job if key.endswith("_sd_configs")]:
            del job[key]
        job["static_configs"] = [{"targets": [chosen] if isinstance(chosen, str) else list(chosen)}]
        kept.append(job)
    document["scrape_configs"] = kept
    return document


class ProjectPrometheus(PrometheusProcess):
    """``prometheus`` with the project's config; ``targets`` maps job name to ``host:port``
    (see ``Targets``; the ``prometheus`` job is pointed at this process itself)."""

    def __init__(
        self, workdir: Path, targets: Targets, rules: Sequence[Path] | None = None
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
