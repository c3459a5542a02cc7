"""The exporter's own errors: backend failures mapped at the one place backends are called.

Every backend call goes through :func:`exporter.boundary.backend_call`, which turns httpx
errors and time bounds into these; route handlers let them through and
:mod:`failure_lab.http_errors` turns them into 503 answers that name the backend.
"""

from __future__ import annotations

from failure_lab.errors import BackendFailure, NotFound


class SourceError(BackendFailure):
    """Base of backend failures; ``backend`` names it (``prometheus``, ``jaeger``, ...)."""


class SourceUnavailable(SourceError):
    """The backend could not be reached or answered with an error."""


class SourceTimeout(SourceError):
    """The backend did not answer within the configured timeout."""

    timed_out = True


class TraceNotFound(NotFound):
    """No span of this trace is in the backend (yet)."""

    def __init__(
        self, request_id: str, may_still_arrive: bool, backend: str, hint: str | None = None
    ) -> None:
        if hint is None:
            hint = (
                "it may still be arriving: spans reach the backend a few seconds after the request"
                if may_still_arrive
                else "it is older than what the backend keeps, or was never recorded"
            )
        super().__init__(f"trace {request_id} not found in {backend}; {hint}")
        self.request_id = request_id
        self.may_still_arrive = may_still_arrive
