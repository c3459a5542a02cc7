"""The servers ``bench/throughput.py`` puts under load, one per process.

Each variant runs under the simulator's own uvicorn configuration (``server_for``: uvloop,
httptools, access log off), so the only difference between two variants is the app:

- ``bare``: FastAPI with one ``GET /api/v1/users/{id}`` answering a small JSON body from
  bytes, FastAPI's built-in telemetry off. The denominator of every ratio.
- ``instrumented``: the same app plus the OpenTelemetry FastAPI instrumentation, spans
  batched to an exporter that counts and discards them.
- ``pipeline-off``: the simulator as the stack runs it (``embedded_shim=False``: spans
  leave the process, nothing is kept in it) with ``Settings(telemetry_enabled=False)``.
- ``pipeline-traced``: the same with tracing on and a batch processor sized from settings
  into the counting exporter, so the whole span pipeline (batch thread included) is paid
  for, as with an OTLP endpoint configured.
- ``serve-traced``: ``create_app`` with its defaults, as ``failure-lab serve`` runs it: the
  embedded shim keeps recent traces in the process's span store; the same batch processor
  is added, so the difference to ``pipeline-traced`` is the shim alone.

When the server stops (SIGINT) it flushes its spans and writes, as JSON to the path given
on the command line, the spans exported (server spans among them) and dropped, and for the
simulator the requests its own counter saw.

    python bench/_servers.py VARIANT PORT STATS_JSON
"""

from __future__ import annotations

import contextlib
import json
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

from fastapi import FastAPI
from fastapi import Path as PathParam
from fastapi.responses import Response
from fastapi.telemetry import TelemetryConfig
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from opentelemetry.metrics import NoOpMeterProvider
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.trace import SpanKind
from prometheus_client import CollectorRegistry, Counter

from failure_lab.settings import Settings
from simulator.app import create_app
from simulator.server import server_for
from simulator.telemetry.span_export import BoundedBatchProcessor

VARIANTS = ("bare", "instrumented", "pipeline-off", "pipeline-traced", "serve-traced")
BODY = b'{"id":1,"name":"user-1","email":"user1@example.test"}'
NO_TELEMETRY: TelemetryConfig = {"tracing": False, "metrics": False, "logs": False}


class CountingExporter(SpanExporter):
    """Counts the spans (and the server spans among them) it is handed; keeps none."""

    def __init__(self) -> None:
        self.exported = 0
        self.server_spans = 0
        self._lock = threading.Lock()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        servers = sum(1 for span in spans if span.kind is SpanKind.SERVER)
        with self._lock:
            self.exported += len(spans)
            self.server_spans += servers
        return SpanExportResult.SUCCESS


def bare_app() -> FastAPI:
    app = FastAPI(telemetry=NO_TELEMETRY)

    @app.get("/api/v1/users/{id}")
    async def get_user(user_id: int = PathParam(alias="id")) -> Response:
        return Response(BODY, media_type="application/json")

    return app


def served(app: FastAPI) -> float | None:
    """Requests the simulator counted on its user API (None for the bare apps)."""
    registry: CollectorRegistry | None = getattr(app.state, "registry", None)
    if registry is None:
        return None
    return sum(
        sample.value
        for metric in registry.collect()
        if metric.name == "failure_lab_http_requests"
        for sample in metric.samples
        if sample.name == "failure_lab_http_requests_total"
    )


def span_processor(
    exporter: SpanExporter, settings: Settings, dropped: Counter
) -> BoundedBatchProcessor:
    return BoundedBatchProcessor(
        exporter,
        lambda _reason, count: dropped.inc(count),
        queue_size=settings.span_queue_size,
        batch_size=settings.span_batch_size,
        delay_s=settings.span_schedule_delay_ms / 1000,
    )


def main(variant: str, port: int, stats_path: Path) -> None:
    exporter = CountingExporter()
    registry = CollectorRegistry()
    dropped = Counter("spans_dropped", "Spans not exported (a full queue).", registry=registry)
    provider: TracerProvider | None = None
    if variant in ("bare", "instrumented"):
        app = bare_app()
        if variant == "instrumented":
            provider = TracerProvider()
            provider.add_span_processor(span_processor(exporter, Settings(port=port), dropped))
            FastAPIInstrumentor.instrument_app(
                app,
                tracer_provider=provider,
                exclude_spans=["send", "receive"],
                meter_provider=NoOpMeterProvider(),
            )
    elif variant in ("pipeline-off", "pipeline-traced", "serve-traced"):
        settings = Settings(port=port, telemetry_enabled=variant != "pipeline-off")
        app = create_app(settings, embedded_shim=variant == "serve-traced")
        # Added before serving; the lifespan flushes and shuts the provider down at exit.
        app.state.tracer_provider.add_span_processor(span_processor(exporter, settings, dropped))
    else:
        raise SystemExit(f"unknown variant {variant!r}; one of {', '.join(VARIANTS)}")

    # uvicorn re-raises the SIGINT it handled, once the graceful shutdown is over.
    with contextlib.suppress(KeyboardInterrupt):
        server_for(app, "127.0.0.1", port, grace=2.0, log_level="warning").run()
    if provider is not None:
        provider.shutdown()
    stats = {
        "variant": variant,
        "spans": exporter.exported,
        "server_spans": exporter.server_spans,
        "requests": served(app),
        "dropped": registry.get_sample_value("spans_dropped_total"),
    }
    stats_path.write_text(json.dumps(stats))


if __name__ == "__main__":
    if len(sys.argv) != 4:
        raise SystemExit(__doc__)
    main(sys.argv[1], int(sys.argv[2]), Path(sys.argv[3]))
