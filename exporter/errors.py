"""The exporter's own errors: backend failures mapped at the one place backends are called.

Sources catch their client library's exceptions (httpx, JSON decoding) and raise these;
route handlers let them through; ``install_error_handlers`` turns them into JSON answers
that name the backend.
"""

from __future__ import annotations


class SourceError(Exception):
    """Base of backend failures; ``backend`` names it (``prometheus``, ``jaeger``, ...)."""

    status_code = 503

    def __init__(self, backend: str, message: str) -> None:
        super().__init__(f"{backend}: {message}")
        self.backend = backend
        self.message = message


class SourceUnavailable(SourceError):
    """The backend could not be reached or answered with an error."""


class SourceTimeout(SourceError):
    """The backend did not answer within the configured timeout."""


class TraceNotFound(Exception):
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
