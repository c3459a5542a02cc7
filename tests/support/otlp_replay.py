"""Jaeger api_v3 answers made from real SDK spans, for replaying Jaeger in tests.

The spans go through the SDK's own OTLP encoder and protobuf's canonical JSON mapping, which
already writes what Jaeger writes for the rest (camelCase names, enums as integers with
``use_integers_for_enums``, 64-bit integers as decimal strings, default scalars left out).
Two things differ and are rewritten: protobuf's JSON writes ``bytes`` ids as base64 where
OTLP/JSON (and so Jaeger) writes lower-case hex, and protobuf keeps a status message that is
present but empty (``"status": {}``) where Jaeger leaves an unset status out.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from typing import Any

from google.protobuf.json_format import MessageToDict
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.trace import ReadableSpan

_ID_FIELDS = ("traceId", "spanId", "parentSpanId")


def jaeger_json(spans: Sequence[ReadableSpan]) -> dict[str, Any]:
    """``{"result": {"resourceSpans": [...]}}`` holding ``spans`` as Jaeger answers them."""
    traces = MessageToDict(encode_spans(spans), use_integers_for_enums=True)
    for resource_spans in traces.get("resourceSpans", []):
        for scope_spans in resource_spans.get("scopeSpans", []):
            for span in scope_spans.get("spans", []):
                _hex_ids(span)
                for link in span.get("links", []):
                    _hex_ids(link)
                if span.get("status") == {}:
                    del span["status"]
    return {"result": {"resourceSpans": traces.get("resourceSpans", [])}}


def _hex_ids(message: dict[str, Any]) -> None:
    for field in _ID_FIELDS:
        if field in message:
            message[field] = base64.b64decode(message[field], validate=True).hex()
