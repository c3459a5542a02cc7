"""Scenario jobs: named load shapes, request mixes and option schedules.

A scenario is three functions of the elapsed time: the rate to send at, the request to send
next, and the pipeline options the request carries. Keeping them as data here, apart from
the engine that sends and the manager that runs jobs, lets the tests measure each shape
against its definition without a server, and lets a scenario file name a shape by its name.

- ``normal``: ``max_rps`` from start to end, one phase ``steady``.
- ``peak``: linear ramp 0 to ``max_rps`` over the first quarter (``ramp_up``), hold to three
  quarters (``hold``), linear ramp back to 0 (``ramp_down``).
- ``error_injection``: ``max_rps``; exactly 3 requests in 10 go to the error endpoint at
  errorRate 0.5, evenly interleaved, the rest rotate over the chosen endpoints.
- ``latency_degradation``: ``max_rps``; the database latency each request asks for grows
  linearly from the payload's ``db_latency`` by ``latency_growth_ms`` over the run
  ("network congestion", mapped onto this service's slow database).
- ``stress``: ``max_rps`` at once (by default the server's cap), no ramp.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Final

from failure_lab.control import ScenarioName
from simulator.generator.arrivals import Rate
from simulator.generator.planner import ERROR, PlannedRequest, RequestPlanner, RequestSource
from simulator.options import PipelineOptions

ERROR_SHARE: Final = 0.3
ERROR_RATE: Final = 0.5
RAMP_SHARE: Final = 0.25

OptionsSchedule = PipelineOptions | Callable[[float], PipelineOptions]


@dataclass(frozen=True, slots=True)
class Stage:
    """A named part of a scenario's run, ``start`` to ``end`` seconds after it began."""

    name: str
    start: float
    end: float


@dataclass(frozen=True, slots=True)
class ScenarioPlan:
    scenario: ScenarioName
    duration: float
    peak_rps: float
    rate: Rate
    stages: tuple[Stage, ...]
    requests: RequestSource
    options: OptionsSchedule
    endpoints: tuple[str, ...]

    def rate_at(self, elapsed: float) -> float:
        if not 0 <= elapsed <= self.duration:
            return 0.0
        return float(self.rate(elapsed)) if callable(self.rate) else float(self.rate)

    def stage_at(self, elapsed: float) -> Stage:
        for stage in self.stages:
            if elapsed < stage.end:
                return stage
        return self.stages[-1]


class ErrorMix:
    """Sends ``share`` of the requests to the error endpoint, evenly spread (3 in every 10)."""

    def __init__(self, normal: RequestSource, errors: RequestSource, share: float) -> None:
        if not 0.0 < share < 1.0:
            raise ValueError("share must be within (0, 1)")
        self._normal = normal
        self._errors = errors
        self._share = share
        self._credit = 0.0

    def next(self) -> PlannedRequest:
        self._credit += self._share
        if self._credit >= 1.0 - 1e-9:
            self._credit -= 1.0
            return self._errors.next()
        return self._normal.next()


def plan_scenario(
    scenario: ScenarioName,
    *,
    duration: float,
    max_rps: float,
    endpoints: Sequence[str] | None,
    options: PipelineOptions,
    users: int,
    rng: random.Random,
    latency_growth_ms: float,
    latency_ceiling_ms: float = math.inf,
) -> ScenarioPlan:
    """The plan of one scenario job; ``endpoints`` None means the default rotation.

    Raises ``ValueError`` for a combination that cannot run (e.g. error_injection with only
    the error endpoint to rotate over).
    """
    if not (duration > 0 and math.isfinite(duration)):
        raise ValueError("duration must be a finite number of seconds > 0")
    if not (max_rps > 0 and math.isfinite(max_rps)):
        raise ValueError("max_rps must be a finite number > 0")
    stages: tuple[Stage, ...] = (Stage("steady", 0.0, duration),)
    rate: Rate = max_rps
    schedule: OptionsSchedule = options
    if scenario == "error_injection":
        normal = [name for name in endpoints or () if name != ERROR] if endpoints else None
        if normal is not None and not normal:
            raise ValueError(
                "error_injection sends 70 % of its requests to the chosen endpoints besides "
                "the error endpoint; choose at least one other"
            )
        requests: RequestSource = ErrorMix(
            RequestPlanner(users, rng, normal),
            RequestPlanner(users, rng, [ERROR], error_rate=ERROR_RATE),
            ERROR_SHARE,
        )
        cycle = (*(normal or RequestPlanner(users, rng).cycle), ERROR)
    else:
        planner = RequestPlanner(users, rng, endpoints, error_rate=ERROR_RATE)
        requests, cycle = planner, planner.cycle
    if scenario == "peak":
        rate = peak_shape(max_rps, duration)
        up, down = RAMP_SHARE * duration, (1 - RAMP_SHARE) * duration
        stages = (
            Stage("ramp_up", 0.0, up),
            Stage("hold", up, down),
            Stage("ramp_down", down, duration),
        )
    elif scenario == "latency_degradation":
        schedule = degrading(options, latency_growth_ms, duration, latency_ceiling_ms)
        stages = (Stage("degrading", 0.0, duration),)
    return ScenarioPlan(
        scenario=scenario,
        duration=duration,
        peak_rps=max_rps,
        rate=rate,
        stages=stages,
        requests=requests,
        options=schedule,
        endpoints=tuple(dict.fromkeys(cycle)),
    )


def peak_shape(max_rps: float, duration: float) -> Callable[[float], float]:
    """0 -> ``max_rps`` over the first quarter, hold, ``max_rps`` -> 0 over the last."""
    ramp = RAMP_SHARE * duration

    def rate(elapsed: float) -> float:
        if elapsed < ramp:
            return max_rps * elapsed / ramp
        if elapsed <= duration - ramp:
            return max_rps
        return max(0.0, max_rps * (duration - elapsed) / ramp)

    return rate


def degrading(
    options: PipelineOptions, growth_ms: float, duration: float, ceiling_ms: float = math.inf
) -> Callable[[float], PipelineOptions]:
    """Options whose database latency grows linearly by ``growth_ms`` over ``duration``, never
    past ``ceiling_ms`` (the bound a request may ask for), rounded to whole milliseconds so
    consecutive requests share one encoded header."""
    base = options.db_latency_ms

    def at(elapsed: float) -> PipelineOptions:
        share = min(1.0, max(0.0, elapsed / duration))
        latency = min(ceiling_ms, round(base + growth_ms * share))
        return replace(options, db_latency_ms=latency)

    return at
