"""Scenario files: the shipped ones load, bad ones name their line and field, verdicts judge.

Malformed files are variants of one valid file (``BASE``) with a line replaced, inserted or
removed, so the line each message must name is visible in the table.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from failure_lab.control import FailureConfig, RequestPayload
from simulator.options import PipelineOptions
from simulator.scenario.loader import ScenarioFileError, load_scenario, parse_scenario
from simulator.scenario.spec import FailurePatch, PipelineSpec
from simulator.scenario.verdict import CheckResult, PhaseFigures, evaluate, passed

SCENARIOS = Path(__file__).resolve().parents[2] / "simulator" / "scenario" / "bundled"

BASE = """\
name: lab
phases:
  - name: warmup
    scenario: normal
    duration: 10
    max_rps: 20
  - name: outage
    scenario: normal
    duration: 20s
    max_rps: 20
    disruptions:
      - at: 5
        type: db_outage
        severity: 0.5
        duration: 10
checks:
  - phase: outage
    metric: error_rate
    below: 0.05
"""


def variant(line: int, replacement: str | None) -> str:
    """``BASE`` with its 1-based ``line`` replaced by ``replacement`` (None: removed)."""
    lines = BASE.splitlines()
    lines[line - 1 : line] = [] if replacement is None else replacement.split("\n")
    return "\n".join(lines) + "\n"


def problem_of(text: str) -> str:
    with pytest.raises(ScenarioFileError) as caught:
        parse_scenario(text, "bad.yaml")
    return str(caught.value)


# ---- the shipped scenarios ---------------------------------------------------------------


def test_base_is_valid() -> None:
    scenario = parse_scenario(BASE, "base.yaml")
    assert [phase.name for phase in scenario.phases] == ["warmup", "outage"]
    assert scenario.total_seconds == 30.0


# The short scenarios the tests run; each stays within ~40 s and 200 req/s (two cores).
SHORT = (
    "smoke",
    "failing-check",
    "retry-storm",
    "cache-outage",
    "slow-database-breaker",
    "slow-database-no-breaker",
)


@pytest.mark.parametrize("path", sorted(SCENARIOS.glob("*.yaml")), ids=lambda path: path.name)
def test_shipped_scenario_loads(path: Path) -> None:
    assert path.read_text().startswith("#"), "a scenario opens with a comment on what it shows"
    scenario = load_scenario(path)
    assert scenario.name == path.stem
    assert scenario.checks, "a shipped scenario has a verdict to give"


@pytest.mark.parametrize("name", SHORT)
def test_short_scenario_stays_small(name: str) -> None:
    scenario = load_scenario(SCENARIOS / f"{name}.yaml")
    assert scenario.total_seconds <= 40
    for phase in scenario.phases:
        assert phase.max_rps is not None
        assert phase.max_rps <= 200


def test_breaker_scenarios_differ_only_in_the_breaker() -> None:
    on = load_scenario(SCENARIOS / "slow-database-breaker.yaml")
    off = load_scenario(SCENARIOS / "slow-database-no-breaker.yaml")
    assert [p.model_dump() for p in on.phases] == [p.model_dump() for p in off.phases]
    assert on.failure_config == off.failure_config
    assert on.pipeline == off.pipeline
    hang_on, hang_off = on.phase("hang"), off.phase("hang")
    assert on.circuit_breaker_for(hang_on).enabled is True
    assert off.circuit_breaker_for(hang_off).enabled is False


# ---- malformed files ---------------------------------------------------------------------

MALFORMED = [
    # (id, text, line, field path, part of the message)
    ("yaml-syntax", variant(14, "        severity: 0.5: x"), 14, "", "YAML syntax"),
    ("tab", variant(3, "\t- name: warmup"), 3, "", "YAML syntax"),
    (
        "unknown-field",
        variant(6, "    max_rpss: 20"),
        6,
        "phases[0].max_rpss",
        "unknown field; known fields: name, scenario, duration, max_rps",
    ),
    ("wrong-type", variant(6, "    max_rps: fast"), 6, "phases[0].max_rps", "valid number"),
    (
        "negative-duration",
        variant(9, "    duration: -5"),
        9,
        "phases[1].duration",
        "Input should be greater than 0",
    ),
    (
        "bad-duration-string",
        variant(9, "    duration: 20 seconds"),
        9,
        "phases[1].duration",
        "is not a duration",
    ),
    (
        "severity-2",
        variant(14, "        severity: 2"),
        14,
        "phases[1].disruptions[0].severity",
        "less than or equal to 1",
    ),
    (
        "unknown-scenario",
        variant(4, "    scenario: burst"),
        4,
        "phases[0].scenario",
        "Input should be 'normal', 'peak'",
    ),
    (
        "unknown-disruption-type",
        variant(13, "        type: meteor"),
        13,
        "phases[1].disruptions[0].type",
        "'db_outage'",
    ),
    (
        "unknown-phase-in-check",
        variant(17, "  - phase: outag"),
        17,
        "checks[0].phase",
        "unknown phase 'outag'; phases are: warmup, outage",
    ),
    (
        "below-and-above",
        variant(19, "    below: 0.05\n    above: 0.01"),
        20,
        "checks[0].above",
        "not both",
    ),
    ("no-threshold", variant(19, None), 17, "checks[0]", "give a threshold"),
    (
        "error-rate-as-percent",
        variant(19, "    below: 5"),
        19,
        "checks[0].below",
        "fraction from 0 to 1",
    ),
    (
        "duplicate-key",
        variant(6, "    max_rps: 20\n    duration: 5"),
        7,
        "phases[0].duration",
        "duplicate key (first given at line 5)",
    ),
    (
        "disruption-at-end-of-phase",
        variant(12, "      - at: 20"),
        12,
        "phases[1].disruptions[0].at",
        "starts at 20s, not within the phase's 20s",
    ),
    (
        "disruption-outlasts-phase",
        variant(15, "        duration: 16"),
        15,
        "phases[1].disruptions[0].duration",
        "ends at 21s, after the phase's 20s",
    ),
    (
        "max-rps-missing",
        variant(6, None),
        3,
        "phases[0].max_rps",
        "required for scenario normal",
    ),
    (
        "duplicate-phase-name",
        variant(7, "  - name: warmup"),
        7,
        "phases[1].name",
        "duplicate phase name 'warmup'",
    ),
    (
        "unknown-endpoint",
        variant(6, "    max_rps: 20\n    endpoints:\n      - GET /api/v1/user"),
        8,
        "phases[0].endpoints[0]",
        "got 'GET /api/v1/user'",
    ),
    ("bad-name", variant(1, "name: Retry Storm"), 1, "name", "lowercase letters"),
    ("missing-name", variant(1, None), 1, "name", "Field required"),
    (
        "merged-failure-config",
        BASE + "failure_config:\n  db_latency_min_ms: 50\n",
        20,
        "failure_config",
        "db_latency_min_ms (50) must not exceed db_latency_max_ms (20)",
    ),
    ("empty-file", "", 1, "", "the file is empty"),
    ("comments-only", "# nothing here\n\n", 1, "", "the file is empty"),
    ("top-level-list", "# a list\n\n- name: lab\n", 3, "", "top level must be a mapping"),
    ("top-level-scalar", "lab\n", 1, "", "top level must be a mapping"),
    ("two-documents", BASE + "---\nname: other\n", 20, "", "expected a single document"),
]


@pytest.mark.parametrize(
    ("text", "line", "path", "message"),
    [case[1:] for case in MALFORMED],
    ids=[case[0] for case in MALFORMED],
)
def test_malformed_file_names_line_and_field(text: str, line: int, path: str, message: str) -> None:
    first = problem_of(text).splitlines()[0]
    where = f"bad.yaml:{line}: {path}: " if path else f"bad.yaml:{line}: "
    assert first.startswith(where), first
    assert message in first, first


def test_every_problem_is_reported_in_line_order() -> None:
    text = variant(14, "        severity: 2")
    text = text.replace(
        "    scenario: normal\n    duration: 10", "    scenario: peek\n    duration: 10"
    )
    lines = problem_of(text).splitlines()
    assert [line.split(":")[1] for line in lines] == ["4", "14"]


def test_x_keys_hold_anchors_for_reuse() -> None:
    text = "x-rate: &rate 20\n" + BASE.replace("max_rps: 20", "max_rps: *rate")
    scenario = parse_scenario(text, "anchors.yaml")
    assert [phase.max_rps for phase in scenario.phases] == [20.0, 20.0]


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"
    with pytest.raises(ScenarioFileError) as caught:
        load_scenario(path)
    assert str(caught.value) == f"{path}: no such file"


def test_directory(tmp_path: Path) -> None:
    with pytest.raises(ScenarioFileError, match="is a directory"):
        load_scenario(tmp_path)


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes(b"name: lab\ndescription: caf\xe9\n")
    with pytest.raises(ScenarioFileError) as caught:
        load_scenario(path)
    assert str(caught.value).startswith(f"{path}:2: not UTF-8")


def test_load_from_file_names_the_path(tmp_path: Path) -> None:
    path = tmp_path / "retry.yaml"
    path.write_text(variant(9, "    duration: 0"))
    with pytest.raises(ScenarioFileError) as caught:
        load_scenario(path)
    assert str(caught.value) == (
        f"{path}:9: phases[1].duration: Input should be greater than 0 (got 0)"
    )


# ---- durations and defaults --------------------------------------------------------------


def test_phase_duration_string_in_a_file() -> None:
    scenario = parse_scenario(variant(9, '    duration: "1m30s"'), "lab.yaml")
    assert scenario.phase("outage").seconds == 90.0
    assert scenario.total_seconds == 100.0


def test_stress_needs_no_rate() -> None:
    scenario = parse_scenario(variant(4, "    scenario: stress").replace(
        "    max_rps: 20\n  - name: outage", "  - name: outage"
    ), "lab.yaml")  # fmt: skip
    assert scenario.phases[0].max_rps is None
    assert scenario.payload_for(scenario.phases[0]).rate_of_requests == 0.0


def test_block_fields_are_the_contract_fields() -> None:
    payload = set(RequestPayload.model_fields) - {"rate_of_requests", "number_of_requests"}
    assert set(PipelineSpec.model_fields) == payload
    assert set(FailurePatch.model_fields) == set(FailureConfig.model_fields)


def test_without_blocks_a_run_gets_the_defaults() -> None:
    scenario = parse_scenario(BASE, "lab.yaml")
    phase = scenario.phases[0]
    assert scenario.failure_config_for(phase) == FailureConfig.defaults()
    assert scenario.pipeline_for(phase) == PipelineOptions()
    breaker = scenario.circuit_breaker_for(phase)
    assert (breaker.enabled, breaker.failure_threshold, breaker.open_seconds) == (False, 5, 5.0)
    assert phase.job_endpoints == "all"


def test_phase_blocks_merge_over_run_blocks() -> None:
    text = BASE + (
        "pipeline:\n  cache_enabled: false\n  cache_ttl: 5\n"
        "failure_config:\n  db_latency_max_ms: 100\n  failure_rate: 0.2\n"
        "circuit_breaker: {enabled: true, failure_threshold: 3, open_seconds: 2}\n"
    )
    text = text.replace(
        "    max_rps: 20\n    disruptions:",
        "    max_rps: 20\n"
        "    pipeline: {cache_ttl: 9, db_latency: 40}\n"
        "    failure_config: {db_latency_min_ms: 60}\n"
        "    circuit_breaker: {enabled: false, failure_threshold: 1, open_seconds: 1}\n"
        "    disruptions:",
    )
    scenario = parse_scenario(text, "lab.yaml")
    warmup, outage = scenario.phases
    run = FailureConfig.defaults().model_copy(
        update={"db_latency_max_ms": 100.0, "failure_rate": 0.2}
    )
    assert scenario.failure_config_for(warmup) == run
    assert scenario.failure_config_for(outage) == run.model_copy(update={"db_latency_min_ms": 60.0})
    assert scenario.pipeline_for(warmup) == PipelineOptions(cache_enabled=False, cache_ttl=5.0)
    assert scenario.pipeline_for(outage) == PipelineOptions(
        cache_enabled=False, cache_ttl=9.0, db_latency_ms=40.0
    )
    assert scenario.circuit_breaker_for(warmup).failure_threshold == 3
    assert scenario.circuit_breaker_for(outage).enabled is False
    payload = scenario.payload_for(outage)
    assert (payload.cache_ttl, payload.db_latency, payload.rate_of_requests) == (9.0, 40.0, 20.0)


def test_phase_failure_config_checked_once_merged() -> None:
    text = BASE + "failure_config:\n  db_latency_max_ms: 25\n"
    text = text.replace(
        "    max_rps: 20\n    disruptions:",
        "    max_rps: 20\n    failure_config:\n      db_latency_min_ms: 30\n    disruptions:",
    )
    first = problem_of(text).splitlines()[0]
    assert first == (
        "bad.yaml:11: phases[1].failure_config: db_latency_min_ms (30) must not exceed "
        "db_latency_max_ms (25) once merged"
    )


def test_disruption_request() -> None:
    scenario = parse_scenario(BASE, "lab.yaml")
    request = scenario.phase("outage").disruptions[0].request()
    assert (request.type, request.severity, request.duration_seconds, request.endpoints) == (
        "db_outage",
        0.5,
        10.0,
        None,
    )


# ---- verdicts ----------------------------------------------------------------------------

CHECKS = BASE.replace(
    "checks:\n  - phase: outage\n    metric: error_rate\n    below: 0.05\n",
    "checks:\n"
    "  - {phase: outage, metric: error_rate, below: 0.05}\n"
    "  - {phase: outage, metric: retry_amplification, above: 1.3}\n"
    "  - {metric: p99_ms, below: 250}\n",
)


def judge(figures: dict[str, PhaseFigures]) -> list[CheckResult]:
    return evaluate(parse_scenario(CHECKS, "lab.yaml"), figures)


def test_verdict_pass() -> None:
    results = judge(
        {
            "outage": PhaseFigures(error_rate=0.031, retry_amplification=1.9),
            "all": PhaseFigures(p99_ms=120.5),
        }
    )
    assert [r.message for r in results] == [
        "outage: error_rate 0.031 < 0.05: pass",
        "outage: retry_amplification 1.9 > 1.3: pass",
        "all: p99_ms 120.5 < 250: pass",
    ]
    assert all(r.passed for r in results)
    assert passed(results)
    first = results[0]
    assert (first.phase, first.metric, first.comparison, first.threshold, first.observed) == (
        "outage",
        "error_rate",
        "below",
        0.05,
        0.031,
    )


def test_verdict_thresholds_are_strict() -> None:
    results = judge(
        {
            "outage": PhaseFigures(error_rate=0.05, retry_amplification=1.3),
            "all": PhaseFigures(p99_ms=250.0),
        }
    )
    assert [r.passed for r in results] == [False, False, False]
    assert results[0].message == "outage: error_rate 0.05 >= 0.05 (wanted < 0.05): fail"
    assert results[1].message == "outage: retry_amplification 1.3 <= 1.3 (wanted > 1.3): fail"
    assert not passed(results)


def test_verdict_without_data_fails() -> None:
    results = judge(
        {"outage": PhaseFigures(error_rate=None, retry_amplification=math.nan)}
    )  # no "all" at all
    assert [r.passed for r in results] == [False, False, False]
    assert [r.observed for r in results] == [None, None, None]
    assert results[0].message == "outage: error_rate: no data (wanted < 0.05): fail"
    assert "no data" in results[2].message


def test_verdict_shows_enough_digits_to_tell_values_apart() -> None:
    results = judge({"outage": PhaseFigures(error_rate=0.0499996)})
    assert results[0].passed
    assert results[0].message == "outage: error_rate 0.0499996 < 0.05: pass"


def test_verdict_mixed() -> None:
    results = judge(
        {
            "outage": PhaseFigures(error_rate=0.2, retry_amplification=1.875),
            "all": PhaseFigures(p99_ms=30.0),
        }
    )
    assert [r.passed for r in results] == [False, True, True]
    assert not passed(results)


def test_the_documented_example_loads() -> None:
    docs = (SCENARIOS.parents[2] / "docs" / "scenarios.md").read_text()
    example = docs.split("```yaml\n", 1)[1].split("```", 1)[0]
    scenario = parse_scenario(example, "docs/scenarios.md")
    assert [phase.name for phase in scenario.phases] == ["warmup", "outage", "recovery"]
    assert [check.phase for check in scenario.checks] == ["outage", "recovery", "all"]
