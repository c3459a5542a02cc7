"""The conclusion in words, for the shipped scenarios, and the generator's warnings.

Each report is built from figures like the ones a run of the scenario gives (its file's
comment records one run), so the sentences can be read whole.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from failure_lab.control import JobSummary, Percentiles
from simulator.scenario.conclude import conclusion, generator_warnings
from simulator.scenario.loader import load_scenario
from simulator.scenario.report import PhaseReport, Prediction, ServiceFigures

SCENARIOS = Path(__file__).resolve().parents[2] / "simulator" / "scenario" / "bundled"
AT = datetime(2030, 1, 1, tzinfo=UTC)


def summary(**changes: Any) -> JobSummary:
    latency = Percentiles(p50=10.0, p95=20.0, p99=30.0)
    figures: dict[str, Any] = {
        "planned": 400, "sent": 400, "dropped": 0, "succeeded": 400, "failed": 0,
        "late_sends": 0, "elapsed_seconds": 10.0, "achieved_rps": 40.0, "latency_ms": latency,
        "service_latency_ms": latency, "send_lag_ms": Percentiles(p50=0.1, p95=0.5, p99=1.0),
        "slowest": [], "failed_request_ids": [],
    }  # fmt: skip
    return JobSummary.model_validate(figures | changes)


def phase(name: str, errors: float, p99: float, retries: float = 1.0, **more: Any) -> PhaseReport:
    service = ServiceFigures(
        window_seconds=10.0, window_end=AT, request_rate=40.0, error_rate=errors,
        retry_count=400 * (retries - 1), retry_amplification=retries, p95_ms=p99 * 0.9,
        p99_ms=p99,
    )  # fmt: skip
    return PhaseReport(
        name=name, scenario="normal", job_id=name, status="completed", started_at=AT,
        ended_at=AT, duration_seconds=10.0, rps=40.0, generator=more.pop("generator", summary()),
        service=service, disruptions=[], **more,
    )  # fmt: skip


def said(name: str, *phases: PhaseReport) -> list[str]:
    return conclusion(load_scenario(SCENARIOS / f"{name}.yaml"), phases)


def amplification(predicted: float, measured: float, bar: float) -> Prediction:
    return Prediction(
        figure="retry_amplification", predicted=predicted, measured=measured, draws=400,
        error_bar=bar, formula="f", assumptions="a",
    )  # fmt: skip


def test_demo() -> None:
    fault = phase("fault", 0.0744, 1115.6, 1.776, predictions=[amplification(1.72, 1.776, 0.03)])
    assert said("demo", phase("steady", 0.0, 22.6), fault, phase("recovery", 0.0, 22.2)) == [
        "In fault, 7.4% of requests failed (against 0.0% in steady), p99 went from 22.6 ms to "
        "1116 ms (49.4x) and the database did 1.78x the work per request (the model: 1.72x).",
        "In recovery the service was back to steady's figures: 0.0% errors, p99 22.2 ms.",
        "The model's prediction agrees with the measurement.",
    ]


def test_retry_storm_with_a_prediction_off() -> None:
    outage = phase("outage", 0.064, 80.0, 1.4, predictions=[amplification(1.875, 1.4, 0.03)])
    lines = said("retry-storm", phase("warmup", 0.0, 20.0), outage, phase("recovery", 0.0, 21.0))
    assert lines[2] == (
        "1 of 1 predictions are off by more than 3 error bars (outage retry_amplification 1.4 "
        "against 1.88): something the model leaves out was at play (its assumptions are in the "
        "report)."
    )


def test_slow_database_breaker_does_not_recover_within_its_open_seconds() -> None:
    lines = said(
        "slow-database-breaker",
        phase("warmup", 0.0, 20.0),
        phase("hang", 1.0, 980.0, 1.02),
        phase("recovery", 0.58, 30.0),
    )
    assert lines[1] == (
        "In recovery the service had not recovered: 58.0% errors (against 0.0%), p99 30.0 ms "
        "(against 20.0 ms)."
    )


def test_cache_outage_and_a_phase_under_fault_from_its_start() -> None:
    lines = said(
        "cache-outage",
        phase("warmup", 0.0, 15.0),
        phase("baseline", 0.0, 0.1),
        phase("outage", 0.0, 20.0),
        phase("recovery", 0.0, 0.1),
    )
    assert lines[0].startswith("In outage, 0.0% of requests failed (against 0.0% in warmup)")
    assert (
        lines[1] == "In recovery the service was back to warmup's figures: 0.0% errors, p99 0.1 ms."
    )
    assert said("failing-check", phase("burst", 0.479, 25.0)) == [
        "In burst, under a fault from its start, 47.9% of requests failed and p99 was 25.0 ms."
    ]


def test_smoke_ran_no_fault() -> None:
    assert said("smoke", phase("warmup", 0.0, 22.7), phase("steady", 0.0, 20.7)) == [
        "No phase ran under a fault: 0.0% errors, p99 22.7 ms in warmup."
    ]


def test_a_generator_that_dropped_and_lagged_says_so_with_counts() -> None:
    lagging = summary(
        planned=20000, sent=8230, dropped=11770, achieved_rps=823.0,
        latency_ms=Percentiles(p50=40.0, p95=100.0, p99=120.0),
        send_lag_ms=Percentiles(p50=20.0, p95=70.0, p99=82.0), late_sends=6000,
    )  # fmt: skip
    assert generator_warnings(lagging, 2000.0, 30.0) == [
        "the generator dropped 11,770 of 20,000 planned requests (59%) at its in-flight bound "
        "(FAILURE_LAB_MAX_IN_FLIGHT): it sent 823 of 2,000 req/s",
        "6,000 of 8,230 requests were sent late (send lag p99 82.0 ms)",
        "client p99 120 ms is mostly the generator's own send lag (82.0 ms): its process was too "
        "busy to keep the schedule; the service's p99 (30.0 ms) is the figure to trust",
    ]
    stress = phase("stress", 0.0, 30.0, generator=lagging, warnings=["dropped"])
    assert said("smoke", stress)[-1] == (
        "The generator fell short of the asked rate in stress (see the warnings): those figures "
        "describe a lighter load than the file asks for."
    )
    assert generator_warnings(summary(), 40.0) == []


def test_a_prediction_off_for_a_known_reason_says_the_reason() -> None:
    hits = Prediction(
        figure="cache_hit_ratio", predicted=0.245, measured=0.338, draws=800, error_bar=0.015,
        formula="f", assumptions="a", caveat="the model assumes requests do not overlap",
    )  # fmt: skip
    fault = phase("fault", 0.08, 1100.0, 1.73, predictions=[hits])
    lines = said("demo", phase("steady", 0.0, 27.0), fault, phase("recovery", 0.0, 30.0))
    assert lines[-1] == (
        "1 of 1 predictions are off by more than 3 error bars (fault cache_hit_ratio 0.338 "
        "against 0.245): the model assumes requests do not overlap."
    )
