"""Scenario jobs over real HTTP: rate shapes measured from the requests' own client spans,
the Server-Sent Events stream read to the end, stop, conflicts and forgetting finished jobs."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import Callable
from datetime import datetime
from typing import Any

import httpx
import pytest
from opentelemetry.trace import SpanKind

from simulator.generator.engine import JOB_ID_ATTRIBUTE
from tests.support.labs import Lab, running_lab, sample

pytestmark = pytest.mark.timeout(120)


async def start(lab: Lab, **body: Any) -> dict[str, Any]:
    response = await lab.http.post("/v1/traffic/jobs", json=body)
    assert response.status_code == 201, response.text
    job: dict[str, Any] = response.json()
    assert response.headers["location"] == f"/v1/traffic/jobs/{job['job_id']}"
    return job


async def events(http: httpx.AsyncClient, job_id: str) -> list[tuple[str, dict[str, Any]]]:
    """Every event of a job's stream, read until the server ends it."""
    seen: list[tuple[str, dict[str, Any]]] = []
    event = ""
    async with http.stream("GET", f"/v1/traffic/jobs/{job_id}/stream", timeout=30) as stream:
        assert stream.status_code == 200
        assert stream.headers["content-type"].startswith("text/event-stream")
        async for line in stream.aiter_lines():
            if line.startswith("event: "):
                event = line.removeprefix("event: ")
            elif line.startswith("data: "):
                seen.append((event, json.loads(line.removeprefix("data: "))))
    return seen


async def finished(lab: Lab, job_id: str) -> dict[str, Any]:
    stream = await events(lab.http, job_id)
    assert stream[-1][0] == "done"
    return stream[-1][1]


def send_offsets(lab: Lab, job: dict[str, Any]) -> list[float]:
    """Seconds from the job's start to each of its sends, from the requests' client spans."""
    began = datetime.fromisoformat(job["started_at"]).timestamp()
    starts = sorted(
        span.start_time or 0
        for span in lab.spans.get_finished_spans()
        if span.kind is SpanKind.CLIENT
        and (span.attributes or {}).get(JOB_ID_ATTRIBUTE) == job["job_id"]
    )
    assert starts, "the job's requests left no client spans"
    return [ns / 1e9 - began for ns in starts]


async def settled(condition: Callable[[], bool], timeout: float) -> None:
    """Returns once ``condition()`` holds, or after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    for _ in range(int(timeout / 0.05) + 1):
        if condition() or time.monotonic() > deadline:
            return
        await asyncio.sleep(0.05)


def between(offsets: list[float], start: float, end: float) -> int:
    return sum(1 for offset in offsets if start <= offset < end)


async def test_peak_ramps_holds_and_ramps_down_and_reports_its_phase() -> None:
    async with running_lab() as lab:
        job = await start(lab, scenario="peak", duration=4, max_rps=200)
        assert (job["mode"], job["scenario"], job["phase"], job["status"]) == (
            "scenario",
            "peak",
            "ramp_up",
            "running",
        )
        await asyncio.sleep(2.0)  # the middle of the hold (1 s .. 3 s)
        middle = (await lab.http.get(f"/v1/traffic/jobs/{job['job_id']}")).json()
        assert middle["phase"] == "hold"
        assert middle["stats"]["target_rps"] == 200
        phase = "failure_lab_generator_scenario_phase"
        assert sample(lab.app, phase, scenario="peak", phase="hold") == 1
        assert sample(lab.app, phase, scenario="peak", phase="ramp_up") == 0
        done = await finished(lab, job["job_id"])
        for name in ("ramp_up", "hold", "ramp_down"):
            assert sample(lab.app, phase, scenario="peak", phase=name) == 0
    assert done["status"] == "completed"
    assert done["phase"] is None
    summary = done["summary"]
    # The shape asks for max_rps * duration * 3/4 requests: 600, give or take the last one.
    assert summary["planned"] == pytest.approx(600, abs=1)
    assert summary["sent"] + summary["dropped"] == summary["planned"]
    offsets = send_offsets(lab, done)
    assert len(offsets) == summary["sent"]
    # Tolerance: the event loop may send a few ms late, so a boundary can move a handful of
    # requests: 5 % of each part.
    assert between(offsets, 0.0, 1.0) == pytest.approx(100, rel=0.05)  # ramp: 200 * 1 / 2
    assert between(offsets, 1.0, 3.0) == pytest.approx(400, rel=0.05)  # hold: 200 * 2
    assert between(offsets, 3.0, 4.0) == pytest.approx(100, rel=0.05)  # ramp down
    assert between(offsets, 0.0, 0.5) == pytest.approx(25, abs=5)  # linear inside the ramp


@pytest.mark.parametrize("scenario", ["normal", "stress"])
async def test_constant_scenarios_hold_their_rate(scenario: str) -> None:
    async with running_lab(max_rps=150) as lab:
        body: dict[str, Any] = {"scenario": scenario, "duration": 3}
        if scenario == "normal":
            body["max_rps"] = 150
        job = await start(lab, **body)  # stress without max_rps: the server's cap
        assert job["rps"] == 150
        done = await finished(lab, job["job_id"])
    offsets = send_offsets(lab, done)
    assert done["summary"]["planned"] == 450
    # Tolerance: 5 % per second for send lag at the second boundaries.
    for second in range(3):
        assert between(offsets, second, second + 1) == pytest.approx(150, rel=0.05)


async def test_error_injection_sends_thirty_percent_to_the_error_endpoint() -> None:
    async with running_lab() as lab:
        job = await start(lab, scenario="error_injection", duration=2, max_rps=100)
        done = await finished(lab, job["job_id"])
    routes = Counter(
        (span.attributes or {}).get("http.route")
        for span in lab.spans.get_finished_spans()
        if span.kind is SpanKind.SERVER
    )
    # Exactly 3 in every 10 requests, and the error endpoint fails about half of them.
    assert done["summary"]["sent"] == 200
    assert routes["/api/v1/users/error"] == 60
    assert sum(routes.values()) == 200
    assert 10 <= done["summary"]["failed"] <= 50  # binomial(60, 0.5): 30 +- 20 is > 6 sigma
    assert done["endpoints"][-1] == "GET /api/v1/users/error"
    assert len(done["summary"]["failed_request_ids"]) == min(20, done["summary"]["failed"])


async def test_latency_degradation_slows_the_database_over_the_run() -> None:
    async with running_lab(scenario_latency_growth_ms=400) as lab:
        payload = {
            "rate_of_requests": 1,
            "number_of_requests": 1,
            "retries_enabled": False,
            "rate_limiting": 0,
            "rate_limiting_algo": "token_bucket",
            "cache_enabled": False,
            "cache_ttl": 0,
            "db_latency": 0,
        }
        job = await start(
            lab, scenario="latency_degradation", duration=2, max_rps=50, payload=payload
        )
        assert job["phase"] == "degrading"
        done = await finished(lab, job["job_id"])
    durations = sorted(
        ((span.start_time or 0), ((span.end_time or 0) - (span.start_time or 0)) / 1e6)
        for span in lab.spans.get_finished_spans()
        if span.kind is SpanKind.CLIENT
    )
    assert len(durations) == done["summary"]["sent"] == 100
    first = [ms for _, ms in durations[:20]]  # sent in the first 0.4 s: +0..80 ms asked
    last = [ms for _, ms in durations[-20:]]  # the last 0.4 s: +320..400 ms asked
    assert max(first) < 80 + 20 + 50  # asked, the database's own 5..20 ms, scheduling slack
    assert min(last) >= 320


async def test_stream_is_read_to_completion_with_a_final_summary() -> None:
    async with running_lab(job_stream_interval_seconds=0.2) as lab:
        job = await start(lab, scenario="normal", duration=1.2, max_rps=50)
        stream = await events(lab.http, job["job_id"])
    kinds = [kind for kind, _ in stream]
    assert kinds[-1] == "done"
    assert set(kinds[:-1]) == {"status"}
    assert 4 <= len(kinds) - 1 <= 8  # every 0.2 s during 1.2 s (and its drain)
    sent = [data["stats"]["total"] for kind, data in stream if kind == "status"]
    assert sent == sorted(sent)
    final = stream[-1][1]
    assert final["status"] == "completed"
    assert final["summary"]["sent"] == 60
    assert final["summary"]["latency_ms"]["p99"] >= final["summary"]["latency_ms"]["p50"] > 0


async def test_a_client_that_disconnects_leaves_no_task_behind() -> None:
    async with running_lab(job_stream_interval_seconds=0.1) as lab:
        job = await start(lab, scenario="normal", duration=5, max_rps=10)
        await asyncio.sleep(0.3)
        baseline = len(asyncio.all_tasks())
        path = f"/v1/traffic/jobs/{job['job_id']}/stream"
        async with (
            httpx.AsyncClient(base_url=str(lab.http.base_url)) as client,
            client.stream("GET", path) as stream,
        ):
            assert (await anext(stream.aiter_lines())).startswith("event: status")
            assert len(asyncio.all_tasks()) > baseline  # the stream's own tasks
        await settled(lambda: len(asyncio.all_tasks()) <= baseline, timeout=5)
        assert len(asyncio.all_tasks()) <= baseline
        still = (await lab.http.get(f"/v1/traffic/jobs/{job['job_id']}")).json()
        assert still["status"] == "running"  # the job runs on without its watcher
        stopped = (await lab.http.post(f"/v1/traffic/jobs/{job['job_id']}/stop")).json()
        assert stopped["status"] == "cancelled"
        assert stopped["summary"] is None
        assert sample(lab.app, "failure_lab_generator_scenario_phase", scenario="normal",
                      phase="steady") == 0  # fmt: skip


async def test_unknown_job_stream_is_404_json() -> None:
    async with running_lab() as lab:
        response = await lab.http.get("/v1/traffic/jobs/nope/stream")
    assert response.status_code == 404
    assert "nope" in response.json()["detail"]


async def test_jobs_past_the_summed_rate_cap_or_count_conflict() -> None:
    async with running_lab(max_rps=100, max_active_jobs=2) as lab:
        first = await start(lab, scenario="normal", duration=3, max_rps=80)
        refused = await lab.http.post(
            "/v1/traffic/jobs", json={"scenario": "peak", "duration": 3, "max_rps": 40}
        )
        assert refused.status_code == 409
        assert first["job_id"] in refused.json()["detail"]
        assert "FAILURE_LAB_MAX_RPS" in refused.json()["detail"]
        sustained = await lab.http.post(
            "/v1/traffic/generate",
            json={"mode": "sustained", "rps": 30, "duration": 2, "payload": PAYLOAD},
        )
        assert sustained.status_code == 409  # the cap holds for sustained jobs too
        await start(lab, scenario="normal", duration=3, max_rps=20)
        third = await lab.http.post(
            "/v1/traffic/jobs", json={"scenario": "normal", "duration": 1, "max_rps": 1}
        )
        assert third.status_code == 409
        assert "FAILURE_LAB_MAX_ACTIVE_JOBS" in third.text
        listed = (await lab.http.get("/v1/traffic/jobs")).json()
        assert len(listed) == 2  # nothing refused was started
        for job in listed:
            await lab.http.post(f"/v1/traffic/jobs/{job['job_id']}/stop")


@pytest.mark.parametrize(
    ("body", "status", "fragment"),
    [
        ({"scenario": "flood", "duration": 1}, 422, "scenario"),
        ({"scenario": "normal", "duration": -1}, 422, "duration"),
        ({"scenario": "normal", "duration": 1, "max_rps": 5000}, 422, "FAILURE_LAB_MAX_RPS"),
        ({"scenario": "normal", "duration": 9999}, 422, "FAILURE_LAB_MAX_DURATION_SECONDS"),
        ({"scenario": "normal", "duration": 1, "endpoints": []}, 422, "endpoints"),
        ({"scenario": "normal", "duration": 1, "endpoints": ["GET /admin"]}, 422, "endpoints"),
        ({"scenario": "normal", "duration": 1, "endpoints": "some"}, 422, "endpoints"),
        ({"scenario": "normal", "duration": 1, "extra": 1}, 422, "extra"),
        (
            {
                "scenario": "error_injection",
                "duration": 1,
                "endpoints": ["GET /api/v1/users/error"],
            },
            422,
            "at least one other",
        ),
    ],
)
async def test_bad_job_requests_are_refused_and_start_nothing(
    body: dict[str, Any], status: int, fragment: str
) -> None:
    async with running_lab() as lab:
        response = await lab.http.post("/v1/traffic/jobs", json=body)
        assert response.status_code == status
        assert fragment in json.dumps(response.json()["detail"])
        assert (await lab.http.get("/v1/traffic/jobs")).json() == []


async def test_finished_jobs_are_forgotten_after_their_time() -> None:
    async with running_lab(finished_job_ttl_seconds=1.0) as lab:
        job = await start(lab, scenario="normal", duration=0.3, max_rps=10)
        await finished(lab, job["job_id"])
        assert (await lab.http.get(f"/v1/traffic/jobs/{job['job_id']}")).status_code == 200
        await asyncio.sleep(1.2)
        assert (await lab.http.get(f"/v1/traffic/jobs/{job['job_id']}")).status_code == 404
        assert (await lab.http.get("/v1/traffic/jobs")).json() == []


PAYLOAD: dict[str, Any] = {
    "rate_of_requests": 1,
    "number_of_requests": 1,
    "retries_enabled": True,
    "rate_limiting": 0,
    "rate_limiting_algo": "token_bucket",
    "cache_enabled": True,
    "cache_ttl": 30,
    "db_latency": 0,
}
