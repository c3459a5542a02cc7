"""Schemathesis against ``failure-lab serve``: every operation of its OpenAPI document.

The app is served on a free loopback port, once with everything in process and once with
real Redis, under caps low enough (``LOW_LOAD``) that a generated burst, job or disruption
stays small. Every check runs on every answer, with the fixed seed of
:mod:`tests.support.fuzzing`; what is configured, and why, is said there. The stateful test
follows the document's links: a job started, then read and stopped; a disruption created,
then read and cancelled.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Any

import hypothesis
import pytest
import requests
import schemathesis
from redis import Redis

from failure_lab.settings import Settings
from simulator.app import create_app
from tests.support.fuzzing import (
    CANCEL_KEEPS,
    EXAMPLES,
    LOW_LOAD,
    RANDOM_IN_THREAD,
    USER_API,
    config,
    deliberate_5xx,
    follow_rules_schemas_cannot_state,
    only_deliberate_failures,
)
from tests.support.loop_thread import LoopThread
from tests.support.servers import free_port, serve_app

STEPS = 6
"""Calls in one stateful scenario."""
OUTLAST = 30.0
"""Seconds a job or disruption of a scenario lasts: longer than the scenario, so whether a
stop or a cancel finds it still running never depends on how fast the host ran the steps."""

pytestmark = [pytest.mark.integration, pytest.mark.filterwarnings(RANDOM_IN_THREAD)]


@pytest.fixture(scope="module")
def loop() -> Iterator[LoopThread]:
    with LoopThread() as thread:
        yield thread


@pytest.fixture(scope="module")
def calls(request: pytest.FixtureRequest) -> Iterator[Counter[str]]:
    """Requests sent per variant; reported at the end, and required to be many."""
    tally: Counter[str] = Counter()
    yield tally
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(f"fuzz (serve): requests sent {dict(tally)}")


def _schema(loop: LoopThread, rules: Any = None, **settings: Any) -> schemathesis.BaseSchema:
    port = free_port()
    app = create_app(Settings(port=port, **{**LOW_LOAD, **settings}))
    url = loop.enter(serve_app(app, port))
    schema = schemathesis.openapi.from_url(
        f"{url}/openapi.json", config=config(operations=[deliberate_5xx(USER_API), CANCEL_KEEPS])
    )
    schema.hook("map_case")(rules or follow_rules_schemas_cannot_state)
    return schema


def _outlasting(context: Any, case: schemathesis.Case) -> schemathesis.Case:
    """The contract's rules, and every job and disruption a scenario starts outlasts it."""
    case = follow_rules_schemas_cannot_state(context, case)
    if case.meta is None or not case.meta.generation.mode.is_positive:
        return case
    body = case.body
    if isinstance(body, dict):
        if case.path == "/v1/traffic/jobs" and isinstance(body.get("duration"), int | float):
            body["duration"] = OUTLAST
        elif case.path == "/v1/disruptions" and isinstance(
            body.get("duration_seconds"), int | float
        ):
            body["duration_seconds"] = OUTLAST
    return case


@pytest.fixture(scope="module")
def in_process(loop: LoopThread) -> schemathesis.BaseSchema:
    return _schema(loop)


@pytest.fixture(scope="module")
def with_redis(loop: LoopThread, redis_url: str) -> schemathesis.BaseSchema:
    private = redis_url.rsplit("/", 1)[0] + "/9"  # a database of its own, emptied first
    Redis.from_url(private).flushdb()
    return _schema(loop, redis_url=private)


@pytest.fixture(scope="module")
def roomy(loop: LoopThread) -> schemathesis.BaseSchema:
    """Room for every job and disruption a scenario of steps creates: what it creates is then
    201 whatever ran before, so a scenario replays the same (Hypothesis requires it)."""
    return _schema(
        loop,
        _outlasting,
        max_active_jobs=STEPS,
        max_active_disruptions=STEPS,
        max_rps=STEPS * 4.0,
        max_duration_seconds=OUTLAST,
        max_disruption_seconds=OUTLAST,
    )


in_process_schema = schemathesis.pytest.from_fixture("in_process")
redis_schema = schemathesis.pytest.from_fixture("with_redis")


@in_process_schema.parametrize()
def test_serve_in_process(case: schemathesis.Case, calls: Counter[str]) -> None:
    calls["in process"] += 1
    case.call_and_validate(additional_checks=[only_deliberate_failures])


@redis_schema.parametrize()
def test_serve_with_redis(case: schemathesis.Case, calls: Counter[str]) -> None:
    calls["redis"] += 1
    case.call_and_validate(additional_checks=[only_deliberate_failures])


def test_serve_follows_its_links(roomy: schemathesis.BaseSchema, calls: Counter[str]) -> None:
    # The user API's answers hang on the injected faults' own dice, which Hypothesis cannot
    # replay: a link it follows from them is there in one run and not in the next, and
    # Hypothesis rejects that as flaky generation. Its links are fuzzed one call at a time by
    # the tests above; here the control API's, whose answers the calls before decide.
    machine = roomy.exclude(path_regex=USER_API).as_state_machine()
    answered: set[tuple[str, int]] = set()
    base = roomy.get_base_url().rstrip("/")

    class Linked(machine):  # type: ignore[misc, valid-type]
        def setup(self) -> None:
            """Each scenario starts with no disruption and no job running."""
            requests.post(f"{base}/v1/disruptions/clear-all", timeout=10).raise_for_status()
            for job in requests.get(f"{base}/v1/traffic/jobs", timeout=10).json():
                if job["status"] == "running":
                    stop = f"{base}/v1/traffic/jobs/{job['job_id']}/stop"
                    requests.post(stop, timeout=10).raise_for_status()

        def after_call(self, response: Any, case: schemathesis.Case) -> None:
            calls["stateful"] += 1
            answered.add((f"{case.method} {case.path}", response.status_code))
            super().after_call(response, case)

        def validate_response(self, response: Any, case: schemathesis.Case, **kwargs: Any) -> None:
            kwargs["additional_checks"] = [only_deliberate_failures]
            super().validate_response(response, case, **kwargs)

    Linked.run(
        settings=hypothesis.settings(
            max_examples=EXAMPLES,
            stateful_step_count=STEPS,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=list(hypothesis.HealthCheck),
        )
    )
    assert calls["stateful"] >= EXAMPLES
    # The links were followed: what was created was then found by its id.
    found = {operation for operation, status in answered if status == 200}
    assert found & {"GET /v1/traffic/jobs/{job_id}", "POST /v1/traffic/jobs/{job_id}/stop"}
    assert found & {"GET /v1/disruptions/{disruption_id}", "DELETE /v1/disruptions/{disruption_id}"}
