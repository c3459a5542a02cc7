"""What the fuzz tests share: low-load settings, schemathesis's config, the extra check and
the rules a JSON Schema cannot state.

Every check of schemathesis is on. Two things are configured, each with its reason:

- **Deliberate failures.** The user API answers 5xx on purpose (the error endpoint, injected
  database failures, an ``error_burst`` disruption, an open circuit, a request shed past
  ``FAILURE_LAB_MAX_CONCURRENT_REQUESTS``), and a shim whose backend
  is down answers 503 naming it. ``not_a_server_error`` accepts those statuses on those
  operations only, and :func:`only_deliberate_failures` then requires each such answer to be
  one of them by its ``detail``: an unexpected error (``internal error; see the server log``)
  still fails.
- **DELETE that cancels.** Cancelling a disruption keeps it readable as ``cancelled``, so
  ``use_after_free`` (which expects a 404 after a DELETE) is off for ``/v1/disruptions/{id}``.
- **Rules between fields or with the clock.** ``positive_data_acceptance`` expects every
  request valid by the schema to be accepted, but a few rules no JSON Schema can state
  (``db_latency_min_ms <= db_latency_max_ms``; a sustained generation needs a duration and a
  rate; ``error_injection`` needs an endpoint besides the error endpoint; ``at`` lies within
  the last ``FAILURE_LAB_MAX_METRICS_WINDOW_SECONDS``; ``window`` within its range) are
  followed by :func:`follow_rules_schemas_cannot_state` when it makes positive cases. Negative
  cases are left as generated.
"""

from __future__ import annotations

import re
import time
from typing import Any, Final

import schemathesis
from schemathesis import Case, CheckContext, Response

from failure_lab.durations import MIN_WINDOW_SECONDS, parse_window

SEED: Final = 20_240_611
EXAMPLES: Final = 60
"""Fuzzing examples per operation (the coverage phase adds its own boundary cases)."""

LOW_LOAD: Final[dict[str, Any]] = {
    # Caps low enough that no generated request runs a heavy load or a long wait.
    "max_burst_count": 3,
    "max_rps": 4.0,
    "max_duration_seconds": 1.0,
    "max_active_jobs": 2,
    "scenario_default_rps": 4.0,
    "scenario_latency_growth_ms": 5.0,
    "max_disruption_seconds": 1.0,
    "max_active_disruptions": 3,
    "max_db_latency_ms": 5.0,
    "max_db_timeout_seconds": 0.05,
    "max_redis_timeout_seconds": 0.05,
    "max_retries_cap": 2,
    "retry_base_ms": 1.0,
    "retry_cap_ms": 5.0,
    "max_cache_ttl_seconds": 5.0,
    "max_rate_limit": 50.0,
    "max_metrics_window_seconds": 120.0,
    "job_stream_interval_seconds": 0.2,
    "simulated_users": 20,
    # Fuzzing is one client calling fast: the control rate limit would answer most calls 429
    # (documented, and tested in tests/integration/test_guards.py).
    "control_rate_limit": "0",
}

USER_API: Final = "^/api/v1/users"
READS: Final = "^/(metrics/json|v1/(metrics/latency|topology|requests/recent|trace/))"
HEALTH: Final = "^/health"
"""The probes: 503 while a dependency is down (in the shim's fuzz, Jaeger always is)."""
WINDOWED: Final = ("/metrics/json", "/v1/metrics/latency", "/v1/topology")
"""Reads whose ``window`` and ``at`` follow rules a schema cannot state."""
FORWARDED: Final = "^/v1/(traffic|config|disruptions)"
DELIBERATE: Final = re.compile(
    r"injected error \d{3}|disruption error_burst |database (error|timeout)|circuit open: "
    r"|overloaded: \d+ requests of the user API are in flight"
    r"|(prometheus|jaeger|simulator) (unavailable|did not answer in time): "
)
"""The ``detail`` of every 5xx answered on purpose (users API faults and shedding; a backend
down)."""
FIVE_XX: Final = ["2xx", "3xx", "4xx", "500", "502", "503", "504"]
RANDOM_IN_THREAD: Final = (
    "ignore:Do not use the `random` module:hypothesis.errors.HypothesisDeprecationWarning"
)
"""The app runs in a thread of the test's process and draws span ids from ``random`` while
Hypothesis draws a case: that is the server's randomness, not the strategies'."""


def config(*, operations: list[dict[str, Any]]) -> schemathesis.Config:
    """Every phase and check on, the seed fixed, ``operations`` as their reasons say."""
    return schemathesis.Config.from_dict(
        {
            "seed": SEED,
            "generation": {"mode": "all", "max-examples": EXAMPLES},
            "request-timeout": 10,
            "operations": operations,
        }
    )


def deliberate_5xx(path_regex: str) -> dict[str, Any]:
    """``not_a_server_error`` accepts the 5xx the operations answer on purpose."""
    return {
        "include-path-regex": path_regex,
        "checks": {"not_a_server_error": {"expected-statuses": FIVE_XX}},
    }


CANCEL_KEEPS: Final[dict[str, Any]] = {
    # DELETE /v1/disruptions/{id} cancels the disruption, which stays readable (status
    # cancelled) so its final requests_affected can be read (docs/api.md): not a removal.
    "include-path-regex": "^/v1/disruptions/",
    "checks": {"use_after_free": {"enabled": False}},
}


def skipped(path_regex: str) -> dict[str, Any]:
    return {"include-path-regex": path_regex, "enabled": False}


def only_deliberate_failures(ctx: CheckContext, response: Response, case: Case) -> bool | None:
    """A 5xx must be one answered on purpose, by its ``detail``; nothing else is."""
    if response.status_code < 500:
        return None
    answer = response.json()
    if case.path.startswith("/health") and answer.get("status") in ("not_ready", "unhealthy"):
        return None  # a probe reporting a dependency down, which is its job
    detail = answer.get("detail", "")
    if not DELIBERATE.match(detail):
        raise AssertionError(f"{response.status_code} that no fault asked for: {detail!r}")
    return None


def follow_rules_schemas_cannot_state(context: Any, case: Case) -> Case:
    """Make a positive case obey the contract's rules between fields and with the clock."""
    if case.meta is None or not case.meta.generation.mode.is_positive:
        return case
    body, query = case.body, case.query
    if case.path == "/v1/config/failure" and isinstance(body, dict):
        low, high = body.get("db_latency_min_ms"), body.get("db_latency_max_ms")
        if isinstance(low, int | float) and isinstance(high, int | float) and low > high:
            body["db_latency_min_ms"], body["db_latency_max_ms"] = high, low
    elif case.path == "/v1/traffic/generate" and isinstance(body, dict):
        if body.get("mode") == "sustained":
            body["duration"] = body.get("duration") or 0.5
            body["rps"] = body.get("rps") or 1.0
    elif case.path == "/v1/traffic/jobs" and isinstance(body, dict):
        endpoints = body.get("endpoints")
        only_errors = isinstance(endpoints, list) and set(endpoints) <= {"GET /api/v1/users/error"}
        if body.get("scenario") == "error_injection" and only_errors:
            body["endpoints"] = "all"
    elif case.path in WINDOWED and isinstance(query, dict):
        _clock_rules(query)
    return case


def _clock_rules(query: dict[str, Any]) -> None:
    """``window`` within its range; ``at`` now, so the window lies within the kept past."""
    window = query.get("window")
    if isinstance(window, str):
        try:
            parse_window(window, MIN_WINDOW_SECONDS, LOW_LOAD["max_metrics_window_seconds"] / 2)
        except ValueError:
            del query["window"]
    if "at" in query:
        query["at"] = time.time()
