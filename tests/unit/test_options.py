"""The options header: round trip, defaults, and refusal of anything malformed."""

from __future__ import annotations

import pytest

from failure_lab.control import RequestPayload
from failure_lab.settings import Settings
from simulator.options import InvalidOptions, OptionBounds, PipelineOptions

BOUNDS = OptionBounds.from_settings(
    Settings(max_rate_limit=100, max_cache_ttl_seconds=60, max_db_latency_ms=500)
)


def test_round_trip_of_every_field() -> None:
    options = PipelineOptions(
        retries_enabled=False,
        rate_limit=12.5,
        algorithm="sliding_window",
        cache_enabled=False,
        cache_ttl=0.25,
        db_latency_ms=40,
    )
    assert PipelineOptions.decode(options.encode(), BOUNDS) == options


def test_absent_header_and_absent_keys_keep_defaults() -> None:
    assert PipelineOptions.decode(None, BOUNDS) == PipelineOptions()
    assert PipelineOptions.decode("dbl=7", BOUNDS) == PipelineOptions(db_latency_ms=7.0)


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
        ("rl=nan", "finite"),
        ("ttl=inf", "finite"),
        ("dbl=Infinity", "finite"),
        ("dbl=-Infinity", "finite"),
        ("dbl=1e999", "finite"),
        ("algo=token", "token_bucket, leaky_bucket"),
        ("color=red", "unknown key"),
        ("dbl=abc", "dbl"),
    ],
)
def test_malformed_headers_are_refused_with_the_reason(header: str, names: str) -> None:
    with pytest.raises(InvalidOptions, match=names):
        PipelineOptions.decode(header, BOUNDS)


@pytest.mark.parametrize(
    ("header", "cap", "setting"),
    [
        ("rl=100.5", "100", "FAILURE_LAB_MAX_RATE_LIMIT"),
        ("ttl=61", "60", "FAILURE_LAB_MAX_CACHE_TTL_SECONDS"),
        ("dbl=1e12", "500", "FAILURE_LAB_MAX_DB_LATENCY_MS"),
    ],
)
def test_numbers_past_their_bound_name_the_bound_and_the_setting(
    header: str, cap: str, setting: str
) -> None:
    with pytest.raises(InvalidOptions, match=rf"exceeds the cap of {cap}; raise it with {setting}"):
        PipelineOptions.decode(header, BOUNDS)


def test_numbers_at_their_bound_are_accepted() -> None:
    options = PipelineOptions.decode("rl=100;ttl=60;dbl=500", BOUNDS)
    assert (options.rate_limit, options.cache_ttl, options.db_latency_ms) == (100, 60, 500)
