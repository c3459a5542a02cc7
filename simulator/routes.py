"""The user API's route templates, and every answer each route and method can give.

A route template is the one name a route has everywhere: the handlers name their server span
with it, the pipeline labels its retries with it, disruptions are aimed at it, and every
per-request series carries it as ``endpoint`` (a bounded label, never a raw path). It lives
here, not in the telemetry package, so the API and the pipeline name a route without
importing the metrics; the metrics import it to create each series at 0 from the start.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Final

LIST: Final = "/api/v1/users"
ONE: Final = "/api/v1/users/{id}"
ERROR: Final = "/api/v1/users/error"

CLIENT_CLOSED: Final = ("499", "client_closed")
"""The client went away before the answer: its request's work was cancelled (nginx's 499)."""
SHED: Final = ("503", "shed")
"""More requests were in flight than FAILURE_LAB_MAX_CONCURRENT_REQUESTS: refused before any
work (:mod:`simulator.shedding`)."""
_ADMISSION = (
    ("429", "rate_limited"),
    ("400", "bad_request"),
    ("500", "error_burst"),
    CLIENT_CLOSED,
    SHED,
)
_DATABASE = (("503", "db_error"), ("504", "db_timeout"), ("503", "circuit_open"))
# Every (endpoint, method) -> (status, outcome) the user API can answer, so that each series
# exists at 0 from the start: rate() cannot see the first increments of a new series.
ANSWERS: Final[Mapping[tuple[str, str], tuple[tuple[str, str], ...]]] = MappingProxyType(
    {
        (LIST, "GET"): (("200", "success"), *_ADMISSION, *_DATABASE),
        (LIST, "POST"): (("201", "success"), *_ADMISSION, *_DATABASE),
        (ONE, "GET"): (("200", "success"), ("404", "not_found"), *_ADMISSION, *_DATABASE),
        (ONE, "PATCH"): (("200", "success"), ("404", "not_found"), *_ADMISSION, *_DATABASE),
        (ERROR, "GET"): (
            ("200", "success"),
            *_ADMISSION,
            *((status, "injected_error") for status in ("500", "502", "503", "504")),
        ),
    }
)

_ONE_PREFIX: Final = LIST + "/"
_MAX_ID_DIGITS: Final = 18  # the user id convertor's bound (simulator/api/users.py)


def route_of(method: str, path: str) -> tuple[str, str] | None:
    """The (route template, method) a request will be served by, or None when the user API
    has no such route: found with string tests alone, before routing (HEAD is served as GET)."""
    if method == "HEAD":
        method = "GET"
    if path in (LIST, ERROR):
        route = path
    elif path.startswith(_ONE_PREFIX):
        user_id = path[len(_ONE_PREFIX) :]
        if not (0 < len(user_id) <= _MAX_ID_DIGITS and user_id.isascii() and user_id.isdigit()):
            return None
        route = ONE
    else:
        return None
    return (route, method) if (route, method) in ANSWERS else None
