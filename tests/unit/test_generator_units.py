"""Pure parts of the traffic generator: request plan, arrival schedule, statistics, metrics."""

from __future__ import annotations

import math
import random
from collections import Counter
from datetime import UTC, datetime

import pytest
from prometheus_client import CollectorRegistry

from simulator.generator.arrivals import schedule
from simulator.generator.job_record import Generation, JobRecord
from simulator.generator.metrics import ExemplarGate, GeneratorMetrics
from simulator.generator.planner import (
    CREATE_USER,
    ENDPOINTS,
    ERROR,
    GET_USER,
    LIST_USERS,
    UPDATE_USER,
    RequestPlanner,
)
from simulator.generator.stats import LiveStats, RunSamples, percentile


def test_default_rotation_is_read_heavy_cycle_of_ten() -> None:
    planner = RequestPlanner(users=5, rng=random.Random(1))
    requests = [planner.next() for _ in range(30)]
    counts = Counter(request.endpoint for request in requests)
    assert counts == {GET_USER: 18, LIST_USERS: 6, CREATE_USER: 3, UPDATE_USER: 3}
    assert [r.endpoint for r in requests[:10]] == [r.endpoint for r in requests[10:20]]


def test_planned_requests_are_concrete_and_realistic() -> None:
    planner = RequestPlanner(users=3, rng=random.Random(7))
    requests = [planner.next() for _ in range(200)]
    for request in requests:
        if request.endpoint == GET_USER:
            assert request.route == "/api/v1/users/{id}"
            assert request.method == "GET"
            assert 1 <= int(request.path.rsplit("/", 1)[1]) <= 3
            assert request.json is None
        elif request.endpoint == CREATE_USER:
            assert request.path == "/api/v1/users"
            assert request.json is not None
            assert set(request.json) == {"name", "email"}
            assert " " in request.json["name"]
            assert "@" in request.json["email"]
        elif request.endpoint == UPDATE_USER:
            assert request.method == "PATCH"
            assert request.json
            assert set(request.json) <= {"name", "email"}
        else:
            assert request.path == "/api/v1/users"
            assert request.json is None
    ids = {r.path for r in requests if r.endpoint == GET_USER}
    assert ids == {"/api/v1/users/1", "/api/v1/users/2", "/api/v1/users/3"}


def test_same_seed_same_plan() -> None:
    a = RequestPlanner(10, random.Random(3))
    b = RequestPlanner(10, random.Random(3))
    assert [a.next() for _ in range(50)] == [b.next() for _ in range(50)]


def test_endpoint_subset_and_error_endpoint() -> None:
    only_get = RequestPlanner(10, random.Random(0), [GET_USER])
    assert {only_get.next().endpoint for _ in range(20)} == {GET_USER}

    mixed = RequestPlanner(10, random.Random(0), [LIST_USERS, ERROR], error_rate=0.25)
    assert mixed.cycle == (LIST_USERS, LIST_USERS, ERROR)
    error = next(r for r in (mixed.next() for _ in range(3)) if r.endpoint == ERROR)
    assert error.route == "/api/v1/users/error"
    assert error.path == "/api/v1/users/error?errorRate=0.25"


def test_unknown_endpoint_names_the_known_ones() -> None:
    with pytest.raises(ValueError, match="unknown endpoint") as info:
        RequestPlanner(10, random.Random(0), ["GET /nope"])
    for known in ENDPOINTS:
        assert known in str(info.value)
    with pytest.raises(ValueError, match="must not be empty"):
        RequestPlanner(10, random.Random(0), [])
    with pytest.raises(ValueError, match="error_rate"):
        RequestPlanner(10, random.Random(0), error_rate=1.5)


def test_constant_schedule_is_computed_from_the_start() -> None:
    plan = schedule(50.0, 1.0)
    offsets = list(plan.offsets)
    assert plan.planned == 50 == len(offsets)
    assert offsets == [i / 50.0 for i in range(50)]
    assert schedule(3.0, 0.1).planned == 1
    assert schedule(1000.0, 0.25).planned == 250


def test_constant_function_matches_constant_rate() -> None:
    plan = schedule(lambda _t: 50.0, 1.0)
    offsets = list(plan.offsets)
    assert plan.planned == 50 == len(offsets)
    for got, expected in zip(offsets, (i / 50.0 for i in range(50)), strict=True):
        assert got == pytest.approx(expected, abs=1e-9)


def test_ramp_arrivals_follow_the_integral() -> None:
    # rate(t) = 100 t: integral 50 t^2, so the k-th arrival is at sqrt(k / 50); none at 0.
    plan = schedule(lambda t: 100.0 * t, 1.0)
    offsets = list(plan.offsets)
    assert plan.planned == 49 == len(offsets)
    for k, got in enumerate(offsets, start=1):
        assert got == pytest.approx(math.sqrt(k / 50), abs=1e-9)


def test_schedule_refuses_bad_input() -> None:
    with pytest.raises(ValueError, match="rate"):
        schedule(0.0, 1.0)
    with pytest.raises(ValueError, match="duration"):
        schedule(10.0, 0.0)


def test_percentile_is_exact_on_samples() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == pytest.approx(50.5)
    assert percentile(values, 99) == pytest.approx(99.01)
    assert percentile(values, 100) == 100.0
    assert percentile([], 50) is None
    assert percentile([4.0], 95) == 4.0


def test_live_stats_rate_over_last_second() -> None:
    live = LiveStats()
    for i in range(10):
        live.record_sent(100.0 + i * 0.2, late=i == 3)
    assert live.sent == 10
    assert live.late_sends == 1
    # sends at 101.0 .. 101.8 are within (100.8, 101.8]
    assert live.current_rps(now=101.8) == 5.0
    assert live.avg_latency_ms is None


def test_metrics_series_exist_at_zero() -> None:
    registry = CollectorRegistry()
    GeneratorMetrics(registry)
    value = registry.get_sample_value
    assert value("failure_lab_generator_target_rps") == 0.0
    assert value("failure_lab_generator_in_flight") == 0.0
    assert value("failure_lab_generator_requests_total", {"result": "sent"}) == 0.0
    assert value("failure_lab_generator_requests_total", {"result": "dropped"}) == 0.0
    assert value("failure_lab_generator_responses_total", {"outcome": "success"}) == 0.0
    assert value("failure_lab_generator_responses_total", {"outcome": "failure"}) == 0.0
    assert value("failure_lab_generator_late_sends_total") == 0.0
    assert value("failure_lab_generator_send_lag_seconds_count") == 0.0
    for basis in ("intended", "actual"):
        assert value("failure_lab_generator_latency_seconds_count", {"basis": basis}) == 0.0


def test_live_stats_results_and_mean_latency() -> None:
    live = LiveStats()
    live.record_finished(True, 10.0)
    live.record_finished(False, 30.0)
    assert (live.succeeded, live.failed, live.finished) == (1, 1, 2)
    assert live.avg_latency_ms == 20.0


def test_exemplar_gate_admits_one_per_bucket_per_interval() -> None:
    gate = ExemplarGate((0.001, 0.01, 0.1), interval_s=1.0)
    assert gate.admits(0.005, now=10.0)
    assert not gate.admits(0.006, now=10.5)  # same bucket (0.001, 0.01], within the second
    assert not gate.admits(0.01, now=10.5)  # a bound belongs to its bucket, as in Prometheus
    assert gate.admits(0.0101, now=10.6)  # the next bucket
    assert not gate.admits(0.05, now=10.7)
    assert gate.admits(5.0, now=10.8)  # above the last bound: the +Inf bucket
    assert not gate.admits(7.0, now=10.9)
    assert gate.admits(0.002, now=11.0)  # a second later the bucket takes a new one


def _latency_exemplars(registry: CollectorRegistry) -> list[tuple[str, str]]:
    return [
        (sample.labels["basis"], sample.exemplar.labels["trace_id"])
        for family in registry.collect()
        if family.name == "failure_lab_generator_latency_seconds"
        for sample in family.samples
        if sample.exemplar is not None
    ]


def test_latency_exemplars_are_gated_and_need_a_trace() -> None:
    registry = CollectorRegistry()
    metrics = GeneratorMetrics(registry)
    metrics.observe_latency(0.0021, 0.0011, 0, now=1.0)  # no span, no exemplar
    assert _latency_exemplars(registry) == []
    metrics.observe_latency(0.0021, 0.0011, 0xA, now=1.0)
    metrics.observe_latency(0.0021, 0.0011, 0xB, now=1.5)  # same buckets within the second
    metrics.observe_latency(0.0021, 0.0211, 0xC, now=1.5)  # another actual-latency bucket
    assert sorted(_latency_exemplars(registry)) == [
        ("actual", f"{0xA:032x}"),
        ("actual", f"{0xC:032x}"),
        ("intended", f"{0xA:032x}"),
    ]
    count = registry.get_sample_value
    assert count("failure_lab_generator_latency_seconds_count", {"basis": "intended"}) == 4


# The job API's ``summary`` for the run below, byte for byte: field names, order and values.
FILLED_SUMMARY = (
    '{"planned":15,"sent":12,"dropped":2,"succeeded":9,"failed":3,"late_sends":3,'
    '"elapsed_seconds":3.25,"achieved_rps":4.8,"latency_ms":{"p50":16.0,"p95":21.45,'
    '"p99":21.89},"service_latency_ms":{"p50":15.5,"p95":21.0,"p99":21.0},'
    '"send_lag_ms":{"p50":1.375,"p95":2.6125,"p99":2.7225},'
    '"slowest":[{"request_id":"00000000-0000-0000-0000-00000000100b","latency_ms":22.0},'
    '{"request_id":"00000000-0000-0000-0000-000000001009","latency_ms":21.0},'
    '{"request_id":"00000000-0000-0000-0000-000000001007","latency_ms":20.0},'
    '{"request_id":"00000000-0000-0000-0000-000000001005","latency_ms":19.0},'
    '{"request_id":"00000000-0000-0000-0000-000000001003","latency_ms":18.0},'
    '{"request_id":"00000000-0000-0000-0000-000000001001","latency_ms":17.0},'
    '{"request_id":"00000000-0000-0000-0000-00000000100a","latency_ms":15.0},'
    '{"request_id":"00000000-0000-0000-0000-000000001008","latency_ms":14.0},'
    '{"request_id":"00000000-0000-0000-0000-000000001006","latency_ms":13.0},'
    '{"request_id":"00000000-0000-0000-0000-000000001004","latency_ms":12.0}],'
    '"failed_request_ids":["00000000-0000-0000-0000-000000001003",'
    '"00000000-0000-0000-0000-000000001007","00000000-0000-0000-0000-00000000100b"]}'
)
EMPTY_SUMMARY = (
    '{"planned":0,"sent":0,"dropped":0,"succeeded":0,"failed":0,"late_sends":0,'
    '"elapsed_seconds":0.0,"achieved_rps":0.0,"latency_ms":{"p50":null,"p95":null,'
    '"p99":null},"service_latency_ms":{"p50":null,"p95":null,"p99":null},'
    '"send_lag_ms":{"p50":null,"p95":null,"p99":null},"slowest":[],"failed_request_ids":[]}'
)


def _filled_run() -> tuple[LiveStats, RunSamples]:
    """12 requests (every fourth failed, every fifth late), 2 dropped; room for every sample."""
    live = LiveStats()
    samples = RunSamples(capacity=12)
    for i in range(12):
        live.record_sent(100.0 + i * 0.1, late=i % 5 == 0)
        samples.add_send_lag(0.25 * i)
        success = i % 4 != 3
        latency = 10.0 + (i * 7) % 13
        live.record_finished(success, latency)
        samples.add_latency(latency, latency - 0.5 * (i % 3))
        samples.add_outcome(latency, 0x1000 + i, success, 100.0 + i * 0.1)
    live.record_dropped()
    live.record_dropped()
    return live, samples


def test_a_runs_summary_is_the_job_apis_summary_byte_for_byte() -> None:
    live, samples = _filled_run()
    summary = samples.summarise(live, planned=15, elapsed=3.25, send_window=2.5)
    assert summary.model_dump_json() == FILLED_SUMMARY
    empty = RunSamples(4).summarise(LiveStats(), planned=0, elapsed=0.0, send_window=0.0)
    assert empty.model_dump_json() == EMPTY_SUMMARY
    # A completed job serves the engine's summary as it is.
    generation = Generation("scenario", job_id="j", target_rps=6.0, live=live, result=summary)
    record = JobRecord(
        generation, "scenario", 6.0, 2.5, datetime(2030, 1, 1, tzinfo=UTC), status="completed"
    )
    assert record.to_model().model_dump_json().endswith(f',"summary":{FILLED_SUMMARY}}}')
