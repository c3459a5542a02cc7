"""``create_exporter_app(settings)``: the stack-mode shim on port 8000.

Metrics come from Prometheus, traces from Jaeger, control calls go to the simulator; the
routes and translator are the same ones ``failure-lab serve`` uses with embedded sources.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from prometheus_client import CollectorRegistry
from prometheus_client.gc_collector import GCCollector
from prometheus_client.process_collector import ProcessCollector

from exporter import routes, topology_routes
from exporter.feed import LiveFeed
from exporter.feed import router as feed_router
from exporter.forward import Forwarder, document_streams, forwarding_router
from exporter.metrics import ExporterMetrics
from exporter.runtime import ExporterRuntime
from exporter.sources.jaeger import JaegerSource
from exporter.sources.prometheus import PrometheusSource
from failure_lab.exposition import metrics_router
from failure_lab.guard import install_guards
from failure_lab.health import Component
from failure_lab.home import install_home
from failure_lab.http_errors import install_error_handlers
from failure_lab.loop_lag import LoopLag
from failure_lab.methods import HeadAsGet
from failure_lab.openapi import install_openapi
from failure_lab.settings import Settings


class MissingBackend(ValueError):
    """Stack mode needs every backend's URL."""


def create_exporter_app(settings: Settings) -> FastAPI:
    missing = [
        name
        for name, value in (
            ("FAILURE_LAB_PROMETHEUS_URL", settings.prometheus_url),
            ("FAILURE_LAB_JAEGER_URL", settings.jaeger_url),
            ("FAILURE_LAB_SIMULATOR_URL", settings.simulator_url),
        )
        if not value
    ]
    if missing:
        raise MissingBackend(f"the exporter needs {', '.join(missing)}")

    registry = CollectorRegistry(auto_describe=True)
    ProcessCollector(registry=registry)
    GCCollector(registry=registry)
    metrics = ExporterMetrics(registry)
    loop_lag = LoopLag(registry)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        timeout = settings.backend_timeout_seconds
        forwarder = Forwarder(
            settings.simulator_url or "", settings.forward_timeout_seconds, timeout
        )
        runtime = ExporterRuntime(
            settings=settings,
            metrics=PrometheusSource(settings.prometheus_url or "", timeout=timeout),
            traces=JaegerSource(
                settings.jaeger_url or "",
                settings.service_name,
                timeout=timeout,
                feed_max_traces=settings.jaeger_feed_max_traces,
            ),
            exporter_metrics=metrics,
            dependencies=[Component(forwarder.name, "control calls", forwarder.check)],
            loop_lag=loop_lag,
        )
        app.state.exporter = runtime
        app.state.forwarder = forwarder
        try:
            async with loop_lag.running(), LiveFeed(runtime, metrics).running() as feed:
                app.state.feed = feed
                yield
        finally:
            await runtime.aclose()
            await forwarder.aclose()

    app = FastAPI(
        title="failure-lab exporter",
        version="0.1.0",
        lifespan=lifespan,
        telemetry={"tracing": False, "metrics": False, "logs": False},
        docs_url=None,  # served offline by install_home
        redoc_url=None,
    )
    app.state.registry = registry
    install_error_handlers(app)
    install_openapi(app, settings, document_streams)
    install_home(app, settings, "exporter")
    app.include_router(routes.router)
    app.include_router(topology_routes.router)
    app.include_router(feed_router)
    app.include_router(forwarding_router())
    app.include_router(metrics_router(registry))
    app.add_middleware(HeadAsGet)
    install_guards(app, settings)
    return app
