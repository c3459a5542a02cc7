"""The terminal side of ``failure-lab run``: a progress bar per phase, then the verdict.

While a phase runs, its bar shows the job's own figures as its event stream reports them
(rate now against the rate asked, failures, mean latency, the shape's phase); disruptions
are printed as they start. At the end: a table per phase from the report, the checks with
their verdicts, where to find the slowest and failed requests, and one failed request's
trace, so the first thing to look at is on screen.
"""

from __future__ import annotations

import time

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn
from rich.table import Table

from failure_lab.contract import TraceResponse
from failure_lab.control import Job, JobSummary
from failure_lab.topology import Topology
from simulator.scenario.report import RunReport
from simulator.scenario.spec import Phase, Scenario
from simulator.scenario.topology_view import topology_lines

LINE_STYLES = {"✖": "red", "▲": "yellow"}


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


class LiveView:
    """An ``Observer`` drawing one progress bar per phase."""

    def __init__(self, console: Console, scenario: Scenario) -> None:
        self._console = console
        self._progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(bar_width=30),
            TextColumn("{task.fields[clock]}"),
            TextColumn("{task.fields[figures]}"),
            console=console,
        )
        self._tasks: list[TaskID] = [
            self._progress.add_task(
                f"{phase.name} [dim]({phase.scenario})[/]",
                total=phase.seconds,
                start=False,
                clock="",
                figures="",
            )
            for phase in scenario.phases
        ]
        self._began = 0.0

    def __enter__(self) -> LiveView:
        self._progress.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._progress.stop()

    def phase_started(self, index: int, phase: Phase, job: Job) -> None:
        self._began = time.monotonic()
        self._progress.start_task(self._tasks[index])

    def job_update(self, index: int, phase: Phase, job: Job) -> None:
        elapsed = min(phase.seconds, time.monotonic() - self._began)
        stats = job.stats
        shape = f"  [dim]{job.phase}[/]" if job.phase else ""
        colour = "red" if stats.failed else "green"
        self._progress.update(
            self._tasks[index],
            completed=elapsed,
            clock=f"{elapsed:5.1f}/{phase.seconds:g}s",
            figures=(
                f"{stats.current_rps:6.0f}/{stats.target_rps:.0f} req/s  "
                f"[{colour}]{stats.failed} failed[/] of {stats.total}  "
                f"avg {_ms(stats.avg_latency_ms)} ms{shape}"
            ),
        )

    def phase_finished(self, index: int, phase: Phase, summary: JobSummary) -> None:
        self._progress.update(
            self._tasks[index],
            completed=phase.seconds,
            clock=f"{phase.seconds:5.1f}/{phase.seconds:g}s",
            figures=(
                f"{summary.achieved_rps:6.1f} req/s achieved  {summary.failed} failed of "
                f"{summary.sent}  p99 {_ms(summary.latency_ms.p99)} ms"
            ),
        )
        self._progress.stop_task(self._tasks[index])

    def note(self, text: str) -> None:
        self._progress.console.print(f"[yellow]disruption[/] {text}")

    def topology(self, phase: str, topology: Topology) -> None:
        console = self._progress.console
        seconds = topology.window_seconds
        console.print(f"[bold]{phase}[/]: where failures enter, over {seconds:.0f} s")
        for line in topology_lines(topology, console.width):
            console.print(line, markup=False, highlight=False, style=LINE_STYLES.get(line[:1]))


def print_report(console: Console, report: RunReport) -> None:
    phases = Table(title=f"{report.scenario}: per phase", title_justify="left")
    for column in (
        "phase",
        "req/s asked/got",
        "sent",
        "errors",
        "p95/p99 ms",
        "retries",
        "client p99 ms (CO-corrected/not)",
    ):
        phases.add_column(column, justify="right")
    for phase in report.phases:
        service, generator = phase.service, phase.generator
        phases.add_row(
            phase.name,
            f"{phase.rps:g}/{generator.achieved_rps:.1f}",
            str(generator.sent),
            _ratio(service.error_rate),
            f"{_ms(service.p95_ms)}/{_ms(service.p99_ms)}",
            "-" if service.retry_amplification is None else f"{service.retry_amplification:.2f}x",
            f"{_ms(generator.latency_ms.p99)}/{_ms(generator.service_latency_ms.p99)}",
        )
    console.print(phases)
    console.print(
        "[dim]error rate, p95/p99 and retries: the service's, from the metrics source "
        "(/metrics/json) over each phase; client latency: the generator's, exact[/]"
    )
    if report.checks:
        checks = Table(title="checks", title_justify="left")
        checks.add_column("verdict")
        checks.add_column("check")
        for check in report.checks:
            mark = "[green]PASS[/]" if check.passed else "[bold red]FAIL[/]"
            checks.add_row(mark, check.message)
        console.print(checks)
    slowest = sorted(
        ((slow.latency_ms, slow.request_id, phase.name) for phase in report.phases
         for slow in phase.generator.slowest),
        reverse=True,
    )[:3]  # fmt: skip
    for latency, request_id, name in slowest:
        console.print(f"slowest: {request_id} ({latency:.1f} ms, {name})")
    failed = [(p.name, i) for p in report.phases for i in p.generator.failed_request_ids[-2:]]
    for name, request_id in failed[:6]:
        console.print(f"failed:  {request_id} ({name})")
    passed = sum(1 for check in report.checks if check.passed)
    colour = "green" if report.verdict == "pass" else "bold red"
    console.print(
        f"[{colour}]verdict: {report.verdict.upper()}[/] "
        f"({passed}/{len(report.checks)} checks passed)"
    )


def print_trace(console: Console, request_id: str, trace: TraceResponse) -> None:
    """One request's trace as ``GET /v1/trace/{request_id}`` returns it."""
    events = Table(title=f"trace of {request_id} (GET /v1/trace/{{request_id}})")
    for column in ("time", "event", "details"):
        events.add_column(column)
    for event in trace.trace.events:
        details = {k: v for k, v in event.metadata.items() if k not in ("span_id", "span")}
        events.add_row(
            event.timestamp_wall[11:23],
            event.event_type,
            ", ".join(f"{k}={v}" for k, v in details.items()),
        )
    console.print(events)
