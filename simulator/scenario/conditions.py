"""What acts on a phase's requests at each moment: the target's constants and the
disruptions active then, combined per route.

Shared by the plan in words (``plan.py``) and the model (``expectations.py``): both must read
a disruption the way ``disruptions.py`` applies it (several of a type at once: outages and
bursts each draw, so the request escapes only if every one spares it; latency spikes add up;
the tightest squeeze wins), with the target's ``FAILURE_LAB_DISRUPTION_*`` constants.
"""

from __future__ import annotations

from dataclasses import dataclass

from failure_lab.settings import Settings
from simulator.options import PipelineOptions
from simulator.routes import ERROR as ERROR_ROUTE
from simulator.routes import LIST, ONE
from simulator.scenario.spec import ScheduledDisruption


@dataclass(frozen=True, slots=True)
class ServerConstants:
    """The settings of the target that the formulas need (a fresh server's by default)."""

    latency_spike_ms: float
    squeeze_rps: float
    users: int
    max_rps: float
    latency_growth_ms: float

    @classmethod
    def of(cls, settings: Settings) -> ServerConstants:
        return cls(
            latency_spike_ms=settings.disruption_latency_spike_ms,
            squeeze_rps=settings.disruption_squeeze_rps,
            users=settings.simulated_users,
            max_rps=settings.max_rps,
            latency_growth_ms=settings.scenario_latency_growth_ms,
        )


@dataclass(frozen=True, slots=True)
class Conditions:
    """What acts on the requests of one step."""

    outage: dict[str, float]
    spike_ms: dict[str, float]
    burst: dict[str, float]
    cache_outage: dict[str, float]
    squeeze: float | None


def conditions_at(
    disruptions: list[ScheduledDisruption], t: float, server: ServerConstants
) -> Conditions:
    """Combined effect per route of the disruptions active at ``t`` seconds into the phase."""
    survive: dict[str, dict[str, float]] = {}
    spike: dict[str, float] = {}
    squeeze: float | None = None
    for planned in disruptions:
        if not planned.at <= t < planned.ends_at:
            continue
        routes = planned.endpoints or [ONE, LIST, ERROR_ROUTE]
        if planned.type == "rate_limit_squeeze":
            limit = (1.0 - planned.severity) * server.squeeze_rps
            squeeze = limit if squeeze is None else min(squeeze, limit)
        for route in routes:
            if planned.type == "db_latency_spike":
                spike[route] = spike.get(route, 0.0) + planned.severity * server.latency_spike_ms
            elif planned.type != "rate_limit_squeeze":
                kept = survive.setdefault(planned.type, {})
                kept[route] = kept.get(route, 1.0) * (1.0 - planned.severity)
    hit = {kind: {r: 1.0 - v for r, v in routes.items()} for kind, routes in survive.items()}
    return Conditions(
        outage=hit.get("db_outage", {}),
        spike_ms=spike,
        burst=hit.get("error_burst", {}),
        cache_outage=hit.get("cache_outage", {}),
        squeeze=squeeze,
    )


def refused_share(options: PipelineOptions, offered: float, squeeze: float | None) -> float:
    """Steady share refused with 429 at ``offered`` req/s: the tighter of the two limits."""
    limits = [limit for limit in (options.rate_limit, squeeze) if limit is not None and limit > 0]
    if squeeze == 0:
        return 1.0
    if not limits or offered <= 0:
        return 0.0
    return max(0.0, 1.0 - min(limits) / offered)
