"""The run report and how the runner reads the target's answers, without a server.

A phase's generator figures are the job's summary as the job API serves it, and the ratios
derived from them are computed from that summary; an answer that is not the contract's
model ends the run naming the call.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from failure_lab.control import FailureConfig, Job, JobSummary, Percentiles
from failure_lab.settings import Settings
from failure_lab.topology import Topology
from simulator.scenario.client import ContractClient, RunFailed
from simulator.scenario.conditions import ServerConstants
from simulator.scenario.loader import parse_scenario
from simulator.scenario.report import PhaseReport, ServiceFigures
from simulator.scenario.runner import ScenarioRunner
from simulator.scenario.sampler import Live

START = datetime(2030, 1, 1, tzinfo=UTC)
LATENCY = Percentiles(p50=10.0, p95=20.0, p99=30.0)
SCENARIO = """\
name: lab
phases:
  - name: only
    scenario: normal
    duration: 2
    max_rps: 10
"""


def summary(**changes: Any) -> JobSummary:
    figures: dict[str, Any] = {
        "planned": 40,
        "sent": 38,
        "dropped": 2,
        "succeeded": 30,
        "failed": 6,
        "late_sends": 1,
        "elapsed_seconds": 4.1,
        "achieved_rps": 9.5,
        "latency_ms": LATENCY,
        "service_latency_ms": LATENCY,
        "send_lag_ms": LATENCY,
        "slowest": [{"request_id": "r1", "latency_ms": 31.0}],
        "failed_request_ids": ["r2"],
    }
    return JobSummary.model_validate(figures | changes)


def phase(generator: JobSummary) -> PhaseReport:
    service = ServiceFigures(
        window_seconds=4.0,
        window_end=START,
        request_rate=9.0,
        error_rate=0.1,
        retry_count=0.0,
        retry_amplification=1.0,
        p95_ms=20.0,
        p99_ms=30.0,
    )
    return PhaseReport(
        name="only",
        scenario="normal",
        job_id="j",
        status="completed",
        started_at=START,
        ended_at=START,
        duration_seconds=4.0,
        rps=10.0,
        generator=generator,
        service=service,
        disruptions=[],
    )


def test_a_phase_embeds_the_summary_as_served_and_derives_its_ratios() -> None:
    generator = summary()
    report = phase(generator)
    written = json.loads(report.model_dump_json())
    assert written["generator"] == json.loads(generator.model_dump_json())
    assert written["achieved_rate_ratio"] == 38 / 40
    assert written["generator_error_rate"] == 6 / 36
    assert PhaseReport.model_validate_json(report.model_dump_json()) == report


def test_ratios_without_requests_are_none() -> None:
    report = phase(summary(planned=0, sent=0, dropped=0, succeeded=0, failed=0))
    written = json.loads(report.model_dump_json())
    assert (written["achieved_rate_ratio"], written["generator_error_rate"]) == (None, None)


class Quiet:
    def phase_started(self, index: int, phase: object, job: Job, plan: list[str]) -> None: ...

    def job_update(self, index: int, phase: object, job: Job) -> None: ...

    def live(self, index: int, phase: object, figures: Live) -> None: ...

    def phase_finished(
        self, index: int, phase: object, summary: JobSummary, warnings: list[str]
    ) -> None: ...

    def note(self, text: str) -> None: ...

    def topology(self, phase: str, topology: Topology) -> None: ...


async def run_against(job_answer: httpx.Response) -> tuple[str, list[str]]:
    """Runs the scenario on a target answering ``job_answer`` to the job's start; returns
    why the run failed and every call the target received."""
    calls: list[str] = []
    breaker = {
        "enabled": False,
        "failure_threshold": 5,
        "open_seconds": 5.0,
        "state": "closed",
        "consecutive_failures": 0,
        "trips": 0,
    }

    def target(request: httpx.Request) -> httpx.Response:
        calls.append(f"{request.method} {request.url.path}")
        if request.url.path == "/v1/traffic/jobs":
            return job_answer
        if request.url.path == "/v1/config/circuit-breaker":
            return httpx.Response(200, json=breaker)
        return httpx.Response(200, json=FailureConfig.defaults().model_dump(mode="json"))

    transport = httpx.MockTransport(target)
    async with httpx.AsyncClient(transport=transport, base_url="http://lab") as http:
        runner = ScenarioRunner(
            parse_scenario(SCENARIO),
            ContractClient(http, "http://lab"),
            Quiet(),  # type: ignore[arg-type]
            source="lab.yaml",
            server=ServerConstants.of(Settings()),
        )
        with pytest.raises(RunFailed) as failed:
            await runner.run()
    return str(failed.value), calls


async def test_an_answer_that_is_not_a_job_fails_the_run_naming_the_call() -> None:
    why, calls = await run_against(httpx.Response(201, json={"job_id": "j"}))
    assert why.startswith("POST /v1/traffic/jobs: not a Job answer")
    assert "status" in why
    # The failure config and breaker read at the start are put back.
    assert calls[-2:] == ["PUT /v1/config/failure", "PUT /v1/config/circuit-breaker"]


@pytest.mark.parametrize(
    ("answer", "detail"),
    [
        (httpx.Response(409, json={"detail": "2 job(s) running"}), "2 job(s) running"),
        (
            httpx.Response(409, json={"detail": [{"loc": ["body", "duration"]}]}),
            '{"detail":[{"loc":["body","duration"]}]}',  # not the contract's shape: quoted as is
        ),
        (httpx.Response(409, text="busy, try later"), "busy, try later"),
    ],
)
async def test_a_refusal_names_the_status_and_the_detail(
    answer: httpx.Response, detail: str
) -> None:
    why, _ = await run_against(answer)
    assert why == f"POST /v1/traffic/jobs answered 409: {detail}"
