"""Jobs split over worker processes, against the real app: exactly the planned requests, one
merged summary equal to what the service and the statistics saw, one trace per request, and
worker processes that end with their job, whether it completes, is stopped, loses a worker
or the server shuts down."""

from __future__ import annotations

import asyncio
import io
import json
import os
import signal
import uuid
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind
from rich.console import Console
from typer.testing import CliRunner

from simulator.cli import app as cli
from simulator.generator.engine import JOB_ID_ATTRIBUTE, SEND_LAG_ATTRIBUTE
from simulator.generator.split import WORKER_MODULE
from simulator.generator.stats import percentiles
from simulator.scenario.session import RUN_FAILED, run_file
from tests.integration.test_scenario_jobs import events
from tests.support.labs import BURST_PAYLOAD, Lab, running_lab, sample

pytestmark = pytest.mark.timeout(180)

PAYLOAD = {**BURST_PAYLOAD, "rate_limiting": 0}


def split_lab(**settings: Any) -> AbstractAsyncContextManager[Lab]:
    """The app allowing 2 workers a job, its control calls not rate limited (tests poll)."""
    return running_lab(max_workers=2, control_rate_limit="0", **settings)


def worker_pids() -> list[int]:
    """Worker processes of this test process, from /proc (children only)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            status = (entry / "status").read_text()
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue  # gone meanwhile
        parent = next(line for line in status.splitlines() if line.startswith("PPid:"))
        if int(parent.split()[1]) == os.getpid() and WORKER_MODULE in command:
            found.append(int(entry.name))
    return sorted(found)


def alive(pid: int) -> bool:
    return Path(f"/proc/{pid}").exists()


async def running_with_workers(lab: Lab, job_id: str, count: int) -> list[int]:
    """The job's worker pids, once it has sent something."""
    while True:
        job = (await lab.http.get(f"/v1/traffic/jobs/{job_id}")).json()
        assert job["status"] == "running", job
        if job["stats"]["total"] > 0:
            pids = worker_pids()
            assert len(pids) == count
            return pids
        await asyncio.sleep(0.05)


def client_spans(lab: Lab, job_id: str) -> list[ReadableSpan]:
    return [
        span
        for span in lab.spans.get_finished_spans()
        if span.kind is SpanKind.CLIENT and (span.attributes or {}).get(JOB_ID_ATTRIBUTE) == job_id
    ]


def service_requests(lab: Lab) -> float:
    """Requests the simulated service answered, by its own counter."""
    return sum(
        sample.value
        for family in lab.app.state.registry.collect()
        if family.name == "failure_lab_http_requests"
        for sample in family.samples
        if sample.name == "failure_lab_http_requests_total"
    )


async def test_a_two_worker_job_sends_exactly_its_plan_and_merges_as_one() -> None:
    async with split_lab(max_rps=400) as lab:
        started = await lab.http.post(
            "/v1/traffic/generate",
            json={"mode": "sustained", "rps": 150, "duration": 2, "payload": PAYLOAD, "workers": 2},
        )
        assert started.status_code == 202, started.text
        job_id = started.json()["job_id"]
        assert started.json()["workers"] == 2
        stream = await events(lab.http, job_id)
        statistics = (await lab.http.get("/v1/traffic/statistics")).json()
        served = service_requests(lab)
        assert worker_pids() == []  # a completed job has no process left
    kind, done = stream[-1]
    assert (kind, done["status"], done["error"]) == ("done", "completed", None)
    summary = done["summary"]
    assert summary["planned"] == 300
    assert summary["sent"] + summary["dropped"] == 300
    sent = summary["sent"]
    assert sent >= 295  # 128 in flight per worker; a dropped one is counted, never lost
    assert summary["succeeded"] + summary["failed"] == sent
    # While it ran, the stream carried the workers' counts as they came.
    totals = [data["stats"]["total"] for event, data in stream if event == "status"]
    assert any(0 < total < sent for total in totals)
    assert totals == sorted(totals)
    assert done["stats"]["total"] == sent

    # The service saw every request once; the statistics and the series count them all.
    assert served == sent
    assert statistics["totals"]["sent"] == sent
    assert statistics["totals"]["in_flight"] == 0
    assert statistics["totals"]["dropped"] == summary["dropped"]
    assert statistics["totals"]["succeeded"] == summary["succeeded"]
    assert statistics["totals"]["late_sends"] == summary["late_sends"]
    assert sum(c["sent"] for c in statistics["endpoint_counts"].values()) == sent
    assert sample(lab.app, "failure_lab_generator_requests_total", result="sent") == sent
    latency_count = "failure_lab_generator_latency_seconds_count"
    assert sample(lab.app, latency_count, basis="intended") == sent
    assert sample(lab.app, "failure_lab_generator_in_flight") == 0
    assert sample(lab.app, "failure_lab_generator_target_rps") == 0

    # One trace per request: the workers' client spans reached this process before the job
    # completed, each the root of the trace its server span is in.
    clients = client_spans(lab, job_id)
    assert len(clients) == sent
    client_traces = {span.context.trace_id for span in clients if span.context}
    assert len(client_traces) == sent
    servers = [s for s in lab.spans.get_finished_spans() if s.kind is SpanKind.SERVER]
    assert {s.context.trace_id for s in servers if s.context} == client_traces
    assert all(span.parent is None for span in clients)
    store = lab.app.state.exporter_shim.store
    assert all(store.spans(trace_id, "client") for trace_id in client_traces)

    # The merged percentiles are those of every request: the send lags the workers put on
    # their spans are the samples they measured.
    lags = [float((span.attributes or {})[SEND_LAG_ATTRIBUTE]) for span in clients]
    assert summary["send_lag_ms"] == percentiles(lags).model_dump()
    slowest = [uuid.UUID(s["request_id"]).int for s in summary["slowest"]]
    assert len(slowest) == 10
    assert set(slowest) <= client_traces
    latencies = [s["latency_ms"] for s in summary["slowest"]]
    assert latencies == sorted(latencies, reverse=True)
    assert summary["latency_ms"]["p99"] <= latencies[0]


async def test_a_two_worker_scenario_job_follows_its_shape() -> None:
    async with split_lab(max_rps=400) as lab:
        answer = await lab.http.post(
            "/v1/traffic/jobs",
            json={"scenario": "error_injection", "duration": 2, "max_rps": 100, "workers": 2},
        )
        assert answer.status_code == 201, answer.text
        job = answer.json()
        done = (await events(lab.http, job["job_id"]))[-1][1]
    assert (done["status"], done["workers"], done["summary"]["planned"]) == (
        "completed",
        2,
        200,
    )
    routes = [
        (span.attributes or {}).get("http.route")
        for span in lab.spans.get_finished_spans()
        if span.kind is SpanKind.SERVER
    ]
    # Exactly 3 in 10 to the error endpoint over the whole job, as in one process.
    assert routes.count("/api/v1/users/error") == 60
    assert len(routes) == done["summary"]["sent"] == 200


async def test_stopping_a_two_worker_job_stops_both_workers() -> None:
    async with split_lab() as lab:
        started = await lab.http.post(
            "/v1/traffic/generate",
            json={"mode": "sustained", "rps": 50, "duration": 60, "payload": PAYLOAD, "workers": 2},
        )
        job_id = started.json()["job_id"]
        pids = await running_with_workers(lab, job_id, 2)
        stopped = (await lab.http.post(f"/v1/traffic/jobs/{job_id}/stop")).json()
        assert not [pid for pid in pids if alive(pid)]
        statistics = (await lab.http.get("/v1/traffic/statistics")).json()
    assert stopped["status"] == "cancelled"
    # Their last counts came back before they exited: nothing is in flight or unaccounted.
    assert statistics["totals"]["sent"] == stopped["stats"]["total"] > 0
    assert statistics["totals"]["in_flight"] == 0
    assert stopped["stats"]["current_rps"] == 0


async def test_a_worker_that_dies_ends_the_job_in_error() -> None:
    async with split_lab() as lab:
        started = await lab.http.post(
            "/v1/traffic/jobs",
            json={"scenario": "normal", "duration": 60, "max_rps": 40, "workers": 2},
        )
        job_id = started.json()["job_id"]
        first, second = await running_with_workers(lab, job_id, 2)
        os.kill(second, signal.SIGKILL)
        done = (await events(lab.http, job_id))[-1][1]
        assert worker_pids() == []
        assert not alive(first)
    assert done["status"] == "error"
    assert done["summary"] is None
    assert done["error"].startswith("worker 2 of 2 ")
    assert f"(pid {second}) exited with status -9 before it finished" in done["error"]


async def test_a_worker_that_does_not_stop_is_killed_within_the_grace() -> None:
    """A worker frozen mid-run cannot answer Stop: the server's shutdown kills it."""
    async with split_lab(shutdown_grace_seconds=1) as lab:
        started = await lab.http.post(
            "/v1/traffic/generate",
            json={"mode": "sustained", "rps": 20, "duration": 60, "payload": PAYLOAD, "workers": 2},
        )
        pids = await running_with_workers(lab, started.json()["job_id"], 2)
        os.kill(pids[0], signal.SIGSTOP)
    # The server is gone, and with it both workers: the frozen one killed, the other stopped.
    assert not [pid for pid in pids if alive(pid)]


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/traffic/jobs", {"scenario": "normal", "duration": 1, "workers": 3}),
        (
            "/v1/traffic/generate",
            {"mode": "sustained", "rps": 5, "duration": 1, "payload": PAYLOAD, "workers": 3},
        ),
    ],
)
async def test_more_workers_than_the_setting_allows_is_422_naming_it(
    path: str, body: dict[str, Any]
) -> None:
    async with split_lab() as lab:
        refused = await lab.http.post(path, json=body)
        listed = (await lab.http.get("/v1/traffic/jobs")).json()
    assert refused.status_code == 422
    detail = refused.json()["detail"]
    assert detail == (
        "body.workers: workers 3 exceeds the cap of 2; raise it with FAILURE_LAB_MAX_WORKERS"
    )
    assert listed == []
    assert worker_pids() == []


async def test_by_default_a_job_runs_in_this_process_only() -> None:
    async with running_lab() as lab:
        refused = await lab.http.post(
            "/v1/traffic/jobs", json={"scenario": "normal", "duration": 1, "workers": 2}
        )
        burst = await lab.http.post(
            "/v1/traffic/generate",
            json={"mode": "burst", "count": 2, "payload": PAYLOAD, "workers": 2},
        )
    assert refused.status_code == 422
    assert "FAILURE_LAB_MAX_WORKERS" in refused.json()["detail"]
    assert burst.status_code == 422
    assert "workers applies to sustained mode only" in str(burst.json()["detail"])


TWO_PHASES = """\
name: split
phases:
  - {name: first, scenario: normal, duration: 2, max_rps: 60}
  - {name: second, scenario: peak, duration: 2, max_rps: 60}
checks:
  - {metric: achieved_rate_ratio, above: 0.95}
"""


async def test_failure_lab_run_splits_every_phase_over_the_workers_asked_for(
    tmp_path: Path,
) -> None:
    scenario = tmp_path / "split.yaml"
    scenario.write_text(TWO_PHASES)
    async with split_lab() as lab:
        out = io.StringIO()
        target = str(lab.http.base_url)
        common: dict[str, Any] = {"target": target, "settle_seconds": 0.5, "workers": 2}
        code = await run_file(
            scenario, report_path=tmp_path / "r.json", console=Console(file=out), **common
        )
        jobs = (await lab.http.get("/v1/traffic/jobs")).json()
        common["workers"] = 3  # more than the target allows
        refused = await run_file(
            scenario, report_path=tmp_path / "no.json", console=Console(file=out), **common
        )
    assert code == 0, out.getvalue()
    assert [(job["name"], job["workers"], job["status"]) for job in jobs] == [
        ("second", 2, "completed"),
        ("first", 2, "completed"),
    ]
    report = json.loads((tmp_path / "r.json").read_text())
    assert [p["generator"]["sent"] for p in report["phases"]] == [
        job["summary"]["sent"] for job in reversed(jobs)
    ]
    assert refused == RUN_FAILED
    assert "FAILURE_LAB_MAX_WORKERS" in out.getvalue()


def test_the_embedded_default_allows_the_workers_a_run_asks_for(tmp_path: Path) -> None:
    scenario = tmp_path / "split.yaml"
    scenario.write_text(TWO_PHASES)
    result = CliRunner().invoke(
        cli,
        ["run", str(scenario), "--workers", "2", "--output", "json", "--report",
         str(tmp_path / "r.json")],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    events = [json.loads(line) for line in result.stdout.splitlines()]
    started = [event for event in events if event["event"] == "phase_started"]
    assert [event["workers"] for event in started] == [2, 2]
    assert events[-1]["verdict"] == "pass"
    assert worker_pids() == []
