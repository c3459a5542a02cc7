"""Over real HTTP: creates, client-chosen limits and client-chosen trace ids stay bounded."""

from __future__ import annotations

from simulator.options import HEADER, PipelineOptions
from tests.support.configs import config_with
from tests.support.labs import running_lab, sample

INSTANT = config_with(db_latency_min_ms=0, db_latency_max_ms=0).model_dump()


async def test_created_users_stay_at_their_bound_and_posts_keep_answering() -> None:
    async with running_lab(max_created_users=20, simulated_users=10) as (app, http, _):
        await http.put("/v1/config/failure", json=INSTANT)
        ids = []
        for i in range(60):
            answer = await http.post("/api/v1/users", json={"name": f"u{i}", "email": f"{i}@x.y"})
            assert answer.status_code == 201
            ids.append(answer.json()["id"])
        assert ids == list(range(11, 71))
        assert sample(app, "failure_lab_db_created_users") == 20
        assert sample(app, "failure_lab_db_created_users_evicted_total") == 40
        no_cache = {HEADER: PipelineOptions(cache_enabled=False).encode()}
        assert (await http.get(f"/api/v1/users/{ids[0]}", headers=no_cache)).status_code == 404
        newest = await http.get(f"/api/v1/users/{ids[-1]}", headers=no_cache)
        assert newest.json() == {"id": 70, "name": "u59", "email": "59@x.y"}
        assert (await http.get("/api/v1/users/10", headers=no_cache)).status_code == 200


async def test_limits_a_client_invents_stay_at_their_bound() -> None:
    async with running_lab(memory_ratelimit_max_keys=10) as (app, http, _):
        await http.put("/v1/config/failure", json=INSTANT)
        for rate in range(1, 51):
            options = PipelineOptions(rate_limit=rate, algorithm="sliding_window")
            answer = await http.get("/api/v1/users/1", headers={HEADER: options.encode()})
            assert answer.status_code == 200
        assert sample(app, "failure_lab_ratelimit_limits") == 10
        assert sample(app, "failure_lab_ratelimit_evictions_total") == 40


async def test_a_client_reusing_one_trace_id_cannot_grow_its_trace() -> None:
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    async with running_lab(trace_store_max_spans_per_trace=5) as (app, http, spans):
        await http.put("/v1/config/failure", json=INSTANT)
        headers = {
            HEADER: PipelineOptions(cache_enabled=False).encode(),
            "traceparent": f"00-{trace_id}-00f067aa0ba902b7-01",
        }
        for user in range(1, 11):
            assert (await http.get(f"/api/v1/users/{user}", headers=headers)).status_code == 200
        made = [s for s in spans.get_finished_spans() if s.context.trace_id == int(trace_id, 16)]
        assert len(made) == 20  # a server span and a db.query span per request
        assert sample(app, "failure_lab_exporter_trace_store_spans_refused_total") == 15
        answer = await http.get(f"/v1/trace/{trace_id}")
        assert answer.status_code == 200  # what was kept still reads as a trace
