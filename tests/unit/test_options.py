"""The options header: round trip, defaults, and refusal of anything malformed."""

from __future__ import annotations

import pytest

from failure_lab.control import RequestPayload
from simulator.options import InvalidOptions, PipelineOptions


def test_round_trip_of_every_field() -> None:
    options = PipelineOptions(
        retries_enabled=False,
        rate_limit=12.5,
        algorithm="sliding_window",
        cache_enabled=False,
        cache_ttl=0.25,
        db_latency_ms=40,
    )
    assert PipelineOptions.decode(options.encode()) == options


def test_absent_header_and_absent_keys_keep_defaults() -> None:
    assert PipelineOptions.decode(None) == PipelineOptions()
    assert PipelineOptions.decode("dbl=7") == PipelineOptions(db_latency_ms=7.0)


def test_from_payload_maps_every_field() -> None:
    payload = RequestPayload(
        rate_of_requests=5,
        number_of_requests=3,
        retries_enabled=True,
        rate_limiting=2,
        rate_limiting_algo="leaky_bucket",
        cache_enabled=True,
        cache_ttl=9,
        db_latency=11,
    )
    assert PipelineOptions.from_payload(payload) == PipelineOptions(
        retries_enabled=True,
        rate_limit=2,
        algorithm="leaky_bucket",
        cache_enabled=True,
        cache_ttl=9,
        db_latency_ms=11,
    )


@pytest.mark.parametrize(
    ("header", "names"),
    [
        ("retries", "key=value"),
        ("retries=2", "0 or 1"),
        ("rl=-1", ">= 0"),
        ("rl=nan", ">= 0"),
        ("ttl=inf", ">= 0"),
        ("algo=token", "token_bucket, leaky_bucket"),
        ("color=red", "unknown key"),
        ("dbl=abc", "dbl"),
    ],
)
def test_malformed_headers_are_refused_with_the_reason(header: str, names: str) -> None:
    with pytest.raises(InvalidOptions, match=names):
        PipelineOptions.decode(header)
