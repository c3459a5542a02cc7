"""Both apps' OpenAPI documents made to say what the apps do, status by status.

FastAPI documents a route's success and, for a route with parameters, a 422 in a shape no
answer of this project has. The document is read by people and by the fuzz tests, which fail
on any answer it does not declare, so after FastAPI has written it this module:

- gives every error answer its schema: ``ValidationProblem`` for every 422 (replacing
  FastAPI's ``HTTPValidationError``), ``ErrorAnswer`` for every other 4xx and 5xx but those a
  route declared with a model of its own (the health probes' reports);
- adds what the guards can answer instead of the route (400, 401, 413, 429; see
  :func:`failure_lab.guard.guard_answers`), as this process's settings configure them;
- sets each bounded number's ``maximum`` from the settings (:mod:`failure_lab.bounds`).

Routes declare their own errors with :func:`errors` (404, 409, 503 and the user API's
deliberate failures), next to the code that raises them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Final

from fastapi import FastAPI
from pydantic.json_schema import models_json_schema

from failure_lab.bounds import apply_to_openapi
from failure_lab.contract import ErrorAnswer, ValidationProblem
from failure_lab.guard import guard_answers
from failure_lab.settings import Settings

SCHEMAS: Final = "#/components/schemas/"
FASTAPI_422: Final = ("HTTPValidationError", "ValidationError")
METHODS: Final = ("get", "put", "post", "delete", "patch", "head", "options", "trace")
STATUS_TEXT: Final = {
    400: "Bad request",
    401: "A bearer token is needed",
    404: "Not found",
    409: "Conflicts with what is running",
    413: "Request body too large",
    422: "Invalid input, each problem with its location",
    429: "Too many requests",
    500: "Server error",
    502: "Bad gateway",
    503: "A backend this call needs is unavailable (named in detail)",
    504: "Timed out",
}


def errors(*answers: int | tuple[int, str]) -> dict[int | str, dict[str, Any]]:
    """``responses=`` for a route's error answers, each an ``ErrorAnswer``: a status, or a
    status with what it means on that route (``errors(404, (409, "too many jobs"))``)."""
    said = dict(a if isinstance(a, tuple) else (a, STATUS_TEXT.get(a, "Error")) for a in answers)
    return {code: {"model": ErrorAnswer, "description": said[code]} for code in sorted(said)}


def install_openapi(
    app: FastAPI, settings: Settings, *also: Callable[[dict[str, Any]], None]
) -> None:
    """Serve the corrected document at ``/openapi.json`` (built once, on first ask);
    ``also`` are the app's own corrections, applied after these."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = build()
            correct(document, settings)
            for fix in also:
                fix(document)
        assert app.openapi_schema is not None
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def correct(document: dict[str, Any], settings: Settings) -> None:
    """Patch FastAPI's ``document`` in place: error schemas, guard answers, bounds."""
    schemas: dict[str, Any] = document.setdefault("components", {}).setdefault("schemas", {})
    for name in FASTAPI_422:
        schemas.pop(name, None)
    _, definitions = models_json_schema(
        [(ErrorAnswer, "validation"), (ValidationProblem, "validation")],
        ref_template=SCHEMAS + "{model}",
    )
    schemas.update(definitions.get("$defs", {}))
    for path, item in document.get("paths", {}).items():
        for method, operation in item.items():
            if method in METHODS:
                _correct_operation(method.upper(), path, operation, settings)
    apply_to_openapi(document, settings)


def _correct_operation(
    method: str, path: str, operation: dict[str, Any], settings: Settings
) -> None:
    responses: dict[str, Any] = operation.setdefault("responses", {})
    for status, answer in guard_answers(method, path, settings).items():
        response = responses.setdefault(str(status), {"description": answer.description})
        if answer.description not in response["description"]:
            response["description"] += f"; or {answer.description}"
        if answer.headers:
            response.setdefault("headers", {}).update(_headers(answer.headers))
    for code, response in responses.items():
        if code.isdigit() and int(code) >= 400 and not _own_answer(response):
            model = ValidationProblem if code == "422" else ErrorAnswer
            response["content"] = {
                "application/json": {"schema": {"$ref": SCHEMAS + model.__name__}}
            }
            if code == "422":
                response["description"] = STATUS_TEXT[422]


def _own_answer(response: dict[str, Any]) -> bool:
    """Whether a route declared this error answer with a model of its own (the health
    probes' 503 is their report, not an ``ErrorAnswer``)."""
    ref = response.get("content", {}).get("application/json", {}).get("schema", {}).get("$ref")
    if not isinstance(ref, str):
        return False
    return ref.rsplit("/", 1)[1] not in (*FASTAPI_422, ErrorAnswer.__name__)


def _headers(headers: Mapping[str, str]) -> dict[str, Any]:
    return {
        name: {"description": text, "required": True, "schema": {"type": "string"}}
        for name, text in headers.items()
    }
