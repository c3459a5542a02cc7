"""The one place the project's errors become HTTP answers, for both apps.

Every answer is JSON with a ``detail`` sentence: the kind of a
:class:`failure_lab.errors.LabError` picks the status, a backend failure names the backend,
and anything unexpected is a logged 500 that never leaks a stack trace. Every 422 has one
shape, whether pydantic refused the input or a server-side cap did: ``detail`` says it in
words, ``errors`` lists each problem with its location. Refused input is quoted only as a
short, JSON-safe preview, so ``NaN`` or a megabyte string cannot break the answer.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from typing import Any, Final

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from failure_lab.contract import ErrorAnswer, InputError, ValidationProblem
from failure_lab.errors import (
    BackendFailure,
    CapExceeded,
    Conflict,
    LabError,
    NotFound,
    Unprocessable,
)
from failure_lab.methods import allowed_methods

log = logging.getLogger(__name__)

STATUS_OF_KIND: tuple[tuple[type[LabError], int], ...] = (
    (NotFound, 404),
    (Conflict, 409),
    (Unprocessable, 422),
    (BackendFailure, 503),
)
SHOWN_ERRORS: Final = 5
SHOWN_INPUT: Final = 40


def answer(status: int, detail: str, headers: dict[str, str] | None = None) -> JSONResponse:
    body = ErrorAnswer(detail=detail).model_dump()
    return JSONResponse(body, status_code=status, headers=headers)


def unprocessable(errors: Sequence[InputError]) -> JSONResponse:
    shown = [f"{_where(e.loc)}{e.msg}" for e in errors[:SHOWN_ERRORS]]
    if len(errors) > SHOWN_ERRORS:
        shown.append(f"and {len(errors) - SHOWN_ERRORS} more")
    problem = ValidationProblem(detail="; ".join(shown), errors=list(errors))
    return JSONResponse(problem.model_dump(), status_code=422)


def error_answer(exc: LabError) -> JSONResponse:
    """The answer for one of the project's errors."""
    if isinstance(exc, BackendFailure):
        what = "did not answer in time" if exc.timed_out else "unavailable"
        return answer(503, f"{exc.backend} {what}: {exc.message}")
    if isinstance(exc, Unprocessable):
        kind = "cap_exceeded" if isinstance(exc, CapExceeded) else "unprocessable"
        return unprocessable([InputError(loc=list(exc.loc), msg=str(exc), type=kind)])
    for kind_of, status in STATUS_OF_KIND:
        if isinstance(exc, kind_of):
            return answer(status, str(exc))
    log.error("error of no known kind: %r", exc)
    return answer(500, "internal error; see the server log")


def validation_errors(errors: Sequence[Mapping[str, Any]]) -> list[InputError]:
    """pydantic's errors as ``InputError``s, each message with a preview of the input."""
    return [
        InputError(
            loc=[part if isinstance(part, int) else str(part) for part in error.get("loc", ())],
            msg=f"{error.get('msg', 'invalid')}{_got(error)}",
            type=str(error.get("type", "value_error")),
        )
        for error in errors
    ]


def _where(loc: Sequence[str | int]) -> str:
    return f"{'.'.join(map(str, loc))}: " if loc else ""


def _got(error: Mapping[str, Any]) -> str:
    if "input" not in error:
        return ""
    value = error["input"]
    if isinstance(value, float) and not math.isfinite(value):
        return f" (got {'NaN' if math.isnan(value) else ('-' if value < 0 else '') + 'Infinity'})"
    if isinstance(value, bool | int | float):
        return f" (got {_short(repr(value))})"
    if isinstance(value, str):
        return f" (got {_short(value)!r})"
    return ""


def _short(text: str) -> str:
    return text if len(text) <= SHOWN_INPUT else text[:SHOWN_INPUT] + "..."


def install_error_handlers(app: FastAPI) -> None:
    async def lab_error(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, LabError)
        return error_answer(exc)

    async def invalid_input(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        return unprocessable(validation_errors(exc.errors()))

    async def http_error(request: Request, exc: Exception) -> JSONResponse:
        """Starlette's own refusals (404 no route, 405 wrong method) in the one shape; a
        405 lists every method of the path."""
        assert isinstance(exc, HTTPException)
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            headers["Allow"] = ", ".join(allowed_methods(request.app.router.routes, request.scope))
        if exc.status_code == 422:
            return unprocessable([InputError(loc=[], msg=str(exc.detail), type="unprocessable")])
        return answer(exc.status_code, str(exc.detail), headers)

    async def unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error", exc_info=exc)
        return answer(500, "internal error; see the server log")

    app.add_exception_handler(LabError, lab_error)
    app.add_exception_handler(RequestValidationError, invalid_input)
    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(Exception, unexpected)
