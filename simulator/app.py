"""``create_app(settings)``: the simulator as an ASGI app.

Building the app does no I/O: the tracer provider and the Prometheus registry are created
here (so the instrumentation can be attached) but every connection, thread and task is
started in the lifespan and stopped with it.

The server span of each simulated request comes from OpenTelemetry's ASGI instrumentation,
the middleware the FastAPI instrumentation wraps, used directly: the FastAPI wrapper looks
the route up a second time to name the span, which cost 16-30 us of the ~290 us a traced
request costs here (see docs/benchmarks.md); the user API's handlers know their route
template and name the span themselves. FastAPI's own built-in tracing stays off so spans
are not made twice, and control, metrics and docs routes are not traced at all.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

from fastapi import FastAPI
from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware
from opentelemetry.metrics import NoOpMeterProvider
from prometheus_client import CollectorRegistry
from starlette.middleware import Middleware
from starlette.types import Scope

from exporter import routes as exporter_routes
from exporter import topology_routes
from exporter.embedded import EmbeddedShim
from exporter.feed import LiveFeed
from exporter.feed import router as feed_router
from failure_lab.exposition import metrics_router
from failure_lab.guard import install_guards
from failure_lab.health import health_router
from failure_lab.home import install_home
from failure_lab.http_errors import install_error_handlers
from failure_lab.loop_lag import LoopLag
from failure_lab.methods import HeadAsGet
from failure_lab.openapi import install_openapi
from failure_lab.settings import Settings
from simulator.api import control, disruptions, jobs, statistics, users
from simulator.api.deps import runtime_of
from simulator.generator.metrics import GeneratorMetrics
from simulator.runtime import Runtime
from simulator.shedding import Admission, ShedOverload, document_shedding
from simulator.telemetry.metrics import ServiceMetrics
from simulator.telemetry.tracing import build_tracer_provider

# Searched in the full URL: everything but the simulated user API is left untraced, so control
# calls, scrapes and probes, and paths that are not the service's, are not its requests.
UNTRACED = r"//[^/]+/(?!api/v1/users(?:[/?#]|$))"
UNMATCHED = "unmatched"
"""The route of a traced request that no handler of the user API took (a 404 or 405)."""


def create_app(
    settings: Settings, *, base_url: str | None = None, embedded_shim: bool = True
) -> FastAPI:
    """The simulator: user API, control contract and ``/metrics`` on one app.

    With ``embedded_shim`` (``failure-lab serve``) the read side of the contract joins it,
    answered from this process's own registry and spans; the stack's simulator leaves
    that to the exporter. ``base_url`` is where the traffic generator reaches this app's
    user API; by default the host and port from settings.
    """
    registry = CollectorRegistry(auto_describe=True)
    metrics = ServiceMetrics(registry)
    generator_metrics = GeneratorMetrics(registry)
    tracer_provider = build_tracer_provider(settings)
    target = base_url or f"http://{_client_host(settings.host)}:{settings.port}"
    loop_lag = LoopLag(registry)

    shim = EmbeddedShim(settings, registry, tracer_provider, loop_lag) if embedded_shim else None

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        runtime = await Runtime.start(settings, metrics, tracer_provider, generator_metrics, target)
        app.state.runtime = runtime
        try:
            async with AsyncExitStack() as stack:
                await stack.enter_async_context(loop_lag.running())
                if shim is not None:
                    running = shim.running(runtime.dependencies())
                    app.state.exporter = await stack.enter_async_context(running)
                    feed = LiveFeed(app.state.exporter, shim.metrics)
                    app.state.feed = await stack.enter_async_context(feed.running())
                yield
        finally:
            await runtime.aclose()

    app = FastAPI(
        title="failure-lab simulator",
        version="0.1.0",
        lifespan=lifespan,
        telemetry={"tracing": False, "metrics": False, "logs": False},
        docs_url=None,  # served offline by install_home
        redoc_url=None,
    )
    app.state.registry = registry
    app.state.tracer_provider = tracer_provider
    app.state.exporter_shim = shim
    install_error_handlers(app)
    install_openapi(app, settings, document_shedding(settings.max_concurrent_requests))
    install_home(app, settings, "serve" if shim is not None else "simulator")
    _include_routes(app, registry, embedded_shim=shim is not None)
    app.add_middleware(
        OpenTelemetryMiddleware,
        excluded_urls=UNTRACED,
        default_span_details=_span_details,
        tracer_provider=tracer_provider,
        meter_provider=NoOpMeterProvider(),
        exclude_spans=["send", "receive"],
    )
    app.add_middleware(HeadAsGet)  # outside the tracing: a HEAD is traced as its GET
    admission = Admission(
        settings.max_concurrent_requests,
        metrics.count_shed,
        settings.shed_retry_after_seconds,
        hold_connection=settings.shed_hold_connection,
    )
    app.state.admission = admission  # asked by the server as each request arrives
    metrics.watch_in_flight(lambda: admission.in_flight, admission.limit)
    shedding = Middleware(ShedOverload, admission=admission)
    # Outermost: a refused request is not a traced one, and a shed one is not even read.
    install_guards(app, settings, workload=[shedding])
    return app


def _include_routes(app: FastAPI, registry: CollectorRegistry, *, embedded_shim: bool) -> None:
    for router in (users.router, control.router, statistics.router, jobs.router):
        app.include_router(router)
    app.include_router(disruptions.router)
    if embedded_shim:
        app.include_router(exporter_routes.router)  # /health* among them, Redis included
        app.include_router(topology_routes.router)
        app.include_router(feed_router)
    else:
        app.include_router(health_router(lambda request: runtime_of(request).health()))
    app.include_router(metrics_router(registry))


def _span_details(scope: Scope) -> tuple[str, dict[str, str]]:
    """The server span's first name and route; the user API's handlers rename it
    ``METHOD route`` and set the route, so only a request no handler took keeps these."""
    return f"{scope.get('method', 'HTTP')} {UNMATCHED}", {"http.route": UNMATCHED}


def _client_host(host: str) -> str:
    return "127.0.0.1" if host in ("0.0.0.0", "", "::") else host
