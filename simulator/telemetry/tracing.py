"""OpenTelemetry tracing owned by the app: no global provider is ever set.

The provider is handed explicitly to every instrumentation, so two apps in one process
(tests, the embedded server) never share span pipelines. Spans are exported over OTLP when
``OTEL_EXPORTER_OTLP_ENDPOINT`` (or the traces-specific variable) is set; the SDK reads the
rest of the standard ``OTEL_*`` variables itself. The batch processor is sized from
settings, counts what it drops, and is flushed when the app shuts down.
"""

from __future__ import annotations

import os

from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ParentBased
from prometheus_client import Counter

from failure_lab.settings import Settings

OTLP_VARIABLES = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")


def otlp_configured() -> bool:
    return any(os.environ.get(name) for name in OTLP_VARIABLES)


def build_tracer_provider(settings: Settings) -> TracerProvider:
    """A provider with no processors yet; the lifespan adds them.

    With telemetry off, spans are not recorded, but trace ids are still drawn, so request
    ids stay trace ids.
    """
    name = os.environ.get("OTEL_SERVICE_NAME") or settings.service_name
    resource = Resource.create({SERVICE_NAME: name})
    if not settings.telemetry_enabled:
        return TracerProvider(resource=resource, sampler=ParentBased(ALWAYS_OFF))
    return TracerProvider(resource=resource)


class CountingBatchSpanProcessor(BatchSpanProcessor):
    """A BatchSpanProcessor that counts the spans it drops when its queue is full.

    The SDK drops the oldest queued span silently (a log line); the count is what an
    operator needs to see, so it becomes a Prometheus counter.
    """

    def __init__(
        self,
        exporter: SpanExporter,
        dropped: Counter,
        *,
        max_queue_size: int,
        max_export_batch_size: int,
        schedule_delay_millis: int,
    ) -> None:
        super().__init__(
            exporter,
            max_queue_size=max_queue_size,
            max_export_batch_size=max_export_batch_size,
            schedule_delay_millis=schedule_delay_millis,
        )
        self._dropped = dropped
        self._capacity = max_queue_size

    def on_end(self, span: ReadableSpan) -> None:
        if span.context is not None and span.context.trace_flags.sampled:
            queue = getattr(self._batch_processor, "_queue", None)
            if queue is not None and len(queue) >= self._capacity:
                self._dropped.inc()
        super().on_end(span)


def otlp_processor(settings: Settings, dropped: Counter) -> SpanProcessor:
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return CountingBatchSpanProcessor(
        OTLPSpanExporter(),
        dropped,
        max_queue_size=settings.span_queue_size,
        max_export_batch_size=settings.span_batch_size,
        schedule_delay_millis=settings.span_schedule_delay_ms,
    )
