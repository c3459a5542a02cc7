"""The project's own errors, and the one place they become HTTP answers (both apps).

Domain code raises these (or backend errors are mapped into them where the backend is
called); handlers never build error responses by hand. Every answer is JSON
``{"detail": ...}``; nothing ever leaks a stack trace.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from exporter.errors import SourceError, SourceTimeout, TraceNotFound
from simulator.faults import ConfigStoreUnavailable
from simulator.generator.jobs import JobNotFound, RateCapReached, TooManyJobs
from simulator.options import InvalidOptions

log = logging.getLogger(__name__)


class CapExceeded(Exception):
    """A traffic request asked for more than a server-side cap allows."""

    def __init__(self, what: str, value: float, cap: float, setting: str) -> None:
        super().__init__(f"{what} {value:g} exceeds the cap of {cap:g}; raise it with {setting}")


class NotFound(Exception):
    """A named resource (job, disruption, ...) does not exist."""


class Unprocessable(Exception):
    """Well-formed input that cannot be carried out as asked (422)."""


class Conflict(Exception):
    """The request conflicts with what is running."""


def _answer(status: int, detail: str) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=status)


def install_error_handlers(app: FastAPI) -> None:
    async def cap_exceeded(_: Request, exc: Exception) -> JSONResponse:
        return _answer(422, str(exc))

    async def not_found(_: Request, exc: Exception) -> JSONResponse:
        return _answer(404, str(exc))

    async def conflict(_: Request, exc: Exception) -> JSONResponse:
        return _answer(409, str(exc))

    async def store_down(_: Request, exc: Exception) -> JSONResponse:
        return _answer(503, f"redis (failure config store) unavailable: {exc}")

    async def unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error", exc_info=exc)
        return _answer(500, "internal error; see the server log")

    app.add_exception_handler(CapExceeded, cap_exceeded)
    app.add_exception_handler(Unprocessable, cap_exceeded)

    async def bad_request(_: Request, exc: Exception) -> JSONResponse:
        return _answer(400, str(exc))

    async def source_failed(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, SourceError)
        what = "did not answer in time" if isinstance(exc, SourceTimeout) else "unavailable"
        return _answer(503, f"{exc.backend} {what}: {exc.message}")

    app.add_exception_handler(NotFound, not_found)
    app.add_exception_handler(JobNotFound, not_found)
    app.add_exception_handler(Conflict, conflict)
    app.add_exception_handler(TooManyJobs, conflict)
    app.add_exception_handler(RateCapReached, conflict)
    app.add_exception_handler(InvalidOptions, bad_request)
    app.add_exception_handler(SourceError, source_failed)
    app.add_exception_handler(TraceNotFound, not_found)
    app.add_exception_handler(ConfigStoreUnavailable, store_down)
    app.add_exception_handler(Exception, unexpected)
