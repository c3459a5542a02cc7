"""The command line a person expects: --version, -h, completion, validate, errors in words."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from simulator.cli import app as cli
from tests.support.servers import free_port

SCENARIOS = Path(__file__).resolve().parents[2] / "simulator" / "scenario" / "bundled"

MANY_PROBLEMS = """\
name: many
phases:
  - name: warmup
    scenario: normal
    duration: 10
  - name: outage
    scenario: normal
    duration: 5
    max_rps: 5000
    disruptions:
      - at: 6
        type: db_outage
        severity: 0.5
        duration: 2
  - name: warmup
    scenario: peak
    duration: 4
    max_rps: 10
checks:
  - phase: outag
    metric: error_rate
    below: 0.05
  - phase: outage
    metric: error_rate
    below: 2
"""


def invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.output


def test_version_and_short_help() -> None:
    code, out = invoke("--version")
    assert (code, out) == (0, "failure-lab 0.1.0\n")
    code, out = invoke("-h")
    assert code == 0
    assert "validate" in out
    assert "compare" in out
    assert "--install-completion" in out
    code, out = invoke("run", "-h")
    assert code == 0
    assert "--set" in out


def test_the_command_list_shows_one_line_each() -> None:
    _, out = invoke("-h")
    run_line = next(line for line in out.splitlines() if line.strip("│ ").startswith("run "))
    assert "Run a scenario, watch it live, and judge it." in run_line


def test_validate_reports_every_problem_in_one_pass(tmp_path: Path) -> None:
    path = tmp_path / "many.yaml"
    path.write_text(MANY_PROBLEMS)
    code, out = invoke("validate", str(path))
    assert code == 2
    lines = [line for line in out.splitlines() if line.startswith(str(path))]
    assert lines == [
        f"{path}:3: phases[0].max_rps: required for scenario normal (only stress defaults to "
        "the server's cap)",
        f"{path}:9: phases[1].max_rps: 5000 req/s exceeds the server's cap of 2000 "
        "(FAILURE_LAB_MAX_RPS)",
        f"{path}:11: phases[1].disruptions[0].at: starts at 6s, not within the phase's 5s",
        f"{path}:15: phases[2].name: duplicate phase name 'warmup' (also phases[0])",
        f"{path}:20: checks[0].phase: unknown phase 'outag'; phases are: warmup, outage "
        '(or "all" for the whole run)',
        f"{path}:25: checks[1].below: error_rate is a fraction from 0 to 1 (5 % is 0.05)",
    ]


def test_validate_hints_at_quoting_route_keys(tmp_path: Path) -> None:
    path = tmp_path / "flow.yaml"
    path.write_text(
        "name: flow\nphases:\n  - name: p\n    scenario: normal\n    duration: 2\n"
        "    max_rps: 5\n    endpoints: [GET /api/v1/users/{id}, GET /api/v1/users]\n"
    )
    code, out = invoke("validate", str(path))
    assert code == 2
    assert f"{path}:7: YAML syntax:" in out
    assert 'quote each one ("GET /api/v1/users/{id}")' in out


def test_validate_a_good_file_prints_its_plan_and_takes_overrides() -> None:
    code, out = invoke("validate", "demo", "--set", "phases.fault.duration=30")
    assert code == 0, out
    assert "demo: valid: 3 phase(s), 70 s, 5 check(s)" in out
    assert "+100 ms on every query" in out
    code, out = invoke("validate", "demo", "--set", "phases.fault.duration=900")
    assert code == 2
    assert "phases[1].duration: 900 s exceeds the server's cap of 600" in out


def test_a_target_without_a_scheme_that_nothing_answers(tmp_path: Path) -> None:
    port = free_port()
    code, out = invoke("run", str(SCENARIOS / "smoke.yaml"), "--target", f"127.0.0.1:{port}")
    assert code == 3
    assert (
        f"run failed: nothing answers at http://127.0.0.1:{port}: is `failure-lab serve` "
        "running there?"
    ) in out
    code, out = invoke("run", str(SCENARIOS / "smoke.yaml"), "--target", "ftp://x")
    assert code == 3
    assert "is not an http:// URL" in out


def test_report_and_compare_refuse_a_file_that_is_not_a_report(tmp_path: Path) -> None:
    other = tmp_path / "other.json"
    other.write_text('{"scenario": "x"}')
    code, out = invoke("report", str(other))
    assert code == 2
    assert "is not a failure-lab run report" in out
