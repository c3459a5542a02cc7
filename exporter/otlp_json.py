"""OTLP/JSON trace answers of Jaeger's api_v3 read into ``SpanRecord``s.

Jaeger's ``/api/v3/traces`` answers wrap OTLP ``TracesData`` as ``{"result": {"resourceSpans":
[...]}}`` in the OTLP/JSON mapping: hex ids, integer ``kind`` and ``status.code``, 64-bit
integers as decimal strings, and every zero or default field left out (a root span has no
``parentSpanId``, an unset status no ``status``, a missing ``kind`` is 0, "unspecified").
Jaeger's own ``@jaeger@warnings`` span attribute is left out. Reading is tolerant of
anything optional being absent and strict about structure: a body that
is not this shape raises ``ValueError`` naming the path of the first bad field, so the caller
can report the backend as answering garbage rather than as having no data.

Pure functions, no I/O.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from typing import Final, cast

from exporter.spans import AttributeValue, EventRecord, SpanKindName, SpanRecord, StatusName

SERVICE_NAME_KEY: Final = "service.name"
JAEGER_WARNINGS_KEY: Final = "@jaeger@warnings"
"""Where Jaeger's query adjusters write what they could not do to a span (a parent missing,
so no clock-skew adjustment). Jaeger's own annotation, not the span's: it is left out. Its
memory store keeps what the adjusters wrote, so the list grows with every non-raw read."""

KINDS: Final[Mapping[int, SpanKindName]] = {
    0: "unspecified",
    1: "internal",
    2: "server",
    3: "client",
    4: "producer",
    5: "consumer",
}
STATUSES: Final[Mapping[int, StatusName]] = {0: "unset", 1: "ok", 2: "error"}
# Protobuf's JSON mapping also allows enums by name; Jaeger writes numbers.
_KIND_NAMES: Final[Mapping[str, int]] = {
    f"SPAN_KIND_{name.upper()}": code for code, name in KINDS.items()
}
_STATUS_NAMES: Final[Mapping[str, int]] = {
    f"STATUS_CODE_{name.upper()}": code for code, name in STATUSES.items()
}
_SPECIAL_DOUBLES: Final[Mapping[str, float]] = {
    "NaN": math.nan,
    "Infinity": math.inf,
    "-Infinity": -math.inf,
}

_DECIMAL: Final = re.compile(r"-?[0-9]+")
_HEX: Final = re.compile(r"[0-9a-fA-F]+")

Scalar = str | bool | int | float


def parse_answer(body: bytes | str) -> list[SpanRecord]:
    """The spans of a raw api_v3 trace answer; ``ValueError`` if it is not JSON of that shape."""
    try:
        answer = json.loads(body)
    except (ValueError, RecursionError) as exc:  # bad JSON or UTF-8; nesting too deep
        raise ValueError(f"the answer is not JSON: {exc}") from exc
    return spans_from_answer(answer)


def spans_from_answer(answer: object) -> list[SpanRecord]:
    """The spans of a decoded ``{"result": TracesData}`` answer."""
    top = _object(answer, "the answer")
    if "result" not in top:
        raise ValueError(f"the answer has no 'result' (keys: {sorted(top)[:5]})")
    return spans_from_traces_data(top["result"], "result")


def spans_from_traces_data(data: object, where: str = "TracesData") -> list[SpanRecord]:
    """The spans of one decoded OTLP/JSON ``TracesData`` object, in the order given."""
    traces = _object(data, where)
    records: list[SpanRecord] = []
    for r, resource_spans in enumerate(
        _array(traces.get("resourceSpans"), f"{where}.resourceSpans")
    ):
        at = f"{where}.resourceSpans[{r}]"
        block = _object(resource_spans, at)
        service = _service_name(block.get("resource"), f"{at}.resource")
        for s, scope_spans in enumerate(_array(block.get("scopeSpans"), f"{at}.scopeSpans")):
            scope_at = f"{at}.scopeSpans[{s}]"
            scope = _object(scope_spans, scope_at)
            for i, span in enumerate(_array(scope.get("spans"), f"{scope_at}.spans")):
                records.append(_span(span, service, f"{scope_at}.spans[{i}]"))
    return records


def _span(value: object, service: str, at: str) -> SpanRecord:
    span = _object(value, at)
    status = _object(span.get("status", {}), f"{at}.status")
    kind_code = _enum(span.get("kind", 0), _KIND_NAMES, f"{at}.kind")
    status_code = _enum(status.get("code", 0), _STATUS_NAMES, f"{at}.status.code")
    message = _string(status.get("message", ""), f"{at}.status.message")
    return SpanRecord(
        trace_id=_hex_id(span.get("traceId"), 32, f"{at}.traceId"),
        span_id=_hex_id(span.get("spanId"), 16, f"{at}.spanId"),
        parent_span_id=_parent_id(span.get("parentSpanId"), f"{at}.parentSpanId"),
        name=_string(span.get("name", ""), f"{at}.name"),
        kind=KINDS.get(kind_code, "unspecified"),
        start_unix_nano=_integer(span.get("startTimeUnixNano", 0), f"{at}.startTimeUnixNano"),
        end_unix_nano=_integer(span.get("endTimeUnixNano", 0), f"{at}.endTimeUnixNano"),
        status=STATUSES.get(status_code, "unset"),
        status_message=message or None,
        attributes=_without_warnings(attributes(span.get("attributes"), f"{at}.attributes")),
        events=tuple(
            _event(event, f"{at}.events[{e}]")
            for e, event in enumerate(_array(span.get("events"), f"{at}.events"))
        ),
        service_name=service,
    )


def _without_warnings(found: dict[str, AttributeValue]) -> dict[str, AttributeValue]:
    found.pop(JAEGER_WARNINGS_KEY, None)
    return found


def _event(value: object, at: str) -> EventRecord:
    event = _object(value, at)
    return EventRecord(
        name=_string(event.get("name", ""), f"{at}.name"),
        time_unix_nano=_integer(event.get("timeUnixNano", 0), f"{at}.timeUnixNano"),
        attributes=attributes(event.get("attributes"), f"{at}.attributes"),
    )


def _service_name(resource: object, at: str) -> str:
    if resource is None:
        return ""
    name = attributes(_object(resource, at).get("attributes"), f"{at}.attributes").get(
        SERVICE_NAME_KEY, ""
    )
    return name if isinstance(name, str) else str(name)


def attributes(value: object, at: str = "attributes") -> dict[str, AttributeValue]:
    """An OTLP/JSON ``KeyValue`` list as a dict.

    Values a span record cannot hold are left out: ``kvlistValue``, ``bytesValue``, an empty
    value, and arrays with any element that is not a string, boolean, integer or double. So is
    an attribute with an empty key, which Jaeger writes with no ``key`` at all (proto3's JSON
    mapping leaves out an empty string): the attribute is dropped, the span kept.
    """
    result: dict[str, AttributeValue] = {}
    for k, item in enumerate(_array(value, at)):
        pair = _object(item, f"{at}[{k}]")
        key = _string(pair.get("key", ""), f"{at}[{k}].key")
        parsed = _any_value(pair.get("value"), f"{at}[{k}].value")
        if key and parsed is not None:
            result[key] = parsed
    return result


def _any_value(value: object, at: str) -> AttributeValue | None:
    if value is None:
        return None
    wrapper = _object(value, at)
    if "arrayValue" not in wrapper:
        return _scalar(wrapper, at)
    array = _object(wrapper["arrayValue"], f"{at}.arrayValue")
    items: list[Scalar] = []
    for i, item in enumerate(_array(array.get("values"), f"{at}.arrayValue.values")):
        scalar = _scalar(_object(item, f"{at}.arrayValue.values[{i}]"), f"{at}.values[{i}]")
        if scalar is None:
            return None
        items.append(scalar)
    return cast(AttributeValue, tuple(items))


def _scalar(wrapper: Mapping[str, object], at: str) -> Scalar | None:
    if "stringValue" in wrapper:
        return _string(wrapper["stringValue"], f"{at}.stringValue")
    if "boolValue" in wrapper:
        flag = wrapper["boolValue"]
        if not isinstance(flag, bool):
            raise ValueError(f"{at}.boolValue is not a boolean: {flag!r}")
        return flag
    if "intValue" in wrapper:
        return _integer(wrapper["intValue"], f"{at}.intValue", signed=True)
    if "doubleValue" in wrapper:
        return _double(wrapper["doubleValue"], f"{at}.doubleValue")
    return None


def _double(value: object, at: str) -> float:
    if isinstance(value, bool):
        raise ValueError(f"{at} is not a number: {value!r}")
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        if value in _SPECIAL_DOUBLES:
            return _SPECIAL_DOUBLES[value]
        try:
            return float(value)
        except ValueError:
            pass
    raise ValueError(f"{at} is not a number: {value!r}")


def _integer(value: object, at: str, *, signed: bool = False) -> int:
    """A 64-bit integer written as a decimal string (or, tolerated, as a JSON number)."""
    if isinstance(value, bool):
        raise ValueError(f"{at} is not an integer: {value!r}")
    if isinstance(value, int):
        number = value
    elif isinstance(value, str) and _DECIMAL.fullmatch(value):
        number = int(value)
    else:
        raise ValueError(f"{at} is not an integer: {value!r}")
    if number < 0 and not signed:
        raise ValueError(f"{at} is negative: {value!r}")
    return number


def _enum(value: object, names: Mapping[str, int], at: str) -> int:
    if isinstance(value, str) and value in names:
        return names[value]
    return _integer(value, at)


def _hex_id(value: object, digits: int, at: str) -> int:
    if not isinstance(value, str) or len(value) != digits or not _HEX.fullmatch(value):
        raise ValueError(f"{at} is not {digits} hex digits: {_preview(value)}")
    number = int(value, 16)
    if number == 0:
        raise ValueError(f"{at} is all zeros")
    return number


def _parent_id(value: object, at: str) -> int | None:
    if value is None or value == "" or value == "0" * 16:
        return None
    return _hex_id(value, 16, at)


def _object(value: object, at: str) -> Mapping[str, object]:
    if not isinstance(value, dict):
        raise ValueError(f"{at} is not a JSON object: {_preview(value)}")
    return cast(Mapping[str, object], value)


def _array(value: object, at: str) -> Sequence[object]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise ValueError(f"{at} is not a JSON array: {_preview(value)}")
    return cast(Sequence[object], value)


def _string(value: object, at: str) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{at} is not a string: {_preview(value)}")
    return value


def _preview(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
