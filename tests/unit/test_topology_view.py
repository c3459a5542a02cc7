"""The terminal drawing of a topology: what it says, and that it fits any width."""

from __future__ import annotations

import pytest

from exporter.topology import build_topology
from failure_lab.topology import Topology
from simulator.scenario.topology_view import MIN_WIDTH, topology_lines


def outage() -> Topology:
    """Two replicas; the database failing 60% of its attempts behind an open breaker."""
    return build_topology(
        {
            "service.requests": {("10.0.0.1:8001",): 30.0, ("10.0.0.2:8001",): 10.0},
            "service.errors": {("10.0.0.1:8001",): 12.0, ("10.0.0.2:8001",): 4.0},
            "service.p99_ms": {("10.0.0.1:8001",): 41.25, ("10.0.0.2:8001",): 39.0},
            "generator.requests": {("sent",): 40.0, ("dropped",): 0.0},
            "cache.operations": {("get", "hit"): 20.0, ("get", "miss"): 20.0},
            "database.attempts": {(): 30.0},
            "database.errors": {(): 18.0},
            "database.retries": {(): 10.0},
            "breaker.enabled": {("10.0.0.1:8001",): 1.0, ("10.0.0.2:8001",): 1.0},
            "breaker.state": {("10.0.0.1:8001", "open"): 1.0, ("10.0.0.2:8001", "closed"): 1.0},
            "disruptions": {("10.0.0.2:8001", "db_outage"): 1.0},
            "backends": {("cache", "redis"): 2.0, ("ratelimit", "redis"): 2.0},
        },
        window_seconds=30,
        timestamp="t",
        source="prometheus",
    )


def test_a_wide_terminal_gets_a_line_per_node_and_per_edge() -> None:
    lines = topology_lines(outage(), 120)
    assert lines == [
        "✔ traffic generator       healthy      40.0 req/s   0.0% errors",
        "  ├─▶ simulator 10.0.0.1:8…            30.0 req/s  40.0% errors",
        "  └─▶ simulator 10.0.0.2:8…            10.0 req/s  40.0% errors",
        "▲ simulator 10.0.0.1:8001 degraded     30.0 req/s  40.0% errors  p99 41.2 ms",
        "  └─▶ rate limiter                      0.0 req/s   0.0% errors",
        "▲ simulator 10.0.0.2:8001 degraded     10.0 req/s  40.0% errors  p99 39.0 ms",
        "  └─▶ rate limiter                      0.0 req/s   0.0% errors",
        "✔ rate limiter            healthy       0.0 req/s   0.0% errors  redis",
        "  └─▶ cache                            40.0 req/s   0.0% errors",
        "✔ cache                   healthy      40.0 req/s   0.0% errors  hit 50%  redis",
        "  └─▶ database                         20.0 req/s  60.0% errors  0.25 retries/request",
        "✖ database                DOWN         30.0 req/s  60.0% errors  breaker open  "
        "fault: db_outage",
        "  └─↻ retries                          10.0 req/s  60.0% errors  0.25 retries/request",
    ]


@pytest.mark.parametrize("width", [1, MIN_WIDTH, 55, 79, 80, 100, 200])
def test_no_line_is_wider_than_the_terminal(width: int) -> None:
    lines = topology_lines(outage(), width)
    assert all(len(line) <= max(width, MIN_WIDTH) for line in lines), lines
    text = "\n".join(lines)
    # However narrow, each node and where the errors are still shows.
    for start in ("✔ traffic", "▲ simulator", "✖ database"):
        assert any(line.startswith(start) for line in lines), text
    assert "60.0%" in text
    assert "fault: db_outage" in text


def test_notes_that_do_not_fit_move_under_their_node_or_edge() -> None:
    lines = topology_lines(outage(), 80)
    database = next(i for i, line in enumerate(lines) if line.startswith("✖ database"))
    assert lines[database : database + 4] == [
        "✖ database                DOWN         30.0 req/s  60.0% errors",
        "    breaker open  fault: db_outage",
        "  └─↻ retries                          10.0 req/s  60.0% errors",
        "        0.25 retries/request",
    ]
