"""Both apps' OpenAPI documents say what the apps answer; HEAD and 405 as HTTP has them.

The fuzz tests (tests/fuzz) hold every answer to the document; these pin the corrections
themselves: one 422 schema, the guards' answers, the bounds from settings, the error
endpoint's parameter, and the methods a path lists when it refuses one.
"""

from __future__ import annotations

from typing import Any

import pytest

from exporter.app import create_exporter_app
from failure_lab.settings import Settings
from simulator.app import create_app
from tests.support.labs import running_lab

METHODS = ("get", "put", "post", "delete", "patch")


def operations(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        f"{method.upper()} {path}": operation
        for path, item in document["paths"].items()
        for method, operation in item.items()
        if method in METHODS
    }


def schema_of(response: dict[str, Any]) -> str:
    ref: str = response["content"]["application/json"]["schema"]["$ref"]
    return ref.rsplit("/", 1)[1]


PROBE_REPORTS = {("GET /health/ready", "503"): "Readiness", ("GET /health", "503"): "Health"}
"""The health probes answer 503 with their report of each dependency, not an ErrorAnswer."""


@pytest.mark.filterwarnings("error:Duplicate Operation ID:UserWarning")
def test_every_error_answer_has_the_projects_shape_on_both_apps() -> None:
    shim = Settings(prometheus_url="http://p", jaeger_url="http://j", simulator_url="http://s")
    for document in (create_app(Settings()).openapi(), create_exporter_app(shim).openapi()):
        schemas = document["components"]["schemas"]
        assert "HTTPValidationError" not in schemas
        assert "ValidationError" not in schemas
        assert set(schemas["ValidationProblem"]["required"]) == {"detail", "errors"}
        for name, operation in operations(document).items():
            responses = operation["responses"]
            assert {"400", "413"} <= set(responses), name  # Host guard, body guard
            for status, response in responses.items():
                if int(status) >= 400:
                    expected = "ValidationProblem" if status == "422" else "ErrorAnswer"
                    if (name, status) in PROBE_REPORTS:
                        expected = PROBE_REPORTS[name, status]
                    assert schema_of(response) == expected, (name, status)


def test_the_serve_document_names_each_routes_own_errors_and_bounds() -> None:
    document = create_app(Settings(max_db_timeout_seconds=7, api_token="t")).openapi()
    ops = operations(document)
    assert "404" in ops["POST /v1/traffic/jobs/{job_id}/stop"]["responses"]
    assert "409" in ops["POST /v1/traffic/jobs"]["responses"]
    assert "404" in ops["GET /v1/disruptions/{disruption_id}"]["responses"]
    assert "409" in ops["POST /v1/disruptions"]["responses"]
    assert "503" in ops["PUT /v1/config/failure"]["responses"]
    error = ops["GET /api/v1/users/error"]
    assert {"500", "502", "503", "504", "429", "400"} <= set(error["responses"])
    [rate] = error["parameters"]
    assert (rate["name"], rate["schema"]["minimum"], rate["schema"]["maximum"]) == (
        "errorRate",
        0,
        1,
    )
    # Guards as configured: a token is asked of state-changing control calls only.
    assert "401" in ops["PUT /v1/config/failure"]["responses"]
    assert "401" not in ops["GET /v1/config/failure"]["responses"]
    assert ops["PUT /v1/config/failure"]["responses"]["429"]["headers"]["retry-after"]
    assert "429" not in ops["GET /metrics/json"]["responses"]
    timeout = document["components"]["schemas"]["FailureConfig"]["properties"]["db_timeout_seconds"]
    assert timeout["maximum"] == 7
    assert "FAILURE_LAB_MAX_DB_TIMEOUT_SECONDS" in timeout["description"]
    links = ops["POST /v1/traffic/jobs"]["responses"]["201"]["links"]
    assert links["GetJob"] == {
        "operationId": "get_job",
        "parameters": {"job_id": "$response.body#/job_id"},
    }


async def test_a_refused_method_lists_every_method_of_the_path() -> None:
    async with running_lab() as lab:
        for method in ("OPTIONS", "DELETE", "POST"):
            answer = await lab.http.request(method, "/v1/config/failure")
            assert answer.status_code == 405, method
            assert answer.headers["allow"] == "GET, HEAD, PUT"
            assert answer.json() == {"detail": "Method Not Allowed"}
        patch = await lab.http.patch("/api/v1/users/error", json={"name": "x"})
        assert (patch.status_code, patch.headers["allow"]) == (405, "GET, HEAD")
        clear = await lab.http.get("/v1/disruptions/clear-all")
        assert (clear.status_code, clear.headers["allow"]) == (405, "POST")
        for user in ("9" * 19, "9" * 5000, "-1", "abc"):  # not a user id: no route
            answer = await lab.http.get(f"/api/v1/users/{user}")
            assert answer.status_code == 404, user
            assert answer.json() == {"detail": "Not Found"}


async def test_head_is_get_without_its_body() -> None:
    async with running_lab() as lab:
        for path in ("/v1/config/failure", "/api/v1/users/1", "/openapi.json"):
            got = await lab.http.get(path)
            head = await lab.http.head(path)
            assert head.status_code == got.status_code == 200, path
            assert head.content == b""
            assert head.headers["content-type"] == got.headers["content-type"]
            assert head.headers["content-length"] == got.headers["content-length"]
