"""Scenario plans against their definitions: rate shapes, request mixes, option schedules."""

from __future__ import annotations

import random
from collections import Counter
from typing import get_args

import pytest

from failure_lab.control import EndpointKey, ScenarioName
from simulator.generator.arrivals import schedule
from simulator.generator.planner import (
    CREATE_USER,
    ENDPOINTS,
    ERROR,
    GET_USER,
    LIST_USERS,
    UPDATE_USER,
)
from simulator.generator.scenarios import ScenarioPlan, plan_scenario
from simulator.options import PipelineOptions


def plan(
    scenario: ScenarioName,
    duration: float = 8.0,
    max_rps: float = 100.0,
    endpoints: list[str] | None = None,
    options: PipelineOptions | None = None,
) -> ScenarioPlan:
    return plan_scenario(
        scenario,
        duration=duration,
        max_rps=max_rps,
        endpoints=endpoints,
        options=options or PipelineOptions(),
        users=50,
        rng=random.Random(7),
        latency_growth_ms=500.0,
    )


def arrivals_between(p: ScenarioPlan, start: float, end: float) -> int:
    offsets = list(schedule(p.rate, p.duration).offsets)
    return sum(1 for offset in offsets if start <= offset < end)


def test_endpoint_keys_of_the_api_are_the_planners() -> None:
    assert (
        get_args(EndpointKey)
        == ENDPOINTS
        == (
            GET_USER,
            LIST_USERS,
            CREATE_USER,
            UPDATE_USER,
            ERROR,
        )
    )


@pytest.mark.parametrize("scenario", ["normal", "error_injection", "latency_degradation", "stress"])
def test_constant_scenarios_send_max_rps_in_every_second(scenario: ScenarioName) -> None:
    p = plan(scenario, duration=8.0, max_rps=100.0)
    assert schedule(p.rate, p.duration).planned == 800
    for second in range(8):  # exact: the i-th request is due at i / rate
        assert arrivals_between(p, second, second + 1) == 100


def test_peak_ramps_up_over_the_first_quarter_holds_and_ramps_down() -> None:
    p = plan("peak", duration=8.0, max_rps=100.0)
    # Integral of the shape: a quarter ramp is max_rps * duration / 8 requests.
    assert schedule(p.rate, p.duration).planned == pytest.approx(600, abs=1)
    assert arrivals_between(p, 0.0, 2.0) == pytest.approx(100, abs=1)
    assert arrivals_between(p, 2.0, 6.0) == pytest.approx(400, abs=1)
    assert arrivals_between(p, 6.0, 8.0) == pytest.approx(100, abs=1)
    # Inside the ramp the rate is linear: the first half-ramp carries a quarter of its requests.
    assert arrivals_between(p, 0.0, 1.0) == pytest.approx(25, abs=1)
    assert [p.rate_at(t) for t in (0.0, 1.0, 2.0, 4.0, 6.0, 7.0, 8.0)] == pytest.approx(
        [0.0, 50.0, 100.0, 100.0, 100.0, 50.0, 0.0]
    )
    assert [(s.name, s.start, s.end) for s in p.stages] == [
        ("ramp_up", 0.0, 2.0),
        ("hold", 2.0, 6.0),
        ("ramp_down", 6.0, 8.0),
    ]
    assert [p.stage_at(t).name for t in (0.0, 1.99, 2.0, 5.99, 6.0, 8.0)] == [
        "ramp_up",
        "ramp_up",
        "hold",
        "hold",
        "ramp_down",
        "ramp_down",
    ]


def test_error_injection_sends_exactly_three_in_ten_to_the_error_endpoint() -> None:
    p = plan("error_injection")
    sent = [p.requests.next() for _ in range(1000)]
    for start in range(0, 1000, 10):
        window = sent[start : start + 10]
        assert sum(1 for r in window if r.endpoint == ERROR) == 3
    errors = [r for r in sent if r.endpoint == ERROR]
    assert {r.path for r in errors} == {"/api/v1/users/error?errorRate=0.5"}
    others = Counter(r.endpoint for r in sent if r.endpoint != ERROR)
    assert set(others) == {GET_USER, LIST_USERS, CREATE_USER, UPDATE_USER}
    assert p.endpoints == (GET_USER, LIST_USERS, CREATE_USER, UPDATE_USER, ERROR)


def test_error_injection_rotates_the_chosen_endpoints_and_needs_one_besides_errors() -> None:
    p = plan("error_injection", endpoints=[LIST_USERS, ERROR])
    sent = [p.requests.next().endpoint for _ in range(100)]
    assert Counter(sent) == {LIST_USERS: 70, ERROR: 30}
    with pytest.raises(ValueError, match="at least one other"):
        plan("error_injection", endpoints=[ERROR])


def test_latency_degradation_grows_database_latency_linearly() -> None:
    base = PipelineOptions(db_latency_ms=10.0, cache_enabled=False)
    p = plan("latency_degradation", duration=10.0, options=base)
    assert callable(p.options)
    at = p.options
    assert [at(t).db_latency_ms for t in (0.0, 2.5, 5.0, 10.0, 12.0)] == [
        10.0,
        135.0,
        260.0,
        510.0,
        510.0,
    ]
    assert at(5.0).cache_enabled is False  # everything else is the caller's
    assert [s.name for s in p.stages] == ["degrading"]


def test_degrading_latency_stops_at_its_ceiling() -> None:
    p = plan_scenario(
        "latency_degradation",
        duration=10.0,
        max_rps=10.0,
        endpoints=None,
        options=PipelineOptions(db_latency_ms=300.0),
        users=50,
        rng=random.Random(7),
        latency_growth_ms=500.0,
        latency_ceiling_ms=400.0,
    )
    assert callable(p.options)
    assert [p.options(t).db_latency_ms for t in (0.0, 1.0, 2.0, 5.0, 10.0)] == [
        300.0,
        350.0,
        400.0,
        400.0,
        400.0,
    ]


def test_other_scenarios_keep_options_and_rotate_the_default_mix() -> None:
    options = PipelineOptions(retries_enabled=False)
    p = plan("normal", options=options)
    assert p.options == options
    sent = Counter(p.requests.next().endpoint for _ in range(100))
    assert sent == {GET_USER: 60, LIST_USERS: 20, CREATE_USER: 10, UPDATE_USER: 10}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"duration": 0.0}, "duration"),
        ({"duration": float("inf")}, "duration"),
        ({"max_rps": 0.0}, "max_rps"),
        ({"max_rps": float("nan")}, "max_rps"),
    ],
)
def test_impossible_plans_are_refused(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        plan("normal", **kwargs)  # type: ignore[arg-type]
