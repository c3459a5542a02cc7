"""The terminal while ``failure-lab run`` runs: what each phase will do, then how it goes.

Three observers of the runner, one per kind of reader:

- ``LiveView``, a wide terminal: each phase's plan in words as it starts, then one row per
  phase that stays put, with the same columns running and finished (sent/target rate, error
  %, retry amplification, service p99, client p99), and the generator's trouble as a warning
  line with its count;
- ``PlainView``, a narrow terminal or a pipe (CI): the same figures as plain lines, one per
  phase every ``PLAIN_EVERY_S`` seconds and one when it ends, so a log shows progress;
- ``JsonView`` (``--output json``): one JSON object per line per event, for programs.

The figures come from the sampler (``Live``) and the job's own events; the report's
summary at the end is ``summary.py``.
"""

from __future__ import annotations

import dataclasses
import json
import time
from typing import Any, TextIO

from rich.console import Console, Group
from rich.live import Live as RichLive
from rich.table import Table
from rich.text import Text

from failure_lab.control import Job, JobSummary
from failure_lab.topology import Topology
from simulator.scenario.conclude import LATE_SHARE, ms, pct, times
from simulator.scenario.sampler import Live
from simulator.scenario.spec import Phase, Scenario
from simulator.scenario.topology_view import topology_lines

LINE_STYLES = {"✖": "red", "▲": "yellow"}

PLAIN_EVERY_S = 5.0
WIDE = 100


def _rate(sent: float, target: float) -> str:
    return f"{sent:.0f}/{target:.0f}"


def live_trouble(figures: Live) -> str | None:
    """The generator's trouble so far, with its counts (None when it keeps up)."""
    parts = []
    if figures.dropped:
        parts.append(f"dropped {figures.dropped:,} requests at its in-flight bound")
    if figures.sent and figures.late_sends > LATE_SHARE * figures.sent:
        parts.append(f"sent {figures.late_sends:,} of {figures.sent:,} late")
    if not parts:
        return None
    return f"the generator {' and '.join(parts)} so far"


class LiveView:
    """An ``Observer`` for a wide terminal: a table of phases that updates in place."""

    def __init__(self, console: Console, scenario: Scenario) -> None:
        self._console = console
        self._scenario = scenario
        self._rows: dict[int, list[str]] = {}
        self._warnings: list[str] = []
        self._live = RichLive(console=console, auto_refresh=False, transient=False)

    def __enter__(self) -> LiveView:
        self._live.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._live.stop()

    def _render(self) -> Group:
        table = Table(box=None, padding=(0, 1), header_style="bold")
        for header, justify in (
            ("phase", "left"), ("time", "right"), ("req/s sent/target", "right"),
            ("errors", "right"), ("retries", "right"), ("service p99", "right"),
            ("client p99", "right"), ("", "left"),
        ):  # fmt: skip
            table.add_column(header, justify=justify, no_wrap=True)  # type: ignore[arg-type]
        for index, phase in enumerate(self._scenario.phases):
            row = self._rows.get(index) or [
                phase.name,
                f"0/{phase.seconds:g}s",
                "",
                "",
                "",
                "",
                "",
                "[dim]waiting[/]",
            ]
            table.add_row(*row)
        warnings = [
            Text(f"warning: {w}", style="yellow", no_wrap=False, overflow="fold")
            for w in self._warnings[-3:]
        ]
        return Group(table, *warnings)

    def _refresh(self) -> None:
        self._live.update(self._render(), refresh=True)

    def phase_started(self, index: int, phase: Phase, job: Job, plan: list[str]) -> None:
        self._console.print(f"[bold]{phase.name}[/] ({phase.scenario}):")
        for line in plan:
            self._console.print(f"  {line}", highlight=False)
        self._rows[index] = [phase.name, f"0/{phase.seconds:g}s", "", "", "", "", "", "running"]
        self._refresh()

    def job_update(self, index: int, phase: Phase, job: Job) -> None:
        return None  # the sampler's figures drive the row, at a pace one can read

    def live(self, index: int, phase: Phase, figures: Live) -> None:
        elapsed = min(phase.seconds, figures.elapsed)
        self._rows[index] = [
            phase.name, f"{elapsed:.0f}/{phase.seconds:g}s",
            _rate(figures.sent_rps, figures.target_rps), pct(figures.error_rate),
            times(figures.retry_amplification), ms(figures.service_p99_ms),
            ms(figures.client_p99_ms), "running",
        ]  # fmt: skip
        trouble = live_trouble(figures)
        self._warnings = [w for w in self._warnings if not w.startswith(f"{phase.name}:")]
        if trouble:
            self._warnings.append(f"{phase.name}: {trouble}")
        self._refresh()

    def phase_finished(
        self, index: int, phase: Phase, summary: JobSummary, warnings: list[str]
    ) -> None:
        row = self._rows.get(index, [phase.name] + [""] * 7)
        row[1] = f"{phase.seconds:g}/{phase.seconds:g}s"
        row[2] = _rate(summary.achieved_rps, summary.planned / phase.seconds)
        row[6] = ms(summary.latency_ms.p99)
        row[7] = "[green]done[/]" if not warnings else "[yellow]done, see warning[/]"
        self._rows[index] = row
        self._warnings = [w for w in self._warnings if not w.startswith(f"{phase.name}:")]
        self._warnings += [f"{phase.name}: {w}" for w in warnings]
        self._refresh()

    def note(self, text: str) -> None:
        self._console.print(f"[yellow]disruption[/] {text}", highlight=False)

    def topology(self, phase: str, topology: Topology) -> None:
        console = self._console
        seconds = topology.window_seconds
        console.print(f"[bold]{phase}[/]: where failures enter, over {seconds:.0f} s")
        for line in topology_lines(topology, console.width):
            console.print(line, markup=False, highlight=False, style=LINE_STYLES.get(line[:1]))


class PlainView:
    """An ``Observer`` for a narrow terminal or a pipe: plain lines, a few per phase."""

    def __init__(self, console: Console, scenario: Scenario) -> None:
        self._console = console
        self._next = 0.0

    def __enter__(self) -> PlainView:
        return self

    def __exit__(self, *_: object) -> None:
        return None

    def _say(self, text: str) -> None:
        self._console.print(text, markup=False, highlight=False, soft_wrap=True)

    def phase_started(self, index: int, phase: Phase, job: Job, plan: list[str]) -> None:
        self._say(f"{phase.name} ({phase.scenario}):")
        for line in plan:
            self._say(f"  {line}")
        self._next = time.monotonic() + PLAIN_EVERY_S

    def job_update(self, index: int, phase: Phase, job: Job) -> None:
        return None

    def live(self, index: int, phase: Phase, figures: Live) -> None:
        if time.monotonic() < self._next:
            return
        self._next = time.monotonic() + PLAIN_EVERY_S
        self._say(
            f"  {phase.name} {min(figures.elapsed, phase.seconds):.0f}/{phase.seconds:g}s: "
            f"{_rate(figures.sent_rps, figures.target_rps)} req/s, errors "
            f"{pct(figures.error_rate)}, retries {times(figures.retry_amplification)}, "
            f"service p99 {ms(figures.service_p99_ms)}, client p99 {ms(figures.client_p99_ms)}"
        )
        trouble = live_trouble(figures)
        if trouble:
            self._say(f"  warning: {trouble}")

    def phase_finished(
        self, index: int, phase: Phase, summary: JobSummary, warnings: list[str]
    ) -> None:
        self._say(
            f"  {phase.name} done: {summary.sent} sent at {summary.achieved_rps:.1f} req/s, "
            f"{summary.failed} failed, client p99 {ms(summary.latency_ms.p99)}"
        )
        for warning in warnings:
            self._say(f"  warning: {warning}")

    def note(self, text: str) -> None:
        self._say(f"  disruption {text}")

    def topology(self, phase: str, topology: Topology) -> None:
        self._say(f"  {phase}: where failures enter, over {topology.window_seconds:.0f} s")
        for line in topology_lines(topology, self._console.width):
            self._say(f"  {line}")


class JsonView:
    """An ``Observer`` writing one JSON object per line (``--output json``)."""

    def __init__(self, out: TextIO) -> None:
        self._out = out

    def __enter__(self) -> JsonView:
        return self

    def __exit__(self, *_: object) -> None:
        return None

    def emit(self, event: str, **fields: Any) -> None:
        self._out.write(json.dumps({"event": event, **fields}, default=str) + "\n")
        self._out.flush()

    def phase_started(self, index: int, phase: Phase, job: Job, plan: list[str]) -> None:
        self.emit(
            "phase_started", phase=phase.name, job_id=job.job_id, workers=job.workers, plan=plan
        )

    def job_update(self, index: int, phase: Phase, job: Job) -> None:
        return None

    def live(self, index: int, phase: Phase, figures: Live) -> None:
        self.emit("progress", phase=phase.name, **dataclasses.asdict(figures))

    def phase_finished(
        self, index: int, phase: Phase, summary: JobSummary, warnings: list[str]
    ) -> None:
        self.emit(
            "phase_finished",
            phase=phase.name,
            summary=summary.model_dump(mode="json", exclude={"slowest", "failed_request_ids"}),
            warnings=warnings,
        )

    def note(self, text: str) -> None:
        self.emit("disruption", text=text)

    def topology(self, phase: str, topology: Topology) -> None:
        self.emit("topology", phase=phase, topology=topology.model_dump(mode="json"))
