"""The end of ``failure-lab run`` (and ``failure-lab report``) on the terminal.

Ordered so that the answer is what stays on screen: the figures per phase, the model's
predictions beside them, the traces worth opening, the generator's warnings and the
conclusion in words; then each check with its figure and a tick or a cross; then, as the very
last lines, the verdict in words, where the reports are, and what to run next. Lines stay
within 80 columns so a small terminal keeps them whole.
"""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.markup import escape

from simulator.scenario.conclude import ms, pct, times
from simulator.scenario.report import Prediction, RunReport

TICK, CROSS = "✓", "✗"


def _number(value: float | None, figure: str) -> str:
    if value is None:
        return "-"
    if figure in ("error_rate", "rate_limited_fraction", "cache_hit_ratio"):
        return f"{value:.1%}"
    if figure == "breaker_open_seconds":
        return f"{value:.1f}s"
    return f"{value:.3g}x" if figure == "retry_amplification" else f"{value:.3g}"


def prediction_line(phase: str, p: Prediction) -> str:
    mark = "" if p.agrees is None else (f" [green]{TICK}[/]" if p.agrees else f" [red]{CROSS}[/]")
    measured = _number(p.measured, p.figure)
    bar = "" if not p.error_bar else f" ±{_number(p.error_bar, p.figure)}"
    return (
        f"  {phase:<10} {p.figure:<22} {_number(p.predicted, p.figure):>8} {measured:>8}{bar}{mark}"
    )


def print_figures(console: Console, report: RunReport) -> None:
    say = console.print
    say("[bold]per phase[/] (service: /metrics/json over the phase; client: the generator)")
    say(
        f"  {'phase':<10} {'req/s sent/asked':>16} {'errors':>7} {'retries':>7} "
        f"{'p99':>8} {'client p99 co/not':>19}"
    )
    for phase in report.phases:
        s, g = phase.service, phase.generator
        client = f"{ms(g.latency_ms.p99)}/{ms(g.service_latency_ms.p99)}"
        say(
            f"  {phase.name:<10} {f'{g.achieved_rps:.1f}/{phase.rps:g}':>16} "
            f"{pct(s.error_rate):>7} {times(s.retry_amplification):>7} {ms(s.p99_ms):>8} "
            f"{client:>19}",
            highlight=False,
        )
    predictions = [(ph.name, p) for ph in report.phases for p in ph.predictions]
    if predictions:
        say("[bold]the model against the measurement[/] (formulas in the report)")
        say(f"  {'phase':<10} {'figure':<22} {'model':>8} {'measured':>8}")
        for name, prediction in predictions:
            if prediction.measured is not None or prediction.figure != "cache_hit_ratio":
                say(prediction_line(name, prediction), highlight=False)


def print_traces(console: Console, report: RunReport) -> None:
    traces = [t for phase in report.phases for t in phase.traces]
    if not traces:
        return
    console.print("[bold]traces[/] (Jaeger's trace id; in the HTML report as waterfalls)")
    for trace in traces[:6]:
        latency = trace.trace.trace.total_latency_ms
        console.print(
            f"  {trace.why:<8} {trace.phase:<10} {ms(latency):>8}  {trace.trace_id}",
            highlight=False,
        )


def print_verdict(console: Console, report: RunReport) -> None:
    """Each check with its figure, then the verdict in words."""
    for check in report.checks:
        text = check.message.rsplit(": ", 1)[0]
        mark = f"[green]{TICK}[/]" if check.passed else f"[bold red]{CROSS}[/]"
        console.print(f"  {mark} {escape(text)}", highlight=False)
    failed = [c for c in report.checks if not c.passed]
    total = len(report.checks)
    if report.verdict == "interrupted":
        console.print(
            f"[bold yellow]verdict: INTERRUPTED[/] after {len(report.phases)} finished "
            "phase(s), its job stopped and the service restored; the checks above judge only "
            "those"
        )
    elif not failed:
        held = {0: "no checks to judge", 1: "the one check held"}.get(
            total, f"all {total} checks held"
        )
        console.print(f"[bold green]verdict: PASS[/]: {held}")
    else:
        names = ", ".join(f"{c.phase} {c.metric}" for c in failed[:3])
        console.print(
            f"[bold red]verdict: FAIL[/]: {len(failed)} of {total} checks failed ({names})"
        )


def print_summary(
    console: Console, report: RunReport, paths: list[Path], next_commands: list[str]
) -> None:
    print_figures(console, report)
    print_traces(console, report)
    warnings = [(ph.name, w) for ph in report.phases for w in ph.warnings]
    for name, warning in warnings:
        console.print(f"[yellow]warning[/] {name}: {escape(warning)}", highlight=False)
    if report.conclusion:
        console.print("[bold]what happened[/]")
        for sentence in report.conclusion:
            console.print(f"  {escape(sentence)}", highlight=False)
    console.print("[bold]checks[/]")
    print_verdict(console, report)
    for path in paths:
        console.print(f"report: {path}", highlight=False)
    if next_commands:
        console.print("next:")
        for command in next_commands:
            console.print(f"  {escape(command)}", highlight=False)
