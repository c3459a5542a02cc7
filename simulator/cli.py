"""The ``failure-lab`` command line.

``serve`` is the embedded default: one process serving the simulated service and the
whole contract. ``simulator`` is the same service for the compose stack. ``run`` runs a
scenario file (or a bundled one, by name) against either and judges it; ``demo`` is ``run``
on the bundled demo; ``scenarios`` lists the bundled ones. Server flags have
``FAILURE_LAB_*`` variables; flags win.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Annotated, Any

import typer

from failure_lab.settings import Settings

app = typer.Typer(
    add_completion=False, no_args_is_help=True, help="A laboratory for distributed-systems failure."
)

DEMO_SCENARIO = "demo"

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
def run(
    file: Annotated[
        str,
        typer.Argument(
            help="A scenario file (YAML), or the name of a bundled one (failure-lab scenarios); "
            "the format is in docs/scenarios.md."
        ),
    ],
    target: Annotated[
        str | None,
        typer.Option(
            help="Base URL of a running service (failure-lab serve, or the stack's shim on "
            ":8000); default: the embedded default, started here for the run."
        ),
    ] = None,
    report: Annotated[
        Path | None, typer.Option(help="Where to write the JSON report; default NAME-report.json.")
    ] = None,
    settle: Annotated[
        float | None,
        typer.Option(
            min=0,
            max=120,
            help="Seconds to wait after the last phase for the metrics source to sample it "
            "(default 2 embedded, 6 with --target: one 5 s Prometheus scrape).",
        ),
    ] = None,
) -> None:
    """Run a scenario file, watch it live, and judge it: exit 0 when every check passes,
    1 when one fails, 2 for a bad file, 3 when the run cannot be carried out."""
    raise typer.Exit(_run_scenario(file, target, report, settle))


@app.command()
def demo(
    report: Annotated[Path, typer.Option(help="Where to write the JSON report.")] = Path(
        "demo-report.json"
    ),
) -> None:
    """The embedded default through a one-minute database fault (the bundled demo),
    watched live, with its verdict, report, and one failed request's trace."""
    raise typer.Exit(_run_scenario(DEMO_SCENARIO, None, report, None))


@app.command()
def scenarios(
    show: Annotated[
        str | None, typer.Option(help="Print this bundled scenario's file, to copy and edit.")
    ] = None,
) -> None:
    """The bundled scenarios: run one with `failure-lab run NAME`."""
    from rich.console import Console
    from rich.table import Table

    from simulator.scenario.catalog import bundled

    catalog = bundled()
    console = Console()
    if show is not None:
        entry = catalog.get(show.removesuffix(".yaml"))
        if entry is None:
            raise typer.BadParameter(f"no bundled scenario {show!r}; see failure-lab scenarios")
        console.print(entry.text(), end="", markup=False, highlight=False, soft_wrap=True)
        return
    table = Table(box=None, show_header=False, padding=(0, 2, 1, 0))
    table.add_column(no_wrap=True, style="bold")
    table.add_column()
    for entry in catalog.values():
        table.add_row(entry.name, entry.description)
    console.print(table)
    console.print("Run one with `failure-lab run NAME`; copy one with `--show NAME`.")


def _run_scenario(file: str, target: str | None, report: Path | None, settle: float | None) -> int:
    from rich.console import Console

    from simulator.scenario.catalog import UnknownScenario, scenario_path
    from simulator.scenario.session import BAD_FILE, run_file

    logging.basicConfig(level=logging.WARNING)
    console = Console()
    try:
        with scenario_path(file) as path:
            return asyncio.run(
                run_file(
                    path, target=target, report_path=report, settle_seconds=settle, console=console
                )
            )
    except UnknownScenario as exc:
        console.print(f"[bold red]bad scenario file[/] {exc}", highlight=False, soft_wrap=True)
        return BAD_FILE
    except KeyboardInterrupt:
        console.print("interrupted: the job was stopped and the service restored")
        return 130


def main() -> None:
    app()
