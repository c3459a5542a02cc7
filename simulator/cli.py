"""The ``failure-lab`` command line.

``serve`` is the embedded default: one process serving the simulated service and the
whole contract. ``simulator`` is the same service for the compose stack. ``demo`` runs
``serve`` with a scripted fault and a live terminal view. Every flag has a
``FAILURE_LAB_*`` variable; flags win.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Annotated, Any

import typer

from simulator.settings import Settings

app = typer.Typer(
    add_completion=False, no_args_is_help=True, help="A laboratory for distributed-systems failure."
)

Host = Annotated[str, typer.Option(envvar="FAILURE_LAB_HOST", help="Interface to bind.")]
RedisUrl = Annotated[
    str | None, typer.Option(envvar="FAILURE_LAB_REDIS_URL", help="Redis URL; turns Redis on.")
]


def _settings(**overrides: Any) -> Settings:
    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None


def _run(settings: Settings, role: str) -> None:
    from fastapi import FastAPI

    from simulator.server import server_for

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    app: FastAPI
    if role == "exporter":
        from exporter.app import MissingBackend, create_exporter_app

        try:
            app = create_exporter_app(settings)
        except MissingBackend as exc:
            raise typer.BadParameter(str(exc)) from None
    else:
        from simulator.app import create_app

        app = create_app(settings, embedded_shim=role == "serve")
    server = server_for(app, settings.host, settings.port, settings.shutdown_grace_seconds)
    asyncio.run(server.serve())


@app.command()
def serve(
    host: Host = "127.0.0.1",
    port: Annotated[int, typer.Option(envvar="FAILURE_LAB_PORT", help="Port.")] = 8000,
    redis_url: RedisUrl = None,
) -> None:
    """Embedded default: the simulated service and the whole contract on one port."""
    _run(_settings(host=host, port=port, redis_url=redis_url), "serve")


@app.command()
def simulator(
    host: Host = "127.0.0.1",
    port: Annotated[int, typer.Option(envvar="FAILURE_LAB_PORT", help="Port.")] = 8001,
    redis_url: RedisUrl = None,
) -> None:
    """The simulated service alone (user API, control API, /metrics), for the stack."""
    _run(_settings(host=host, port=port, redis_url=redis_url), "simulator")


@app.command()
def exporter(
    host: Host = "127.0.0.1",
    port: Annotated[int, typer.Option(envvar="FAILURE_LAB_PORT", help="Port.")] = 8000,
    prometheus_url: Annotated[
        str | None, typer.Option(envvar="FAILURE_LAB_PROMETHEUS_URL", help="Prometheus base URL.")
    ] = None,
    jaeger_url: Annotated[
        str | None, typer.Option(envvar="FAILURE_LAB_JAEGER_URL", help="Jaeger query base URL.")
    ] = None,
    simulator_url: Annotated[
        str | None,
        typer.Option(
            envvar="FAILURE_LAB_SIMULATOR_URL", help="Simulator base URL (control calls)."
        ),
    ] = None,
) -> None:
    """The stack-mode shim: the contract on :8000 from Prometheus, Jaeger and the simulator."""
    _run(
        _settings(
            host=host,
            port=port,
            prometheus_url=prometheus_url,
            jaeger_url=jaeger_url,
            simulator_url=simulator_url,
        ),
        "exporter",
    )


@app.command()
def demo(
    port: Annotated[int, typer.Option(envvar="FAILURE_LAB_PORT", help="Port.")] = 8000,
    seconds: Annotated[float, typer.Option(min=3, max=600, help="Length of the run.")] = 60,
    rps: Annotated[float, typer.Option(min=1, max=500, help="Steady request rate.")] = 50,
    redis_url: RedisUrl = None,
) -> None:
    """serve, plus a scripted fault (failures up, database slow, recovery) watched live."""
    from rich.console import Console

    from simulator.demo import run_demo

    logging.basicConfig(level=logging.WARNING)
    settings = _settings(host="127.0.0.1", port=port, redis_url=redis_url)
    raise typer.Exit(asyncio.run(run_demo(settings, seconds, rps, Console())))


def main() -> None:
    app()
