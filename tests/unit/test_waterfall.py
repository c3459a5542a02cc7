"""A trace's events as waterfall bars: each event closes the stretch since the one before."""

from __future__ import annotations

from typing import Any

import pytest

from failure_lab.contract import TraceResponse
from simulator.scenario.measure import jaeger_id, worth_tracing
from simulator.scenario.waterfall import segments


def trace(*events: tuple[float, str, dict[str, Any]]) -> TraceResponse:
    listed = [
        {
            "event_id": str(i),
            "request_id": "r",
            "timestamp_wall": f"2030-01-01T00:00:{ms / 1000:09.6f}Z",
            "event_type": kind,
            "metadata": meta,
        }
        for i, (ms, kind, meta) in enumerate(events)
    ]
    return TraceResponse.model_validate(
        {
            "trace": {"trace_id": "t", "request_id": "r", "start_time": "s", "events": listed},
            "event_count": len(listed),
            "failure_points": [],
            "retry_attempts": [],
        }
    )


def test_a_retried_request_is_cache_attempts_and_backoffs() -> None:
    bars = segments(
        trace(
            (0, "request.received", {}),
            (1, "cache.miss", {"key": "user:1"}),
            (251, "db.timeout", {"attempt": 1}),
            (251, "retry.attempt", {"attempt": 1, "backoff_ms": 10.0}),
            (400, "db.error", {"attempt": 2}),
            (400, "retry.attempt", {"attempt": 2, "backoff_ms": 20.0}),
            (500, "response.sent", {"status_code": 200}),
        )
    )
    shown = [(b.label, round(b.start_ms), round(b.end_ms), b.kind) for b in bars]
    assert shown == [
        ("cache lookup: miss", 0, 1, "cache"),
        ("database attempt 1: timeout", 1, 251, "db_fail"),
        ("backoff before retry 1", 251, 261, "wait"),
        ("database attempt 2: error", 261, 400, "db_fail"),
        ("backoff before retry 2", 400, 420, "wait"),
        ("database attempt 3: ok, answer 200", 420, 500, "db_ok"),
    ]


def test_a_refused_request_and_a_cache_hit() -> None:
    refused = segments(
        trace(
            (0, "request.received", {}),
            (2, "rate_limited", {}),
            (3, "response.sent", {"status_code": 429}),
        )
    )
    assert [b.label for b in refused] == ["rate limiter: refused (429)", "answer 429"]
    hit = segments(trace((0, "request.received", {}), (1, "cache.hit", {}),
                         (1.5, "response.sent", {"status_code": 200})))  # fmt: skip
    assert [b.label for b in hit] == ["cache lookup: hit", "answer 200"]
    assert hit[1].end_ms == pytest.approx(1.5, abs=0.001)


def test_traces_kept_and_their_jaeger_ids() -> None:
    assert jaeger_id("985EBD35-abb9-9e72-c502-79e2b6ff21f4") == "985ebd35abb99e72c50279e2b6ff21f4"
    from failure_lab.control import JobSummary

    summary = JobSummary.model_validate(
        {
            "planned": 1, "sent": 1, "dropped": 0, "succeeded": 0, "failed": 1, "late_sends": 0,
            "elapsed_seconds": 1, "achieved_rps": 1,
            "latency_ms": {"p50": 1, "p95": 1, "p99": 1},
            "service_latency_ms": {"p50": 1, "p95": 1, "p99": 1},
            "send_lag_ms": {"p50": 1, "p95": 1, "p99": 1},
            "slowest": [{"request_id": "a", "latency_ms": 3}, {"request_id": "b", "latency_ms": 2},
                        {"request_id": "c", "latency_ms": 1}],
            "failed_request_ids": ["x", "y", "a"],
        }
    )  # fmt: skip
    assert worth_tracing(summary) == [("a", "slowest"), ("b", "slowest"), ("y", "failed")]
