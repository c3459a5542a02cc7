"""``failure-lab run FILE [--target URL]``: load, run, judge, report, and say so in the exit code.

Without ``--target`` the embedded default (``failure-lab serve``) is started in this process
on a free loopback port for the length of the run, so a scenario file is all it takes; with
``--target`` the run goes to a service already running: ``failure-lab serve``, or the
stack's shim on :8000, which forwards control calls to the simulator and reads Prometheus.

Exit status: 0 every check passed, 1 a check failed, 2 the file is bad (the message names
the line), 3 the run could not be carried out (target down, a step refused).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
from pydantic import ValidationError
from rich.console import Console

from failure_lab.contract import TraceResponse
from failure_lab.settings import Settings
from simulator.scenario.loader import ScenarioFileError, load_scenario
from simulator.scenario.report import RunReport
from simulator.scenario.runner import RunFailed, ScenarioRunner, exit_status
from simulator.scenario.view import LiveView, print_report, print_trace

BAD_FILE = 2
RUN_FAILED = 3
EMBEDDED_SETTLE_S = 2.0  # the embedded metrics ring samples every second
TARGET_SETTLE_S = 6.0  # one Prometheus scrape (5 s in the stack) and a margin
REQUEST_TIMEOUT_S = 30.0


async def run_file(
    path: Path,
    *,
    target: str | None,
    report_path: Path | None,
    settle_seconds: float | None,
    console: Console,
    settings: Settings | None = None,
) -> int:
    try:
        scenario = load_scenario(path)
    except ScenarioFileError as exc:
        console.print(f"[bold red]bad scenario file[/] {exc}", highlight=False, soft_wrap=True)
        return BAD_FILE
    settle = settle_seconds
    if settle is None:
        settle = EMBEDDED_SETTLE_S if target is None else TARGET_SETTLE_S
    destination = report_path or Path(f"{scenario.name}-report.json")
    try:
        async with (
            _target(target, settings) as base,
            httpx.AsyncClient(base_url=base, timeout=REQUEST_TIMEOUT_S) as http,
        ):
            where = "the embedded default" if target is None else base
            console.print(
                f"[bold]{scenario.name}[/]: {len(scenario.phases)} phase(s), "
                f"{scenario.total_seconds:g}s, against {where}"
            )
            with LiveView(console, scenario) as view:
                runner = ScenarioRunner(
                    scenario, http, view, source=str(path), target=base, settle_seconds=settle
                )
                report = await runner.run()
            destination.write_text(report.model_dump_json(indent=2) + "\n")
            print_report(console, report)
            await _show_a_failure(console, http, report)
    except RunFailed as exc:
        console.print(f"[bold red]run failed[/]: {exc}", highlight=False, soft_wrap=True)
        return RUN_FAILED
    console.print(f"report: {destination}")
    return exit_status(report)


async def _show_a_failure(console: Console, http: httpx.AsyncClient, report: RunReport) -> None:
    """The trace of the most recent failed request, if any (best effort: traces may be
    sampled, still in flight to Jaeger, or evicted)."""
    failed = [i for phase in report.phases for i in phase.generator.failed_request_ids]
    if not failed:
        return
    with contextlib.suppress(httpx.HTTPError, ValidationError):
        answer = await http.get(f"/v1/trace/{failed[-1]}")
        if answer.status_code == 200:
            trace = TraceResponse.model_validate_json(answer.content)
            print_trace(console, failed[-1], trace)


@contextlib.asynccontextmanager
async def _target(target: str | None, settings: Settings | None) -> AsyncIterator[str]:
    """The base URL to run against: ``target``, or the embedded default served here."""
    if target is not None:
        yield target.rstrip("/")
        return
    from simulator.app import create_app
    from simulator.server import free_port, serving

    port = free_port()
    base = settings if settings is not None else Settings()
    chosen = base.model_copy(update={"host": "127.0.0.1", "port": port})
    started = False
    try:
        async with serving(create_app(chosen), port, grace=chosen.shutdown_grace_seconds) as url:
            started = True
            yield url
    except RuntimeError as exc:
        if started:
            raise
        raise RunFailed(f"the embedded service: {exc}") from None
