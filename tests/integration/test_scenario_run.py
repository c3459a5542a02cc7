"""``failure-lab run``: verdicts, exit codes and a report whose numbers are the service's own.

The runs go to a real app served here (its spans kept, so the report can be held against
the traces) or, without a target, to the embedded default the runner starts itself.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.trace import SpanKind
from rich.console import Console
from typer.testing import CliRunner

from failure_lab.control import FailureConfig
from simulator.cli import app as cli
from simulator.generator.engine import JOB_ID_ATTRIBUTE
from simulator.scenario.session import run_file
from tests.support.labs import metrics_again, running_lab, sample
from tests.support.servers import free_port

pytestmark = pytest.mark.timeout(180)
SCENARIOS = Path(__file__).resolve().parents[2] / "simulator" / "scenario" / "bundled"

OUTAGE = """\
name: outage-check
phases:
  - name: before
    scenario: normal
    duration: 3
    max_rps: 40
  - name: outage
    scenario: normal
    duration: 4
    max_rps: 40
    pipeline:
      cache_enabled: false
    disruptions:
      - at: 0.5
        type: db_outage
        severity: 0.6
        duration: 3
checks:
  - phase: before
    metric: error_rate
    below: 0.01
  - phase: outage
    metric: retry_amplification
    above: 1.3
  - phase: outage
    metric: error_rate
    below: {outage_error_below}
  - metric: achieved_rate_ratio
    above: 0.99
"""


def console() -> tuple[Console, io.StringIO]:
    out = io.StringIO()
    return Console(file=out, width=200, force_terminal=False), out


async def test_a_run_reports_what_the_metrics_and_traces_say(tmp_path: Path) -> None:
    scenario = tmp_path / "outage.yaml"
    scenario.write_text(OUTAGE.format(outage_error_below=0.9))
    report_path = tmp_path / "report.json"
    async with running_lab(metrics_sample_interval_seconds=0.25) as lab:
        before_config = (await lab.http.get("/v1/config/failure")).json()
        before_breaker = (await lab.http.get("/v1/config/circuit-breaker")).json()
        screen, out = console()
        code = await run_file(
            scenario,
            target=str(lab.http.base_url),
            report_path=report_path,
            settle_seconds=1.0,
            console=screen,
        )
        assert code == 0, out.getvalue()
        report: dict[str, Any] = json.loads(report_path.read_text())
        # The same question asked again gives the report's figures: they are /metrics/json's.
        for phase in report["phases"]:
            service = phase["service"]
            again = await metrics_again(lab.http, service)
            assert again["request_rate"] == service["request_rate"]
            assert again["error_rate"] == service["error_rate"]
            assert again["p99_latency"] == service["p99_ms"]
        # The generator's figures are the job's summary as the job API serves it.
        for phase in report["phases"]:
            job = (await lab.http.get(f"/v1/traffic/jobs/{phase['job_id']}")).json()
            assert phase["generator"] == job["summary"]
            assert (phase["status"], phase["rps"]) == (job["status"], job["rps"])
            assert (phase["status"], phase["rps"]) == ("completed", 40)
        # Every failed request id is a trace whose response was an error.
        outage = report["phases"][1]
        generator = outage["generator"]
        assert generator["failed"] > 0
        assert len(generator["failed_request_ids"]) == min(20, generator["failed"])
        finished = generator["succeeded"] + generator["failed"]
        assert outage["generator_error_rate"] == generator["failed"] / finished
        for request_id in generator["failed_request_ids"][-3:]:
            trace = (await lab.http.get(f"/v1/trace/{request_id}")).json()
            sent = [e for e in trace["trace"]["events"] if e["event_type"] == "response.sent"]
            assert sent
            assert sent[0]["metadata"]["status_code"] >= 500
        # The service is as it was: config, breaker, no disruption left.
        assert (await lab.http.get("/v1/config/failure")).json() == before_config
        assert (await lab.http.get("/v1/config/circuit-breaker")).json() == before_breaker
        assert (await lab.http.get("/v1/disruptions")).json()["count"] == 0
        affected = sample(
            lab.app, "failure_lab_disruption_requests_affected_total", type="db_outage"
        )

    assert report["verdict"] == "pass"
    assert [c["passed"] for c in report["checks"]] == [True] * 4
    assert [p["name"] for p in report["phases"]] == ["before", "outage"]
    for phase in report["phases"]:
        generator = phase["generator"]
        # The generator's counts are the client spans the job left, one per request sent.
        spans = [
            s
            for s in lab.spans.get_finished_spans()
            if s.kind is SpanKind.CLIENT
            and (s.attributes or {}).get(JOB_ID_ATTRIBUTE) == phase["job_id"]
        ]
        sent, planned = generator["sent"], generator["planned"]
        assert len(spans) == sent == planned == 40 * phase["duration_seconds"]
        assert phase["achieved_rate_ratio"] == 1.0
        # Corrected for coordinated omission (from the intended send) and not (actual send).
        corrected, uncorrected = generator["latency_ms"], generator["service_latency_ms"]
        assert corrected["p50"] <= corrected["p95"] <= corrected["p99"]
        assert corrected["p99"] >= uncorrected["p99"] - 0.001  # latency from the intended send
        assert len(generator["slowest"]) == 10
        durations = [s["latency_ms"] for s in generator["slowest"]]
        assert durations == sorted(durations, reverse=True)
        assert durations[0] >= corrected["p99"]
    disruption = outage["disruptions"][0]
    assert (disruption["type"], disruption["at_seconds"], disruption["duration_seconds"]) == (
        "db_outage",
        0.5,
        3.0,
    )
    assert affected > 0
    assert outage["service"]["retry_amplification"] > 1.3
    assert report["phases"][0]["service"]["retry_amplification"] == 1.0
    # The service counted what the generator sent: 280 requests, over the whole run.
    whole = report["whole_run"]["service"]
    assert whole["request_rate"] * whole["window_seconds"] == pytest.approx(280, rel=0.05)
    text = out.getvalue()
    assert "verdict: PASS: all 4 checks held" in text
    assert "outage: retry_amplification" in text


async def test_a_failing_check_is_exit_1_with_the_failure_named(tmp_path: Path) -> None:
    scenario = tmp_path / "outage.yaml"
    scenario.write_text(OUTAGE.format(outage_error_below=0.0001))
    async with running_lab() as lab:
        screen, out = console()
        code = await run_file(
            scenario,
            target=str(lab.http.base_url),
            report_path=tmp_path / "r.json",
            settle_seconds=1.0,
            console=screen,
        )
    assert code == 1
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["verdict"] == "fail"
    failed = [c for c in report["checks"] if not c["passed"]]
    assert [(c["phase"], c["metric"]) for c in failed] == [("outage", "error_rate")]
    assert "FAIL" in out.getvalue()


def test_the_shipped_smoke_scenario_passes_on_the_embedded_default(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        cli, ["run", str(SCENARIOS / "smoke.yaml"), "--report", str(tmp_path / "smoke.json")]
    )
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "smoke.json").read_text())
    assert report["verdict"] == "pass"
    assert report["checks"]
    assert all(check["passed"] for check in report["checks"])


def test_the_shipped_failing_scenario_fails_on_the_embedded_default(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        cli,
        ["run", str(SCENARIOS / "failing-check.yaml"), "--report", str(tmp_path / "fail.json")],
    )
    assert result.exit_code == 1, result.output
    report = json.loads((tmp_path / "fail.json").read_text())
    assert report["verdict"] == "fail"
    assert any(not check["passed"] for check in report["checks"])


def test_a_bad_file_is_exit_2_naming_the_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(OUTAGE.format(outage_error_below=0.5).replace("severity: 0.6", "severity: 2"))
    result = CliRunner().invoke(cli, ["run", str(bad)])
    assert result.exit_code == 2
    assert "bad.yaml:16: phases[1].disruptions[0].severity" in result.output
    assert "severity" in result.output
    assert not (Path.cwd() / "outage-check-report.json").exists()


def test_an_unreachable_target_is_exit_3(tmp_path: Path) -> None:
    scenario = tmp_path / "s.yaml"
    scenario.write_text(OUTAGE.format(outage_error_below=0.5))
    down = f"http://127.0.0.1:{free_port()}"
    result = CliRunner().invoke(cli, ["run", str(scenario), "--target", down])
    assert result.exit_code == 3
    assert "run failed" in result.output
    assert down in result.output


async def test_a_refused_step_stops_the_run_and_restores_the_service(tmp_path: Path) -> None:
    scenario = tmp_path / "s.yaml"
    scenario.write_text(
        OUTAGE.format(outage_error_below=0.5).replace(
            "    pipeline:\n      cache_enabled: false\n",
            "    failure_config:\n      failure_injection_enabled: true\n",
        )
    )
    # The server allows less than the phase asks: the second phase's job is refused.
    async with running_lab(max_rps=40, max_active_jobs=1) as lab:
        blocker = await lab.http.post(
            "/v1/traffic/jobs", json={"scenario": "normal", "duration": 20, "max_rps": 1}
        )
        assert blocker.status_code == 201
        screen, out = console()
        code = await run_file(
            scenario,
            target=str(lab.http.base_url),
            report_path=tmp_path / "r.json",
            settle_seconds=0.5,
            console=screen,
        )
        config = FailureConfig.model_validate((await lab.http.get("/v1/config/failure")).json())
        await lab.http.post(f"/v1/traffic/jobs/{blocker.json()['job_id']}/stop")
    assert code == 3
    assert "409" in out.getvalue()
    assert "FAILURE_LAB_MAX_ACTIVE_JOBS" in out.getvalue()
    assert config == FailureConfig.defaults()
    assert not (tmp_path / "r.json").exists()
