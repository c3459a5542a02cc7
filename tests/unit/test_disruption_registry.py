"""The disruption registry on a fake clock: exact expiry, scopes, counts and metrics."""

from __future__ import annotations

import random

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.trace import Span
from prometheus_client import CollectorRegistry

from failure_lab.bounds import check_bounds
from failure_lab.control import DisruptionRequest
from failure_lab.errors import CapExceeded, Conflict, NotFound
from failure_lab.settings import Settings
from simulator.cache import CacheError
from simulator.database import DatabaseError
from simulator.disruptions import ROUTES, DisruptionRegistry
from simulator.routes import ANSWERS
from simulator.telemetry.metrics import ServiceMetrics


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def registry(clock: FakeClock, **overrides: object) -> tuple[DisruptionRegistry, ServiceMetrics]:
    metrics = ServiceMetrics(CollectorRegistry())
    settings = Settings.model_validate(
        {"disruption_latency_spike_ms": 400, "max_disruption_seconds": 100, **overrides}
    )
    made = DisruptionRegistry(
        settings, metrics, random.Random(1), clock=clock, wall=lambda: 1_700_000_000.0
    )
    metrics.watch_disruptions(made.count_active)
    return made, metrics


def request(
    kind: str, severity: float = 1.0, seconds: float = 10.0, **extra: object
) -> DisruptionRequest:
    return DisruptionRequest.model_validate(
        {"type": kind, "severity": severity, "duration_seconds": seconds, **extra}
    )


def value(metrics: ServiceMetrics, name: str, **labels: str) -> float:
    found = metrics.registry.get_sample_value(name, labels)
    return 0.0 if found is None else found


def span() -> Span:
    return TracerProvider().get_tracer("test").start_span("server")


def test_routes_are_the_user_api_route_templates() -> None:
    assert set(ROUTES) == {endpoint for endpoint, _ in ANSWERS}


def test_expires_exactly_at_its_deadline_with_no_call_needed_for_reads() -> None:
    clock = FakeClock()
    disruptions, metrics = registry(clock)
    created = disruptions.create(request("db_outage", seconds=10))
    assert created.time_remaining_seconds == 10
    assert created.active_until.timestamp() == 1_700_000_010
    assert value(metrics, "failure_lab_disruptions_active", type="db_outage") == 1
    clock.now += 9.999
    assert disruptions.count_active("db_outage") == 1
    assert disruptions.scope("/api/v1/users", span()) is not None
    clock.now += 0.001
    # The gauge is read at scrape time: exact at the deadline, before any cleanup ran.
    assert value(metrics, "failure_lab_disruptions_active", type="db_outage") == 0
    assert disruptions.scope("/api/v1/users", span()) is None
    assert disruptions.active is False
    assert disruptions.list_active() == []
    ended = disruptions.get(created.disruption_id)
    assert (ended.status, ended.time_remaining_seconds) == ("expired", 0)
    assert ended.ended_at is not None
    assert ended.ended_at.timestamp() == 1_700_000_010
    assert (
        value(metrics, "failure_lab_disruptions_ended_total", type="db_outage", reason="expired")
        == 1
    )
    with pytest.raises(Conflict, match="already expired"):
        disruptions.cancel(created.disruption_id)
    with pytest.raises(NotFound, match="unknown"):
        disruptions.cancel("0" * 32)


def test_a_scope_stops_acting_the_moment_its_disruption_ends() -> None:
    clock = FakeClock()
    disruptions, metrics = registry(clock)
    disruptions.create(request("db_outage", seconds=5))
    spike = disruptions.create(request("db_latency_spike", severity=0.5, seconds=10))
    server = span()
    scope = disruptions.scope("/api/v1/users/{id}", server)
    assert scope is not None
    with pytest.raises(DatabaseError, match="disruption: db_outage"):
        scope.db_attempt(1)
    clock.now += 5  # the outage ends mid-request; the spike goes on
    assert scope.db_attempt(2) == 200
    disruptions.cancel(spike.disruption_id)
    assert scope.db_attempt(3) == 0
    server.end()
    assert isinstance(server, ReadableSpan)
    effects = [(e.attributes or {}).get("effect") for e in server.events]
    assert effects == ["failed", "delayed"]
    assert value(metrics, "failure_lab_disruption_requests_affected_total", type="db_outage") == 1
    assert (
        value(metrics, "failure_lab_disruption_requests_affected_total", type="db_latency_spike")
        == 1
    )


def test_endpoints_and_severity_decide_what_a_scope_does() -> None:
    clock = FakeClock()
    disruptions, _ = registry(clock)
    disruptions.create(request("cache_outage", endpoints=["/api/v1/users"]))
    assert disruptions.scope("/api/v1/users/{id}", span()) is None
    scope = disruptions.scope("/api/v1/users", span())
    assert scope is not None
    with pytest.raises(CacheError) as failed:
        scope.cache_operation("get")
    assert failed.value.kind == "unavailable"
    disruptions.clear()
    disruptions.create(request("error_burst", severity=0.0))
    scope = disruptions.scope("/api/v1/users", span())
    assert scope is not None
    assert all(scope.error_burst() is None for _ in range(100))


def test_requests_affected_counts_each_request_once() -> None:
    clock = FakeClock()
    disruptions, _ = registry(clock)
    created = disruptions.create(request("db_outage"))
    for _ in range(3):
        scope = disruptions.scope("/api/v1/users", span())
        assert scope is not None
        for attempt in (1, 2, 3):
            with pytest.raises(DatabaseError):
                scope.db_attempt(attempt)
    assert disruptions.get(created.disruption_id).requests_affected == 3


def test_the_duration_is_bounded_by_its_setting() -> None:
    settings = Settings(max_disruption_seconds=100)
    check_bounds(request("db_outage", seconds=100), settings)
    with pytest.raises(CapExceeded, match="FAILURE_LAB_MAX_DISRUPTION_SECONDS") as refused:
        check_bounds(request("db_outage", seconds=101), settings)
    assert refused.value.loc == ("body", "duration_seconds")


def test_caps_and_bounds() -> None:
    clock = FakeClock()
    disruptions, _ = registry(clock, max_active_disruptions=2)
    disruptions.create(request("db_outage"))
    disruptions.create(request("db_outage"))
    with pytest.raises(Conflict, match="FAILURE_LAB_MAX_ACTIVE_DISRUPTIONS"):
        disruptions.create(request("db_outage"))
    clock.now += 10  # both expire: room again
    disruptions.create(request("db_outage"))


def test_close_drops_the_active_ones_and_names_them(caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock()
    disruptions, metrics = registry(clock)
    kept = disruptions.create(request("error_burst", seconds=50))
    disruptions.create(request("db_outage", seconds=1))
    clock.now += 2
    disruptions.close()
    assert disruptions.active is False
    assert value(metrics, "failure_lab_disruptions_active", type="error_burst") == 0
    (warning,) = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert kept.disruption_id in warning
    assert "1 active" in warning
