"""The model's formulas, the plan in words, and --set, checked on values worked out by hand.

The measured side of each prediction is checked against the real service in
tests/integration/test_predictions_measured.py; here each formula meets the arithmetic it
claims, and the model of a shipped scenario gives the figures its file's comment states.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

from failure_lab.settings import Settings
from simulator.generator.planner import DEFAULT_CYCLE
from simulator.scenario import predict
from simulator.scenario.cache_model import KeyFreshness, undisturbed_share
from simulator.scenario.conditions import ServerConstants
from simulator.scenario.expectations import expectations_for
from simulator.scenario.loader import ScenarioFileError, load_scenario, parse_scenario
from simulator.scenario.overrides import OverrideError, apply_override
from simulator.scenario.plan import phase_plan

SCENARIOS = Path(__file__).resolve().parents[2] / "simulator" / "scenario" / "bundled"
SERVER = ServerConstants.of(Settings())


def predicted(name: str, phase: str) -> dict[str, float]:
    scenario = load_scenario(SCENARIOS / f"{name}.yaml")
    index = [p.name for p in scenario.phases].index(phase)
    return {e.figure: e.predicted for e in expectations_for(scenario, SERVER)[index]}


def test_attempts_and_failures_after_retries() -> None:
    assert predict.expected_attempts(0.5, 3) == 1 + 0.5 + 0.25 + 0.125
    assert predict.failure_after_retries(0.5, 3) == 0.5**4
    assert predict.expected_attempts(0.3, 0) == 1.0
    assert predict.failure_after_retries(1.0, 3) == 1.0
    # Retries X >= k with probability p^k: E[X] and Var[X] by enumeration.
    p, r = 0.4, 3
    law = {k: p**k * (1 - p) for k in range(r)} | {r: p**r}
    mean = sum(k * q for k, q in law.items())
    assert math.isclose(predict.expected_attempts(p, r) - 1, mean)
    variance = sum(k * k * q for k, q in law.items()) - mean**2
    assert math.isclose(predict.retries_variance(p, r), variance)


def test_an_attempt_fails_by_outage_timeout_or_injection() -> None:
    # 40..320 ms against 250 ms: (320 - 250) / 280 time out; +100 ms: (420 - 250) / 280.
    assert predict.timeout_probability(40, 320, 0, 0.25) == pytest.approx(70 / 280)
    assert predict.timeout_probability(40, 320, 100, 0.25) == pytest.approx(170 / 280)
    assert predict.timeout_probability(5, 20, 1000, 0.5) == 1.0
    assert predict.timeout_probability(10, 10, 0, 0.5) == 0.0
    assert predict.attempt_failure(0.5, 0.0, 0.0) == 0.5
    assert predict.attempt_failure(0.0, 0.25, 0.3) == pytest.approx(0.25 + 0.75 * 0.3)


def test_rate_limits_admit_their_rate_and_their_burst() -> None:
    # 50 req/s offered for 10 s against 20 req/s: 200 (+ 20 of burst) admitted of 500.
    assert predict.refused_fraction("fixed_window", 20, 50, 10) == pytest.approx(1 - 200 / 500)
    assert predict.refused_fraction("token_bucket", 20, 50, 10) == pytest.approx(1 - 220 / 500)
    assert predict.refused_fraction("leaky_bucket", 20, 50, 10) == pytest.approx(1 - 221 / 500)
    assert predict.refused_fraction("sliding_window", 80, 50, 10) == 0.0


def test_hit_ratio_closed_form_is_the_stepped_model_in_its_steady_state() -> None:
    reads, writes, ttl = 0.3, 0.05, 2.0
    fresh = predict.fresh_seconds(ttl, writes)
    assert fresh == pytest.approx((1 - math.exp(-0.1)) / 0.05)
    closed = predict.hit_ratio(reads, fresh)
    assert closed == pytest.approx(reads * fresh / (1 + reads * fresh))
    key = KeyFreshness()
    dt, seen = 0.01, []
    for step in range(6000):
        seen.append(key.step(step * dt, dt, reads, writes, ttl))
    assert sum(seen[-2000:]) / 2000 == pytest.approx(closed, rel=0.02)


def test_list_reads_after_a_write_never_hit() -> None:
    writes = frozenset({"POST /api/v1/users", "PATCH /api/v1/users/{id}"})
    assert undisturbed_share(list(DEFAULT_CYCLE), "GET /api/v1/users", writes) == 0.0
    reads_only = ["GET /api/v1/users", "GET /api/v1/users/{id}"]
    assert undisturbed_share(reads_only, "GET /api/v1/users", writes) == 1.0


def test_breaker_open_share_limits() -> None:
    assert predict.breaker_open_fraction(0.0, 40, 5, 5, 0.5) == 0.0
    assert predict.breaker_open_fraction(1.0, 40, 5, 5, 0.5) == 1.0
    low = predict.breaker_open_fraction(0.1, 40, 5, 5, 0.01)
    high = predict.breaker_open_fraction(0.8, 40, 5, 5, 0.01)
    assert 0 < low < 0.01 < high < 1
    assert predict.breaker_trip_seconds(5, 20, 0.5) == pytest.approx(0.7)


@pytest.mark.parametrize(
    ("name", "phase", "figures"),
    [
        # The file's comments: 1 + 0.5 + 0.25 + 0.125 and 0.5^4, cache off.
        ("retry-storm", "outage", {"retry_amplification": 1.875, "error_rate": 0.0625}),
        ("retry-storm", "warmup", {"retry_amplification": 1.0, "error_rate": 0.0}),
        # Every attempt times out: four per request, every request fails.
        ("slow-database-no-breaker", "hang", {"retry_amplification": 4.0, "error_rate": 1.0}),
        # An error burst of 0.5 fails half the requests before the pipeline.
        ("failing-check", "burst", {"error_rate": 0.5}),
        # Half the lookups fail, and a failed lookup fills nothing: about half hit.
        ("cache-outage", "outage", {"cache_hit_ratio": 0.5}),
        ("cache-outage", "recovery", {"cache_hit_ratio": 1.0}),
    ],
)
def test_shipped_scenarios_predictions(name: str, phase: str, figures: dict[str, float]) -> None:
    found = predicted(name, phase)
    for figure, value in figures.items():
        assert found[figure] == pytest.approx(value, abs=0.005), figure


def test_the_breaker_is_predicted_open_for_the_hang_less_its_trip() -> None:
    found = predicted("slow-database-breaker", "hang")
    # The 5th request starts 4 / 20 s in and times out 0.5 s later; open from then on.
    assert found["breaker_open_seconds"] == pytest.approx(12 - 0.7, abs=0.1)
    assert "retry_amplification" not in found  # the breaker stops retries: no closed form


def test_demo_fault_plan_says_what_the_spike_and_the_config_do() -> None:
    scenario = load_scenario(SCENARIOS / "demo.yaml")
    lines = phase_plan(scenario, scenario.phase("fault"), SERVER)
    assert lines[0] == "load: 20 s, 50 req/s throughout, over the default mix"
    assert lines[1] == (
        "database: queries take 40-320 ms against a 250 ms timeout, 25% time out, "
        "30% fail (injected), up to 3 retries with backoff"
    )
    assert lines[2] == "breaker: off"
    assert lines[4] == (
        "at 8 s for 5 s: +100 ms on every query, 61% time out then (db_latency_spike, severity 0.1)"
    )


def test_other_disruptions_in_words() -> None:
    text = """\
name: words
phases:
  - name: p
    scenario: normal
    duration: 10
    max_rps: 10
    disruptions:
      - {at: 0, type: db_outage, severity: 0.5, duration: 1}
      - {at: 0, type: cache_outage, severity: 0.25, duration: 1}
      - {at: 0, type: error_burst, severity: 0.1, duration: 1}
      - {at: 0, type: rate_limit_squeeze, severity: 0.8, duration: 1, endpoints: [/api/v1/users]}
"""
    scenario = parse_scenario(text)
    lines = phase_plan(scenario, scenario.phases[0], SERVER)[4:]
    assert lines[0].startswith("at 0 s for 1 s: 50% of database attempts fail")
    assert "25% of cache operations fail" in lines[1]
    assert "10% of requests answered 500 before the pipeline" in lines[2]
    assert "a 20 req/s limit on top (429s) on /api/v1/users only" in lines[3]


def data() -> dict[str, Any]:
    return {
        "name": "x",
        "phases": [{"name": "warmup", "duration": 4}, {"name": "outage", "duration": 6}],
    }


def test_overrides_by_index_by_name_and_new_blocks() -> None:
    doc = data()
    assert apply_override(doc, "phases.outage.duration=20s") == ("phases", 1, "duration")
    apply_override(doc, "phases[0].max_rps=40")
    apply_override(doc, "pipeline.cache_ttl=5")
    assert doc["phases"] == [
        {"name": "warmup", "duration": 4, "max_rps": 40},
        {"name": "outage", "duration": "20s"},
    ]
    assert doc["pipeline"] == {"cache_ttl": 5}


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ("phases.outag.duration=2", "no item named 'outag' (names: warmup, outage)"),
        ("phases[5].duration=2", "there is no item [5] (the list has 2)"),
        ("name[0]=y", "'name' holds a single value"),
        ("duration", "write KEY=VALUE"),
    ],
)
def test_overrides_that_lead_nowhere(given: str, message: str) -> None:
    with pytest.raises(OverrideError, match=message.replace("[", r"\[").replace("(", r"\(")
                       .replace(")", r"\)")):  # fmt: skip
        apply_override(data(), given)


def test_an_overridden_value_is_checked_like_the_file() -> None:
    with pytest.raises(ScenarioFileError) as caught:
        load_scenario(SCENARIOS / "smoke.yaml", overrides=["phases.steady.duration=-1"])
    assert "phases[1].duration: Input should be greater than 0 (got -1) (set with --set)" in str(
        caught.value
    )


def test_only_the_demo_fault_breaks_the_no_overlap_assumption_of_the_cache() -> None:
    scenario = load_scenario(SCENARIOS / "demo.yaml")
    caveats = {
        (phase.name, e.figure): e.caveat
        for phase, found in zip(scenario.phases, expectations_for(scenario, SERVER), strict=True)
        for e in found
        if e.caveat
    }
    assert list(caveats) == [("fault", "cache_hit_ratio")]
    assert "while one comes every 20 ms" in caveats[("fault", "cache_hit_ratio")]
