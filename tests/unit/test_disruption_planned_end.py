"""The planned-end gauge of disruptions on fake clocks: the latest end per type, read at
scrape time, 0 when none of the type is active."""

from __future__ import annotations

import random

from prometheus_client import CollectorRegistry

from failure_lab.control import DisruptionRequest
from failure_lab.settings import Settings
from simulator.disruptions import DisruptionRegistry
from simulator.telemetry.metrics import DISRUPTION_TYPES, ServiceMetrics

GAUGE = "failure_lab_disruption_planned_end_timestamp_seconds"
WALL_START = 1_700_000_000.0


class Clocks:
    """A monotonic and a wall clock that advance together, as on a host without NTP steps."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.offset = WALL_START - self.now

    def monotonic(self) -> float:
        return self.now

    def wall(self) -> float:
        return self.now + self.offset


def watched(clocks: Clocks) -> tuple[DisruptionRegistry, CollectorRegistry]:
    metrics = ServiceMetrics(CollectorRegistry())
    made = DisruptionRegistry(
        Settings(),
        metrics,
        random.Random(1),
        clock=clocks.monotonic,
        wall=clocks.wall,
    )
    metrics.watch_disruptions(made.count_active)
    metrics.watch_disruption_ends(made.planned_end)
    return made, metrics.registry


def request(kind: str, seconds: float) -> DisruptionRequest:
    return DisruptionRequest.model_validate(
        {"type": kind, "severity": 0.5, "duration_seconds": seconds}
    )


def planned_end(registry: CollectorRegistry, kind: str) -> float | None:
    return registry.get_sample_value(GAUGE, {"type": kind})


def active(registry: CollectorRegistry, kind: str) -> float | None:
    return registry.get_sample_value("failure_lab_disruptions_active", {"type": kind})


def test_every_type_is_served_at_zero_before_any_disruption() -> None:
    _, registry = watched(Clocks())
    assert {kind: planned_end(registry, kind) for kind in DISRUPTION_TYPES} == dict.fromkeys(
        DISRUPTION_TYPES, 0.0
    )
    # Unwatched (a registry built without the disruptions), the series still exist at 0.
    bare = ServiceMetrics(CollectorRegistry()).registry
    assert planned_end(bare, "db_outage") == 0.0


def test_is_the_latest_end_of_the_type_and_matches_active_until() -> None:
    clocks = Clocks()
    disruptions, registry = watched(clocks)
    long = disruptions.create(request("db_outage", 30))
    clocks.now += 5
    short = disruptions.create(request("db_outage", 10))
    other = disruptions.create(request("cache_outage", 2))

    assert long.active_until.timestamp() == WALL_START + 30
    assert short.active_until.timestamp() == WALL_START + 15
    # The later of the two ends, though the shorter one was created last.
    assert planned_end(registry, "db_outage") == WALL_START + 30
    assert planned_end(registry, "cache_outage") == other.active_until.timestamp()
    assert planned_end(registry, "error_burst") == 0.0

    disruptions.cancel(long.disruption_id)
    assert planned_end(registry, "db_outage") == WALL_START + 15


def test_falls_to_zero_exactly_at_the_deadline_with_no_call() -> None:
    clocks = Clocks()
    disruptions, registry = watched(clocks)
    created = disruptions.create(request("db_latency_spike", 10))
    clocks.now += 9.999
    assert planned_end(registry, "db_latency_spike") == created.active_until.timestamp()
    assert active(registry, "db_latency_spike") == 1.0
    clocks.now += 0.001
    # Read at scrape time, before the registry's timer or any request ended it.
    assert disruptions.active is True
    assert planned_end(registry, "db_latency_spike") == 0.0
    assert active(registry, "db_latency_spike") == 0.0


def test_an_active_type_always_has_an_end_after_the_wall_clock() -> None:
    """What the DisruptionOverran alert relies on: while a type is reported active, its
    planned end is ahead of the process's wall clock (clocks advancing together)."""
    clocks = Clocks()
    disruptions, registry = watched(clocks)
    for seconds in (3.0, 7.5, 12.0):
        disruptions.create(request("error_burst", seconds))
    for _ in range(150):
        count = active(registry, "error_burst")
        end = planned_end(registry, "error_burst")
        assert count is not None
        assert end is not None
        if count > 0:
            assert end > clocks.wall()
        else:
            assert end == 0.0
        clocks.now += 0.1
    assert planned_end(registry, "error_burst") == 0.0
