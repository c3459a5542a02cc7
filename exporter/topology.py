"""The topology of ``GET /v1/topology``: nodes, edges and their status from the figures' answers.

The sources answer sums, quantiles and gauges (:mod:`exporter.topology_figures`); here they are
put on the request path: traffic generator -> each replica -> rate limiter -> cache ->
database, the database's retries an edge from the database to itself. A node's figures are its
own operations (the limiter's decisions, the cache's operations, the database's attempts), so
where failures enter shows as the deepest node with errors. The generator's own errors are
the requests it had to drop (due while ``FAILURE_LAB_MAX_IN_FLIGHT`` were in flight); what the
service answered it is on the edge to each replica. Ratios use PromQL's IEEE division and
figures are rounded as ``/metrics/json`` rounds them, so a lone replica's node says exactly
what ``/metrics/json`` says for the same window.

Status, from the thresholds of :mod:`failure_lab.topology`: a node is **down** when its error
rate is above 50%, when an outage disruption acts on it (``db_outage`` on the database,
``cache_outage`` on the cache) or, for the database, when a replica's circuit breaker is open;
it is **degraded** when its error rate is above 1%, when any other fault acts on it, or when a
breaker is half-open; **healthy** otherwise.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Final

from exporter.promql import divide
from exporter.sources.base import FigureGroups
from failure_lab.topology import (
    DEGRADED_ERROR_RATE,
    DOWN_ERROR_RATE,
    BreakerState,
    NodeKind,
    NodeStatus,
    Thresholds,
    Topology,
    TopologyEdge,
    TopologyNode,
)

FAULTS: Final[Mapping[str, str]] = {
    "db_outage": "database",
    "db_latency_spike": "database",
    "cache_outage": "cache",
    "error_burst": "service",
    "rate_limit_squeeze": "ratelimiter",
}
"""Which kind of node each disruption type acts on."""
OUTAGES: Final = frozenset({"db_outage", "cache_outage"})
FAILURE_INJECTION: Final = "failure_injection"
BREAKER_ORDER: Final[tuple[BreakerState, ...]] = ("off", "closed", "half_open", "open")
BACKEND_NAMES: Final = {"redis": "redis", "memory": "in-process"}


@dataclass(frozen=True, slots=True)
class _Figures:
    """One node's or edge's numbers before rounding: calls per second, the share that
    failed, and the 99th percentile of their latency."""

    calls: float = 0.0
    error_rate: float = 0.0
    p99_ms: float | None = None


@dataclass(slots=True)
class _State:
    """What the gauges said at the window's end."""

    faults: dict[str, set[str]] = field(default_factory=dict)
    """Fault names by node kind; ``service@<instance>`` for a replica's own."""
    breaker: BreakerState | None = None
    backends: dict[str, str] = field(default_factory=dict)


def build_topology(
    answers: FigureGroups, *, window_seconds: float, timestamp: str, source: str
) -> Topology:
    """The graph of one window from the answers to ``TOPOLOGY``."""
    state = _state(answers)
    sent = _group(answers, "generator.requests", ("sent",))
    dropped = _group(answers, "generator.requests", ("dropped",))
    generator = _Figures(
        sent, _share(dropped, sent + dropped), _p99(answers, "generator.p99_ms", ())
    )
    nodes = [_node("generator", "generator", "traffic generator", None, generator, state)]
    edges: list[TopologyEdge] = []
    answered, limiter = _replicas(answers, state, nodes, edges)
    nodes.append(_node("ratelimiter", "ratelimiter", "rate limiter", None, limiter, state))
    cache, hit_ratio = _cache(answers)
    edges.append(_edge("ratelimiter", "cache", cache))
    nodes.append(_node("cache", "cache", "cache", None, cache, state, hit_ratio=hit_ratio))
    attempts = _one(answers, "database.attempts")
    retries = _one(answers, "database.retries")
    failed = _share(_one(answers, "database.errors"), attempts)
    database = _Figures(attempts, failed, _p99(answers, "database.p99_ms", ()))
    nodes.append(_node("database", "database", "database", None, database, state))
    # Attempts are alike: first attempts and retries fail in the same share.
    per_request = _share(retries, answered)
    first = _Figures(max(0.0, attempts - retries), failed)
    edges.append(_edge("cache", "database", first, retries_per_request=per_request))
    again = _Figures(retries, failed)
    edges.append(_edge("database", "database", again, retries_per_request=per_request))
    return Topology(
        timestamp=timestamp,
        window_seconds=window_seconds,
        source=source,
        thresholds=Thresholds(),
        nodes=nodes,
        edges=edges,
    )


def _replicas(
    answers: FigureGroups, state: _State, nodes: list[TopologyNode], edges: list[TopologyEdge]
) -> tuple[float, _Figures]:
    """Each replica's node and its edges from the generator and to the limiter; the requests
    they answered together, and the limiter's figures (the sum of its callers')."""
    answered = limiter_calls = limiter_failed = 0.0
    for instance in _instances(answers):
        requests = _group(answers, "service.requests", (instance,))
        errors = _group(answers, "service.errors", (instance,))
        replica = _Figures(
            requests, _share(errors, requests), _p99(answers, "service.p99_ms", (instance,))
        )
        answered += requests
        node_id = f"simulator@{instance}" if instance else "simulator"
        title = f"simulator {instance}" if instance else "simulator"
        nodes.append(_node(node_id, "service", title, instance or None, replica, state))
        edges.append(_edge("generator", node_id, replica))
        calls, failed = _limiter(answers, instance)
        limiter_calls += calls
        limiter_failed += failed
        edges.append(_edge(node_id, "ratelimiter", _Figures(calls, _share(failed, calls))))
    return answered, _Figures(limiter_calls, _share(limiter_failed, limiter_calls))


def _instances(answers: FigureGroups) -> list[str]:
    """Every replica seen: that answered requests in the window, or reports its state."""
    seen = {key[0] for key in answers.get("service.requests", {})}
    seen |= {key[0] for key in answers.get("breaker.enabled", {})}
    return sorted(seen) if seen else [""]


def _limiter(answers: FigureGroups, instance: str) -> tuple[float, float]:
    """A replica's calls to the limiter (decisions, and calls its backend failed: admitted,
    fail open) and the failed ones (refused or not decided)."""
    allowed = _group(answers, "ratelimit.decisions", (instance, "allowed"))
    limited = _group(answers, "ratelimit.decisions", (instance, "limited"))
    errors = _group(answers, "ratelimit.errors", (instance,))
    return allowed + limited + errors, limited + errors


def _cache(answers: FigureGroups) -> tuple[_Figures, float | None]:
    operations = answers.get("cache.operations", {})
    reads = sum(value for (operation, _), value in operations.items() if operation == "get")
    hits = operations.get(("get", "hit"), 0.0)
    failed = sum(value for (_, result), value in operations.items() if result == "error")
    calls = sum(operations.values())
    figures = _Figures(calls, _share(failed, calls), _p99(answers, "cache.p99_ms", ()))
    return figures, (_round(divide(hits, reads), 6) if reads > 0 else None)


def _state(answers: FigureGroups) -> _State:
    state = _State()
    for (instance, kind), active in answers.get("disruptions", {}).items():
        if active > 0 and kind in FAULTS:
            where = FAULTS[kind]
            place = f"service@{instance}" if where == "service" else where
            state.faults.setdefault(place, set()).add(kind)
    config = answers.get("failure_config", {})
    for instance in {instance for instance, _ in config}:
        enabled = config.get((instance, "failure_injection_enabled"), 0.0)
        if enabled > 0 and config.get((instance, "failure_rate"), 0.0) > 0:
            state.faults.setdefault("database", set()).add(FAILURE_INJECTION)
    state.breaker = _breaker(answers)
    for (component, backend), present in answers.get("backends", {}).items():
        if present > 0:
            names = {state.backends.get(component), BACKEND_NAMES.get(backend, backend)}
            state.backends[component] = "+".join(sorted(n for n in names if n))
    return state


def _breaker(answers: FigureGroups) -> BreakerState | None:
    """The worst state among the replicas (open > half-open > closed > off)."""
    enabled = answers.get("breaker.enabled", {})
    states = answers.get("breaker.state", {})
    worst: BreakerState | None = None
    for (instance,), on in enabled.items():
        current: BreakerState = "off"
        if on > 0:
            current = next(
                (s for s in BREAKER_ORDER[1:] if states.get((instance, s), 0.0) > 0), "closed"
            )
        if worst is None or BREAKER_ORDER.index(current) > BREAKER_ORDER.index(worst):
            worst = current
    return worst


def _node(
    node_id: str,
    kind: NodeKind,
    title: str,
    instance: str | None,
    figures: _Figures,
    state: _State,
    *,
    hit_ratio: float | None = None,
) -> TopologyNode:
    rate = figures.error_rate
    place = f"service@{instance or ''}" if kind == "service" else kind
    faults = sorted(state.faults.get(place, ()))
    breaker = state.breaker if kind == "database" else None
    status, reasons = _status(rate, faults, breaker)
    backend_key = {"ratelimiter": "ratelimit", "cache": "cache"}.get(kind)
    return TopologyNode(
        id=node_id,
        kind=kind,
        title=title,
        instance=instance,
        status=status,
        reasons=reasons,
        request_rate=_round(figures.calls, 4),
        error_rate=_round(rate, 6),
        p99_latency_ms=_ms(figures.p99_ms),
        hit_ratio=hit_ratio,
        faults=faults,
        breaker=breaker,
        backend=state.backends.get(backend_key) if backend_key else None,
    )


def _status(
    error_rate: float, faults: Iterable[str], breaker: BreakerState | None
) -> tuple[NodeStatus, list[str]]:
    """The node's status and why, by the documented thresholds."""
    down: list[str] = []
    degraded: list[str] = []
    if error_rate > DOWN_ERROR_RATE:
        down.append(f"error rate {error_rate:.1%} > {DOWN_ERROR_RATE:.0%}")
    elif error_rate > DEGRADED_ERROR_RATE:
        degraded.append(f"error rate {error_rate:.1%} > {DEGRADED_ERROR_RATE:.0%}")
    if breaker == "open":
        down.append("circuit breaker open")
    elif breaker == "half_open":
        degraded.append("circuit breaker half-open")
    for fault in faults:
        (down if fault in OUTAGES else degraded).append(f"fault: {fault}")
    if down:
        return "down", down + degraded
    return ("degraded", degraded) if degraded else ("healthy", [])


def _edge(
    source: str, target: str, figures: _Figures, *, retries_per_request: float | None = None
) -> TopologyEdge:
    return TopologyEdge(
        id=f"{source}->{target}",
        source=source,
        target=target,
        request_rate=_round(figures.calls, 4),
        error_rate=_round(figures.error_rate, 6),
        retries_per_request=None if retries_per_request is None else _round(retries_per_request, 6),
    )


def _one(answers: FigureGroups, key: str) -> float:
    """A figure that keeps no label: 0 when it selected no series."""
    return _group(answers, key, ())


def _group(answers: FigureGroups, key: str, group: tuple[str, ...]) -> float:
    """One group of a rate: 0 when it selected no series (PromQL: absent, or NaN)."""
    value = answers.get(key, {}).get(group)
    return 0.0 if value is None or math.isnan(value) else value


def _p99(answers: FigureGroups, key: str, group: tuple[str, ...]) -> float | None:
    return answers.get(key, {}).get(group)


def _share(part: float, whole: float) -> float:
    """``part / whole`` as PromQL divides, 0 for no calls (0/0 is NaN there)."""
    if whole <= 0:
        return 0.0
    value = divide(part, whole)
    return 0.0 if math.isnan(value) else value


def _round(value: float, digits: int) -> float:
    return round(value, digits) if math.isfinite(value) else 0.0


def _ms(value: float | None) -> float | None:
    return round(value, 3) if value is not None and math.isfinite(value) else None
