"""OpenTelemetry tracing owned by the app: no global provider is ever set.

The provider is handed explicitly to every instrumentation, so two apps in one process
(tests, the embedded server) never share span pipelines. Spans are exported over OTLP when
``OTEL_EXPORTER_OTLP_ENDPOINT`` (or the traces-specific variable) is set; the SDK reads the
rest of the standard ``OTEL_*`` variables itself, but the export timeout is the project's
(``span_export_timeout_seconds``). The batch processor (:mod:`simulator.telemetry.span_export`)
is sized from settings, counts what it drops, and is finished within what is left of the
shutdown grace when the app stops.
"""

from __future__ import annotations

import os

from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ParentBased
from prometheus_client import Counter

from failure_lab.settings import Settings
from simulator.telemetry.span_export import BoundedBatchProcessor

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


def otlp_processor(settings: Settings, dropped: Counter) -> BoundedBatchProcessor:
    """The OTLP/HTTP exporter behind a bounded batch processor; ``dropped`` has a ``reason``."""
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return BoundedBatchProcessor(
        OTLPSpanExporter(timeout=settings.span_export_timeout_seconds),
        lambda reason, count: dropped.labels(reason).inc(count),
        queue_size=settings.span_queue_size,
        batch_size=settings.span_batch_size,
        delay_s=settings.span_schedule_delay_ms / 1000,
    )
