"""``failure-lab run FILE [--target URL]``: load, run, judge, report, and say so in the exit code.

Without ``--target`` the embedded default (``failure-lab serve``) is started in this process
on a free loopback port for the length of the run, so a scenario file is all it takes; with
``--target`` the run goes to a service already running: ``failure-lab serve``, or the
stack's shim on :8000, which forwards control calls to the simulator and reads Prometheus.
``--workers N`` splits each phase's job over N worker processes of the target; the embedded
default started here allows the N asked for (a target's own ``FAILURE_LAB_MAX_WORKERS``
bounds it there).

The file is checked whole first, with the embedded default's caps when it is the target (a
run never stops half-way on a cap); a target is asked whether it already runs jobs or
disruptions of someone else's, which would mix into the figures. The JSON report and an HTML
report beside it are written at the end, or, when the run is interrupted, with the phases
that finished.

Exit status: 0 every check passed, 1 a check failed, 2 the file is bad (the message names
the line), 3 the run could not be carried out (target down, a step refused), 130 interrupted.
``failure-lab validate`` reads the file the same way and prints its plan instead.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Literal, TextIO

import httpx
from rich.console import Console

from failure_lab.settings import Settings
from simulator.scenario import html_report
from simulator.scenario.catalog import UnknownScenario, scenario_path
from simulator.scenario.client import ContractClient, RunFailed, transport_words
from simulator.scenario.conditions import ServerConstants
from simulator.scenario.loader import ScenarioFileError, load_scenario
from simulator.scenario.plan import phase_plan
from simulator.scenario.report import RunReport
from simulator.scenario.runner import Interrupted, ScenarioRunner, exit_status
from simulator.scenario.spec import Scenario
from simulator.scenario.summary import print_summary
from simulator.scenario.view import WIDE, JsonView, LiveView, PlainView

BAD_FILE = 2
RUN_FAILED = 3
INTERRUPTED = 130
EMBEDDED_SETTLE_S = 2.0  # the embedded metrics ring samples every second
TARGET_SETTLE_S = 6.0  # one Prometheus scrape (5 s in the stack) and a margin
REQUEST_TIMEOUT_S = 30.0
Output = Literal["text", "json"]
PAIRS = {
    "slow-database-breaker": "slow-database-no-breaker",
    "slow-database-no-breaker": "slow-database-breaker",
}


def normalize_target(target: str) -> str:
    """``localhost:8000`` is ``http://localhost:8000``; a trailing slash is dropped."""
    given = target.strip().rstrip("/")
    if "://" not in given:
        given = f"http://{given}"
    try:
        url = httpx.URL(given)
    except httpx.InvalidURL:
        raise RunFailed(f"--target {target!r} is not a URL (e.g. http://127.0.0.1:8000)") from None
    if url.scheme not in ("http", "https") or not url.host:
        raise RunFailed(f"--target {target!r} is not an http:// URL (e.g. http://127.0.0.1:8000)")
    return given


def validate_file(file: str, overrides: Sequence[str], console: Console) -> int:
    """``failure-lab validate``: the file's problems, or its plan; the exit status."""
    settings = Settings()
    try:
        with scenario_path(file) as path:
            scenario = load_scenario(path, overrides=overrides, caps=settings)
    except (UnknownScenario, ScenarioFileError) as exc:
        console.print(f"[bold red]bad scenario file[/]\n{exc}", highlight=False, soft_wrap=True)
        return BAD_FILE
    console.print(
        f"{file}: valid: {len(scenario.phases)} phase(s), {scenario.total_seconds:g} s, "
        f"{len(scenario.checks)} check(s)",
        highlight=False,
    )
    server = ServerConstants.of(settings)
    for phase in scenario.phases:
        console.print(f"[bold]{phase.name}[/] ({phase.scenario}):")
        for line in phase_plan(scenario, phase, server):
            console.print(f"  {line}", highlight=False)
    return 0


def write_reports(report: RunReport, destination: Path, html: bool) -> list[Path]:
    destination.write_text(report.model_dump_json(indent=2) + "\n")
    paths = [destination]
    if html:
        page = destination.with_suffix(".html")
        page.write_text(html_report.render(report), encoding="utf-8")
        paths.append(page)
    return paths


def next_commands(report: RunReport, paths: list[Path]) -> list[str]:
    commands = [f"xdg-open {paths[1]}    # charts, predictions, traces; offline"] if len(
        paths
    ) > 1 else []  # fmt: skip
    pair = PAIRS.get(report.scenario)
    if pair is not None:
        commands.append(
            f"failure-lab run {pair} && failure-lab compare {paths[0]} {pair}-report.json"
        )
    else:
        commands.append(
            f"failure-lab compare {paths[0]} OTHER-report.json    # two runs side by side"
        )
    commands.append("failure-lab scenarios    # the other bundled experiments")
    return commands


async def run_file(
    path: Path,
    *,
    target: str | None,
    report_path: Path | None,
    settle_seconds: float | None,
    console: Console,
    settings: Settings | None = None,
    output: Output = "text",
    overrides: Sequence[str] = (),
    html: bool = True,
    out: TextIO | None = None,
    workers: int = 1,
) -> int:
    embedded = settings if settings is not None else Settings()
    if target is None and workers > embedded.max_workers:
        embedded = embedded.model_copy(update={"max_workers": workers})
    try:
        scenario = load_scenario(path, overrides=overrides, caps=None if target else embedded)
    except ScenarioFileError as exc:
        console.print(f"[bold red]bad scenario file[/]\n{exc}", highlight=False, soft_wrap=True)
        return BAD_FILE
    settle = settle_seconds
    if settle is None:
        settle = EMBEDDED_SETTLE_S if target is None else TARGET_SETTLE_S
    destination = report_path or Path(f"{scenario.name}-report.json")
    server = ServerConstants.of(embedded if target is None else Settings.model_construct())
    json_out = JsonView(out or sys.stdout) if output == "json" else None
    try:
        base_target = None if target is None else normalize_target(target)
        async with (
            _target(base_target, embedded) as base,
            httpx.AsyncClient(base_url=base, timeout=REQUEST_TIMEOUT_S) as http,
        ):
            client = ContractClient(http, base)
            await _introduce(console, json_out, client, scenario, target is None)
            report = await _run(
                console, json_out, client, scenario, str(path), server, settle, workers
            )
    except RunFailed as exc:
        if json_out is not None:
            json_out.emit("failed", message=str(exc))
        console.print(f"[bold red]run failed[/]: {exc}", highlight=False, soft_wrap=True)
        return RUN_FAILED
    except Interrupted as stop:
        _finish(console, json_out, stop.report, destination, html)
        return INTERRUPTED
    _finish(console, json_out, report, destination, html)
    return exit_status(report)


async def _introduce(
    console: Console, json_out: JsonView | None, client: ContractClient, scenario: Scenario,
    embedded: bool,
) -> None:  # fmt: skip
    where = "the embedded default (failure-lab serve, started here)" if embedded else client.target
    if json_out is not None:
        json_out.emit("run_started", scenario=scenario.name, target=client.target)
    else:
        console.print(
            f"[bold]{scenario.name}[/]: {len(scenario.phases)} phase(s), "
            f"{scenario.total_seconds:g} s, against {where}",
            highlight=False,
        )
        if scenario.description:
            console.print(" ".join(scenario.description.split()), highlight=False)
    if not embedded:
        for warning in await foreign_state(client):
            if json_out is not None:
                json_out.emit("warning", message=warning)
            console.print(f"[yellow]warning[/] {warning}", highlight=False)


async def _run(
    console: Console, json_out: JsonView | None, client: ContractClient, scenario: Scenario,
    source: str, server: ServerConstants, settle: float, workers: int,
) -> RunReport:  # fmt: skip
    wide = console.is_terminal and console.width >= WIDE
    view = json_out or (LiveView(console, scenario) if wide else PlainView(console, scenario))
    with view:
        runner = ScenarioRunner(
            scenario, client, view, source=source, server=server, settle_seconds=settle,
            workers=workers,
        )  # fmt: skip
        return await runner.run()


def _finish(
    console: Console, json_out: JsonView | None, report: RunReport, destination: Path, html: bool
) -> None:
    paths = write_reports(report, destination, html)
    if json_out is not None:
        json_out.emit(
            "result",
            verdict=report.verdict,
            checks=[c.model_dump(mode="json") for c in report.checks],
            conclusion=report.conclusion,
            reports=[str(p) for p in paths],
        )
        return
    print_summary(console, report, paths, next_commands(report, paths))


async def foreign_state(client: ContractClient) -> list[str]:
    """Jobs and disruptions already on the target: their load and faults mix into ours."""
    found: list[str] = []
    jobs = await client.json("/v1/traffic/jobs")
    running = [j for j in jobs or [] if j.get("status") == "running"]
    if running:
        named = ", ".join(f"{j['job_id'][:8]} at {j['rps']:g} req/s" for j in running[:3])
        found.append(
            f"{client.target} already runs {len(running)} job(s) not of this run ({named}): "
            "their requests count in the service's figures"
        )
    disruptions = await client.json("/v1/disruptions")
    if disruptions and disruptions.get("count"):
        kinds = ", ".join(d["type"] for d in disruptions["disruptions"][:3])
        found.append(
            f"{client.target} has {disruptions['count']} active disruption(s) not of this run "
            f"({kinds}): they act on this run's requests too"
        )
    return found


@contextlib.asynccontextmanager
async def _target(target: str | None, settings: Settings) -> AsyncIterator[str]:
    """The base URL to run against: ``target``, or the embedded default served here."""
    if target is not None:
        try:
            async with httpx.AsyncClient(timeout=5.0) as probe:
                await probe.get(f"{target}/health")
        except httpx.HTTPError as exc:
            raise RunFailed(transport_words(exc, target)) from None
        yield target
        return
    from simulator.app import create_app
    from simulator.server import free_port, serving

    port = free_port()
    chosen = settings.model_copy(update={"host": "127.0.0.1", "port": port})
    started = False
    try:
        async with serving(
            create_app(chosen), port, grace=chosen.shutdown_grace_seconds, own_signals=False
        ) as url:
            started = True
            yield url
    except RuntimeError as exc:
        if started:
            raise
        raise RunFailed(f"the embedded service: {exc}") from None
