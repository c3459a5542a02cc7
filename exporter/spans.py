"""A neutral span record: what every trace source produces and the translator reads.

Jaeger answers OTLP/JSON, the embedded store holds the SDK's ``ReadableSpan``; both become
``SpanRecord`` so one translator serves both and their answers can be compared directly.
Ids are integers (128-bit trace, 64-bit span), times are Unix nanoseconds, kinds and
status codes are lower-case words.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

AttributeValue = (
    str | bool | int | float | Sequence[str] | Sequence[bool] | Sequence[int] | Sequence[float]
)
SpanKindName = Literal["unspecified", "internal", "server", "client", "producer", "consumer"]
StatusName = Literal["unset", "ok", "error"]
REQUEST_ID = re.compile(
    r"[0-9a-fA-F]{32}|[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
)


@dataclass(frozen=True, slots=True)
class EventRecord:
    name: str
    time_unix_nano: int
    attributes: Mapping[str, AttributeValue]


@dataclass(frozen=True, slots=True)
class SpanRecord:
    trace_id: int
    span_id: int
    parent_span_id: int | None
    name: str
    kind: SpanKindName
    start_unix_nano: int
    end_unix_nano: int
    status: StatusName
    status_message: str | None
    attributes: Mapping[str, AttributeValue]
    events: tuple[EventRecord, ...]
    service_name: str

    @property
    def duration_ms(self) -> float:
        return (self.end_unix_nano - self.start_unix_nano) / 1e6


def trace_id_to_uuid(trace_id: int) -> str:
    """The request id of a trace: its 128-bit id written as a UUID."""
    return str(uuid.UUID(int=trace_id))


def parse_request_id(text: str) -> int:
    """A request id (a UUID, or the trace id as 32 hex digits) as a trace id.

    ValueError if it is neither, or is the all-zero id no trace can have.
    """
    if REQUEST_ID.fullmatch(text) is None:
        raise ValueError("expected a UUID (or 32 hex digits)")
    value = int(text.replace("-", ""), 16)
    if value == 0:
        raise ValueError("the all-zero trace id is invalid")
    return value
