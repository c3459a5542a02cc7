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
_ADMISSION = (
    ("429", "rate_limited"),
    ("400", "bad_request"),
    ("500", "error_burst"),
    CLIENT_CLOSED,
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
