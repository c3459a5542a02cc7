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


def _run(settings: Settings) -> None:
    from simulator.app import create_app
    from simulator.server import server_for

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    server = server_for(
        create_app(settings), settings.host, settings.port, settings.shutdown_grace_seconds
    )
    asyncio.run(server.serve())


@app.command()
def serve(
    host: Host = "127.0.0.1",
    port: Annotated[int, typer.Option(envvar="FAILURE_LAB_PORT", help="Port.")] = 8000,
    redis_url: RedisUrl = None,
) -> None:
    """Embedded default: the simulated service and the whole contract on one port."""
    _run(_settings(host=host, port=port, redis_url=redis_url))


@app.command()
def simulator(
    host: Host = "127.0.0.1",
    port: Annotated[int, typer.Option(envvar="FAILURE_LAB_PORT", help="Port.")] = 8001,
    redis_url: RedisUrl = None,
) -> None:
    """The simulated service alone (user API, control API, /metrics), for the stack."""
    _run(_settings(host=host, port=port, redis_url=redis_url))


def main() -> None:
    app()
