"""The health probes both processes answer the same way: live, ready, and the detailed view.

A process names the components it depends on, each with a probe that raises
``BackendFailure`` when it does not answer; everything else here is shared:

- ``GET /health/live``: 200 while the process serves. No dependency is asked, so a restart
  is never triggered by someone else's outage.
- ``GET /health/ready``: 200 when every component answers, else 503 with ``detail`` naming
  the failing ones and every component's check, so a load balancer or ``depends_on`` waits.
- ``GET /health``: each component's check and a verdict: ``healthy`` (all answer, 200),
  ``degraded`` (only components that ``degrade`` fail, and not all of those: the process
  still serves most of what it is for, 200), ``unhealthy`` (503).

Probes run concurrently and each is bounded by the same timeout, so a dependency that hangs
is an answer (unhealthy, "no answer within N s") within that timeout. A probe may bound itself
(with :func:`bounded`, or the shim's backend boundary) to see its own timeout, as the shim's
monitor does; the bound here is then a safety net ``PROBE_MARGIN`` later.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from failure_lab.errors import BackendFailure

log = logging.getLogger(__name__)

Probe = Callable[[], Awaitable[None]]
"""Returns when the dependency answers; raises ``BackendFailure`` when it does not."""

Verdict = Literal["healthy", "degraded", "unhealthy"]

PROBE_MARGIN = 0.1
"""Seconds the bound here waits past the timeout, so a probe's own bound fires first."""


class ProbeTimeout(BackendFailure):
    timed_out = True


@dataclass(frozen=True, slots=True)
class Component:
    """A dependency of this process, as its health probes see it.

    ``degrades``: its failure alone leaves the process serving (the shim with one of its two
    read backends down); any other component failing makes the process unhealthy.
    """

    name: str
    role: str
    probe: Probe
    degrades: bool = False


class Check(BaseModel):
    status: Literal["healthy", "unhealthy"]
    role: str = Field(description="What the process needs it for.")
    latency_ms: float | None = None
    error: str | None = None


class Health(BaseModel):
    status: Verdict
    timestamp: str
    checks: dict[str, Check]


class Readiness(BaseModel):
    status: Literal["ready", "not_ready"]
    detail: str
    checks: dict[str, Check]


class Liveness(BaseModel):
    status: Literal["alive"] = "alive"
    timestamp: str


def bounded(name: str, probe: Probe, timeout: float) -> Probe:
    """``probe`` bounded by ``timeout`` seconds: running out is a ``ProbeTimeout``."""

    async def run() -> None:
        try:
            async with asyncio.timeout(timeout):
                await probe()
        except TimeoutError:
            raise ProbeTimeout(name, f"no answer within {timeout:g} s") from None

    return run


async def check_all(components: Sequence[Component], timeout: float) -> dict[str, Check]:
    """Every component's check, probed concurrently, each within ``timeout`` seconds.

    One component is probed in the caller's task: a task of its own would cost two more
    turns of the event loop, and a turn is the longest wait a probe has on a loaded process
    (docs/benchmarks.md, "Outside overload")."""
    if len(components) == 1:
        results = [await _check(components[0], timeout)]
    else:
        results = await asyncio.gather(*(_check(c, timeout) for c in components))
    return {c.name: check for c, check in zip(components, results, strict=True)}


async def _check(component: Component, timeout: float) -> Check:
    started = time.perf_counter()
    try:
        await bounded(component.name, component.probe, timeout + PROBE_MARGIN)()
    except BackendFailure as exc:
        what = "did not answer in time" if exc.timed_out else "unavailable"
        return Check(status="unhealthy", role=component.role, error=f"{what}: {exc.message}")
    except Exception as exc:  # a probe's own bug: still an answer, and in the log
        log.exception("the health probe of %s failed", component.name)
        return Check(status="unhealthy", role=component.role, error=f"probe failed: {exc!r}")
    latency = round((time.perf_counter() - started) * 1000, 3)
    return Check(status="healthy", role=component.role, latency_ms=latency)


def verdict(components: Sequence[Component], checks: dict[str, Check]) -> Verdict:
    failing = [c for c in components if checks[c.name].status == "unhealthy"]
    if not failing:
        return "healthy"
    degrading = [c for c in components if c.degrades]
    if all(c.degrades for c in failing) and len(failing) < len(degrading):
        return "degraded"
    return "unhealthy"


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True, slots=True)
class Dependencies:
    """What a process's health probes ask: its components, each bounded by ``timeout``."""

    components: tuple[Component, ...]
    timeout: float


DependenciesOf = Callable[[Request], Dependencies]

_NOT_READY: dict[int | str, dict[str, Any]] = {
    503: {"model": Readiness, "description": "a dependency does not answer"}
}
_UNHEALTHY: dict[int | str, dict[str, Any]] = {503: {"model": Health, "description": "unhealthy"}}


def health_router(dependencies_of: DependenciesOf) -> APIRouter:
    """``/health/live``, ``/health/ready`` and ``/health`` over the dependencies that
    ``dependencies_of`` finds for a request (built in the app's lifespan)."""
    router = APIRouter(tags=["health"])

    @router.get("/health/live", summary="200 while the process serves; asks no dependency")
    async def live() -> Liveness:
        return Liveness(timestamp=now_iso())

    @router.get(
        "/health/ready",
        summary="200 when every dependency answers, 503 naming those that do not",
        response_model=Readiness,
        responses=_NOT_READY,
    )
    async def ready(request: Request) -> JSONResponse:
        deps = dependencies_of(request)
        checks = await check_all(deps.components, deps.timeout)
        failing = [name for name, check in checks.items() if check.status == "unhealthy"]
        if not failing:
            answer = Readiness(status="ready", detail="every dependency answers", checks=checks)
            return JSONResponse(answer.model_dump())
        detail = "; ".join(f"{name} {checks[name].error}" for name in failing)
        answer = Readiness(status="not_ready", detail=f"not ready: {detail}", checks=checks)
        return JSONResponse(answer.model_dump(), status_code=503)

    @router.get(
        "/health",
        summary="Each dependency's check and a verdict: healthy, degraded (200), unhealthy (503)",
        response_model=Health,
        responses=_UNHEALTHY,
    )
    async def health(request: Request) -> JSONResponse:
        deps = dependencies_of(request)
        checks = await check_all(deps.components, deps.timeout)
        answer = Health(status=verdict(deps.components, checks), timestamp=now_iso(), checks=checks)
        code = 503 if answer.status == "unhealthy" else 200
        return JSONResponse(answer.model_dump(), status_code=code)

    return router
