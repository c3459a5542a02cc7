"""The kinds of failure the project's code raises, with no HTTP in them.

Domain code (the disruption registry, the job manager, the sources) raises a subclass of one
of these kinds; what a kind means to a client is decided once, at the API edge, by
:mod:`failure_lab.http_errors`. A kind says what went wrong, not which status code to send.
"""

from __future__ import annotations

from decimal import Decimal
from typing import ClassVar


class LabError(Exception):
    """Base of every error the project raises on purpose."""


class NotFound(LabError):
    """A named thing (job, disruption, trace) does not exist, or no longer does."""


class Conflict(LabError):
    """The request is valid but conflicts with what is running."""


class Unprocessable(LabError):
    """Well-formed input that cannot be carried out as asked.

    ``loc`` is where the input was (``("query", "window")``), as in a validation error.
    """

    def __init__(self, message: str, loc: tuple[str | int, ...] = ()) -> None:
        super().__init__(message)
        self.loc = loc


class CapExceeded(Unprocessable):
    """A request asked for more than a server-side bound allows; names the setting."""

    def __init__(
        self,
        what: str,
        value: float,
        cap: float,
        setting: str,
        loc: tuple[str | int, ...] = (),
    ) -> None:
        super().__init__(
            f"{what} {number(value)} exceeds the cap of {number(cap)}; raise it with {setting}",
            loc,
        )
        self.setting = setting


def number(value: float) -> str:
    """``value`` as ``%g`` writes it; an integer too large for a float in ``e`` form."""
    try:
        return f"{value:g}"
    except OverflowError:  # an int of hundreds of digits, as a JSON body can hold
        return f"{Decimal(value):.6g}"


class BackendFailure(LabError):
    """A backend this process needs (Redis, Prometheus, Jaeger, the simulator) failed.

    ``backend`` names it for the client; ``timed_out`` tells a backend that did not answer
    in time from one that answered with an error or could not be reached.
    """

    timed_out: ClassVar[bool] = False

    def __init__(self, backend: str, message: str) -> None:
        super().__init__(f"{backend}: {message}")
        self.backend = backend
        self.message = message
