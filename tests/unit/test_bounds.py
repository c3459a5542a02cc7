"""Bounds from settings: declared on the field, checked at the edge, shown in OpenAPI."""

from __future__ import annotations

from typing import Any

import pytest

from failure_lab.bounds import (
    SettingBound,
    apply_to_openapi,
    bound_of,
    check_bounds,
    within_bounds,
)
from failure_lab.control import (
    FailureConfig,
    RequestPayload,
    ScenarioJobRequest,
    TrafficRequest,
)
from failure_lab.errors import CapExceeded
from failure_lab.settings import Settings
from tests.support.configs import config_with

SETTINGS = Settings(
    max_db_latency_ms=100,
    max_db_timeout_seconds=2,
    max_burst_count=10,
    max_cache_ttl_seconds=30,
)
PAYLOAD: dict[str, Any] = {
    "rate_of_requests": 1,
    "number_of_requests": 1,
    "retries_enabled": True,
    "rate_limiting": 0,
    "rate_limiting_algo": "token_bucket",
    "cache_enabled": True,
    "cache_ttl": 30,
    "db_latency": 100,
}


def test_values_at_their_bounds_pass() -> None:
    check_bounds(config_with(db_latency_max_ms=100, db_timeout_seconds=2), SETTINGS)
    check_bounds(TrafficRequest.model_validate({"mode": "single", "payload": PAYLOAD}), SETTINGS)


@pytest.mark.parametrize(
    ("model", "loc", "setting"),
    [
        (config_with(db_latency_max_ms=100.5), ("body", "db_latency_max_ms"), "MAX_DB_LATENCY_MS"),
        (
            config_with(db_timeout_seconds=3),
            ("body", "db_timeout_seconds"),
            "MAX_DB_TIMEOUT_SECONDS",
        ),
        (
            TrafficRequest.model_validate(
                {"mode": "burst", "payload": {**PAYLOAD, "db_latency": 1e300}}
            ),
            ("body", "payload", "db_latency"),
            "MAX_DB_LATENCY_MS",
        ),
        (
            ScenarioJobRequest.model_validate(
                {"scenario": "normal", "duration": 1, "payload": {**PAYLOAD, "cache_ttl": 31}}
            ),
            ("body", "payload", "cache_ttl"),
            "MAX_CACHE_TTL_SECONDS",
        ),
        (
            TrafficRequest.model_validate({"mode": "burst", "count": 11, "payload": PAYLOAD}),
            ("body", "count"),
            "MAX_BURST_COUNT",
        ),
    ],
)
def test_a_value_past_its_bound_names_the_field_the_bound_and_the_setting(
    model: FailureConfig | TrafficRequest | ScenarioJobRequest,
    loc: tuple[str, ...],
    setting: str,
) -> None:
    with pytest.raises(CapExceeded) as refused:
        check_bounds(model, SETTINGS)
    assert refused.value.loc == loc
    assert refused.value.setting == f"FAILURE_LAB_{setting}"
    assert f"{loc[-1]} " in str(refused.value)
    assert f"raise it with FAILURE_LAB_{setting}" in str(refused.value)


def test_a_marker_must_name_a_setting() -> None:
    with pytest.raises(ValueError, match="no setting 'max_nothing'"):
        SettingBound("max_nothing")
    assert bound_of(RequestPayload, "db_latency") == SettingBound("max_db_latency_ms")
    with pytest.raises(LookupError, match="rate_limiting_algo has no SettingBound"):
        bound_of(RequestPayload, "rate_limiting_algo")


def test_the_openapi_document_gets_the_maxima_and_names_the_settings() -> None:
    document = {"components": {"schemas": {"FailureConfig": FailureConfig.model_json_schema()}}}
    apply_to_openapi(document, SETTINGS)
    fields = document["components"]["schemas"]["FailureConfig"]["properties"]
    assert fields["db_timeout_seconds"]["maximum"] == 2
    assert fields["db_timeout_seconds"]["exclusiveMinimum"] == 0
    assert "FAILURE_LAB_MAX_DB_TIMEOUT_SECONDS" in fields["db_timeout_seconds"]["description"]
    assert fields["max_retries"]["maximum"] == SETTINGS.max_retries_cap
    assert "maximum" not in fields["failure_rate"] or fields["failure_rate"]["maximum"] == 1

    traffic = TrafficRequest.model_json_schema()
    apply_to_openapi(traffic, SETTINGS)
    count = traffic["properties"]["count"]
    assert [branch.get("maximum") for branch in count["anyOf"]] == [10, None]
    assert count["description"] == "At most 10 (FAILURE_LAB_MAX_BURST_COUNT)."


def test_settings_themselves_are_finite() -> None:
    with pytest.raises(ValueError, match="finite"):
        Settings(max_db_timeout_seconds=float("inf"))


def test_defaults_are_lowered_to_lower_bounds() -> None:
    settings = Settings(max_retries_cap=2, max_db_latency_ms=10, max_db_timeout_seconds=0.5)
    lowered = within_bounds(FailureConfig.defaults(), settings)
    assert lowered.model_dump() == {
        **FailureConfig.defaults().model_dump(),
        "max_retries": 2,
        "db_latency_min_ms": 5.0,
        "db_latency_max_ms": 10.0,
        "db_timeout_seconds": 0.5,
    }
    check_bounds(lowered, settings)
    assert within_bounds(FailureConfig.defaults(), Settings()) == FailureConfig.defaults()
