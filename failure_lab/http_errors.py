"""The one place the project's errors become HTTP answers, for both apps.

Every answer is JSON ``{"detail": ...}``: the kind of a :class:`failure_lab.errors.LabError`
picks the status, a backend failure names the backend, and anything unexpected is a logged
500 that never leaks a stack trace.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from failure_lab.contract import ErrorAnswer
from failure_lab.errors import BackendFailure, Conflict, LabError, NotFound, Unprocessable

log = logging.getLogger(__name__)

STATUS_OF_KIND: tuple[tuple[type[LabError], int], ...] = (
    (NotFound, 404),
    (Conflict, 409),
    (Unprocessable, 422),
    (BackendFailure, 503),
)


def answer(status: int, detail: str, headers: dict[str, str] | None = None) -> JSONResponse:
    body = ErrorAnswer(detail=detail).model_dump()
    return JSONResponse(body, status_code=status, headers=headers)


def error_answer(exc: LabError) -> JSONResponse:
    """The answer for one of the project's errors."""
    if isinstance(exc, BackendFailure):
        what = "did not answer in time" if exc.timed_out else "unavailable"
        return answer(503, f"{exc.backend} {what}: {exc.message}")
    for kind, status in STATUS_OF_KIND:
        if isinstance(exc, kind):
            return answer(status, str(exc))
    log.error("error of no known kind: %r", exc)
    return answer(500, "internal error; see the server log")


def install_error_handlers(app: FastAPI) -> None:
    async def lab_error(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, LabError)
        return error_answer(exc)

    async def unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error", exc_info=exc)
        return answer(500, "internal error; see the server log")

    app.add_exception_handler(LabError, lab_error)
    app.add_exception_handler(Exception, unexpected)
