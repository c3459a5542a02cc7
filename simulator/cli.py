"""The ``failure-lab`` command line.

``serve`` is the embedded default: one process serving the simulated service and the
whole contract. ``simulator`` is the same service for the compose stack. ``run`` runs a
scenario file (or a bundled one, by name) against either and judges it; ``demo`` is ``run``
on the bundled demo; ``scenarios`` lists the bundled ones; ``validate`` checks a file without
running it; ``report`` and ``compare`` work with the reports runs leave. Server flags have
``FAILURE_LAB_*`` variables; flags win. Each command's docstring opens with one line, which
is what the command list shows.
"""

from __future__ import annotations

import asyncio
import logging
from importlib.metadata import version as installed_version
from pathlib import Path
from typing import Annotated, Any, Literal

import typer

from failure_lab.settings import Settings

app = typer.Typer(
    add_completion=True,
    no_args_is_help=True,
    help="A laboratory for distributed-systems failure.",
    context_settings={"help_option_names": ["-h", "--help"]},
)

DEMO_SCENARIO = "demo"
MAX_WORKERS_FLAG = 64
"""A sanity bound on ``run --workers``: the embedded default allows what the flag asks."""

Host = Annotated[str, typer.Option(envvar="FAILURE_LAB_HOST", help="Interface to bind.")]
RedisUrl = Annotated[
    str | None, typer.Option(envvar="FAILURE_LAB_REDIS_URL", help="Redis URL; turns Redis on.")
]


def _version(value: bool) -> None:
    if value:
        typer.echo(f"failure-lab {installed_version('failure-lab')}")
        raise typer.Exit()


@app.callback()
def main_options(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """A laboratory for distributed-systems failure."""


def _console(stderr: bool = False) -> Any:
    """A console that never breaks a line itself: a pipe or a log keeps sentences whole, and
    a terminal wraps them at its own width."""
    from rich.console import Console

    return Console(stderr=stderr, soft_wrap=True)


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
    server = server_for(
        app,
        settings.host,
        settings.port,
        settings.shutdown_grace_seconds,
        gc_young_threshold=settings.gc_young_threshold,
    )
    server.run()  # on the loop its config names (uvloop), which asyncio.run would not use


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


Overrides = Annotated[
    list[str] | None,
    typer.Option(
        "--set",
        help="Change a value of the file for this run: KEY=VALUE, e.g. "
        "phases.outage.duration=20s or phases[0].max_rps=40; repeat for more.",
    ),
]
OutputMode = Annotated[
    str,
    typer.Option(
        "--output",
        help="text: the live view (plain lines when not a wide terminal); json: one JSON "
        "object per line, for programs.",
    ),
]
ScenarioFile = Annotated[
    str,
    typer.Argument(
        help="A scenario file (YAML), or the name of a bundled one (failure-lab scenarios); "
        "the format is in docs/scenarios.md."
    ),
]


@app.command()
def run(
    file: ScenarioFile,
    target: Annotated[
        str | None,
        typer.Option(
            help="Base URL of a running service (failure-lab serve, or the stack's shim on "
            ":8000; http:// is assumed); default: the embedded default, started here."
        ),
    ] = None,
    report: Annotated[
        Path | None,
        typer.Option(
            help="Where to write the JSON report (the HTML one goes beside it); "
            "default NAME-report.json."
        ),
    ] = None,
    settle: Annotated[
        float | None,
        typer.Option(
            min=0,
            max=120,
            help="Seconds to wait after a phase for the metrics source to sample it "
            "(default 2 embedded, 6 with --target: one 5 s Prometheus scrape).",
        ),
    ] = None,
    overrides: Overrides = None,
    output: OutputMode = "text",
    html: Annotated[bool, typer.Option(help="Also write the HTML report.")] = True,
    workers: Annotated[
        int,
        typer.Option(
            min=1,
            max=MAX_WORKERS_FLAG,
            help="Worker processes each phase's traffic is split over, for rates one core "
            "cannot send (about 4,000 req/s); a --target allows at most its "
            "FAILURE_LAB_MAX_WORKERS.",
        ),
    ] = 1,
) -> None:
    """Run a scenario, watch it live, and judge it.

    Exit status: 0 every check passed, 1 one failed, 2 a bad file, 3 the run could not be
    carried out, 130 interrupted (a report of the finished phases is still written).
    """
    raise typer.Exit(
        _run_scenario(file, target, report, settle, overrides or [], _output(output), html, workers)
    )


@app.command()
def demo(
    report: Annotated[Path, typer.Option(help="Where to write the JSON report.")] = Path(
        "demo-report.json"
    ),
    output: OutputMode = "text",
) -> None:
    """The bundled demo: a minute of traffic through a database fault, about 70 s.

    Watched live, then judged, with a JSON and an HTML report (demo-report.html).
    """
    raise typer.Exit(_run_scenario(DEMO_SCENARIO, None, report, None, [], _output(output), True))


@app.command()
def scenarios(
    show: Annotated[
        str | None, typer.Option(help="Print this bundled scenario's file, to copy and edit.")
    ] = None,
) -> None:
    """The bundled scenarios: run one with `failure-lab run NAME`."""
    from rich.table import Table

    from simulator.scenario.catalog import bundled

    catalog = bundled()
    console = _console()
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
    console.print(table, soft_wrap=False)
    console.print("Run one with `failure-lab run NAME`; copy one with `--show NAME`.")


@app.command()
def validate(
    file: ScenarioFile,
    overrides: Overrides = None,
) -> None:
    """Check a scenario file without running it: every problem in one pass.

    Field types, the rules across fields and the caps of the embedded default (from the
    FAILURE_LAB_* settings); exit 0 when the file is good, 2 otherwise.
    """
    from simulator.scenario.session import validate_file

    raise typer.Exit(validate_file(file, overrides or [], _console()))


@app.command("report")
def report_command(
    run_report: Annotated[Path, typer.Argument(help="A JSON report written by failure-lab run.")],
    html: Annotated[
        Path | None, typer.Option(help="Where to write the HTML report; default beside the JSON.")
    ] = None,
) -> None:
    """Show a run's report again, and write its HTML report."""

    from simulator.scenario import html_report
    from simulator.scenario.summary import print_summary

    loaded = _load_report(run_report)
    page = html or run_report.with_suffix(".html")
    page.write_text(html_report.render(loaded), encoding="utf-8")
    print_summary(_console(), loaded, [run_report, page], [])


@app.command()
def compare(
    first: Annotated[Path, typer.Argument(help="Report A (JSON, from failure-lab run).")],
    second: Annotated[Path, typer.Argument(help="Report B.")],
    html: Annotated[
        Path | None, typer.Option(help="Also write the comparison as an HTML page here.")
    ] = None,
) -> None:
    """Two runs phase by phase: what changed, and by how much."""

    from simulator.scenario import compare as comparing

    a, b = _load_report(first), _load_report(second)
    paths = (str(first), str(second))
    comparing.print_compare(_console(), a, b, paths)
    if html is not None:
        html.write_text(comparing.render(a, b, paths), encoding="utf-8")
        typer.echo(f"report: {html}")


def _output(value: str) -> Literal["text", "json"]:
    if value not in ("text", "json"):
        raise typer.BadParameter(f"{value!r}: choose text or json", param_hint="--output")
    return "json" if value == "json" else "text"


def _load_report(path: Path) -> Any:
    from pydantic import ValidationError

    from simulator.scenario.report import RunReport

    try:
        return RunReport.model_validate_json(path.read_bytes())
    except OSError as exc:
        typer.echo(f"{path}: {exc.strerror or exc}", err=True)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        typer.echo(f"{path} is not a failure-lab run report ({where}: {first['msg']})", err=True)
    raise typer.Exit(2)


def _run_scenario(
    file: str,
    target: str | None,
    report: Path | None,
    settle: float | None,
    overrides: list[str],
    output: Literal["text", "json"],
    html: bool,
    workers: int = 1,
) -> int:
    import sys

    from simulator.scenario.catalog import UnknownScenario, scenario_path
    from simulator.scenario.session import BAD_FILE, INTERRUPTED, run_file

    logging.basicConfig(level=logging.WARNING)
    # With --output json, stdout is the JSON lines; words go to stderr.
    console = _console(stderr=output == "json")
    try:
        with scenario_path(file) as path:
            return asyncio.run(
                run_file(
                    path,
                    target=target,
                    report_path=report,
                    settle_seconds=settle,
                    console=console,
                    output=output,
                    overrides=overrides,
                    html=html,
                    out=sys.stdout,
                    workers=workers,
                )
            )
    except UnknownScenario as exc:
        console.print(f"[bold red]bad scenario file[/] {exc}", highlight=False, soft_wrap=True)
        return BAD_FILE
    except KeyboardInterrupt:
        console.print("interrupted before any phase finished: nothing to report")
        return INTERRUPTED


def main() -> None:
    app()
