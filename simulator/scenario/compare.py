"""``failure-lab compare A.json B.json``: two runs phase by phase, what changed and by how much.

Pairs of scenarios invite a comparison (the breaker on and off, a cache TTL of 2 s and of
30 s), and two reports hold all it needs: phases are matched by name (by position for the
rest), and each figure of A is set beside B's with the difference and the ratio, in text and
in an HTML page with the same charts for both runs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import plotly.graph_objects as go
from rich.console import Console

from simulator.scenario.conclude import ms, pct, times
from simulator.scenario.html_report import e, figure_html, page, table
from simulator.scenario.report import PhaseReport, RunReport

Getter = Callable[[PhaseReport], float | None]
FIGURES: list[tuple[str, Getter, Callable[[float | None], str], str]] = [
    ("errors", lambda p: p.service.error_rate, pct, "share"),
    ("service p95", lambda p: p.service.p95_ms, ms, "ms"),
    ("service p99", lambda p: p.service.p99_ms, ms, "ms"),
    ("retries", lambda p: p.service.retry_amplification, times, "x"),
    ("client p99", lambda p: p.generator.latency_ms.p99, ms, "ms"),
    ("req/s sent", lambda p: p.generator.achieved_rps, lambda v: "-" if v is None else f"{v:.1f}",
     "rate"),
    ("cache hits", lambda p: p.cache_hit_ratio, pct, "share"),
]  # fmt: skip


@dataclass(frozen=True, slots=True)
class Row:
    phase: str
    figure: str
    a: float | None
    b: float | None
    shown_a: str
    shown_b: str

    @property
    def change(self) -> str:
        if self.a is None or self.b is None:
            return "-"
        if self.a == self.b:
            return "same"
        unit = next(unit for name, _, _, unit in FIGURES if name == self.figure)
        if unit == "share":
            return f"{(self.b - self.a) * 100:+.1f} points"
        diff = self.b - self.a
        text = f"{diff:+.0f} ms" if unit == "ms" else f"{diff:+.2f}"
        return text + (f" ({self.b / self.a:.2f}x)" if self.a else "")


def paired(a: RunReport, b: RunReport) -> list[tuple[str, PhaseReport | None, PhaseReport | None]]:
    """Phases matched by name, in A's order, then B's unmatched ones."""
    by_name = {phase.name: phase for phase in b.phases}
    pairs: list[tuple[str, PhaseReport | None, PhaseReport | None]] = []
    for index, phase in enumerate(a.phases):
        match = by_name.pop(phase.name, None)
        if match is None and index < len(b.phases) and b.phases[index].name in by_name:
            match = by_name.pop(b.phases[index].name)
        pairs.append((phase.name if match is None or match.name == phase.name
                      else f"{phase.name}/{match.name}", phase, match))  # fmt: skip
    pairs += [(name, None, phase) for name, phase in by_name.items()]
    return pairs


def rows(a: RunReport, b: RunReport) -> list[Row]:
    found: list[Row] = []
    for name, left, right in paired(a, b):
        for figure, get, show, _ in FIGURES:
            va = None if left is None else get(left)
            vb = None if right is None else get(right)
            if va is None and vb is None:
                continue
            found.append(Row(name, figure, va, vb, show(va), show(vb)))
    return found


def _title(label: str, report: RunReport, path: str) -> str:
    when = f"{report.started_at:%Y-%m-%d %H:%M}"
    return f"{label}: {path} ({report.scenario}, {when}, {report.verdict})"


def print_compare(console: Console, a: RunReport, b: RunReport, paths: tuple[str, str]) -> None:
    console.print(_title("A", a, paths[0]), highlight=False)
    console.print(_title("B", b, paths[1]), highlight=False)
    console.print(f"  {'phase':<12} {'figure':<12} {'A':>10} {'B':>10}  change")
    for row in rows(a, b):
        console.print(
            f"  {row.phase:<12} {row.figure:<12} {row.shown_a:>10} {row.shown_b:>10}  {row.change}",
            highlight=False,
        )


def render(a: RunReport, b: RunReport, paths: tuple[str, str]) -> str:
    found = rows(a, b)
    body = [
        f"<h1>{e(a.scenario)} against {e(b.scenario)}</h1>",
        f"<p>{e(_title('A', a, paths[0]))}<br>{e(_title('B', b, paths[1]))}</p>",
        table(
            ["phase", "figure", "A", "B", "change"],
            [[e(r.phase), e(r.figure), e(r.shown_a), e(r.shown_b), e(r.change)] for r in found],
        ),
    ]
    for figure, _, _, unit in FIGURES:
        chosen = [r for r in found if r.figure == figure]
        if not chosen:
            continue
        scale = 100.0 if unit == "share" else 1.0
        chart = go.Figure()
        for label in ("A", "B"):
            picked = [r.a if label == "A" else r.b for r in chosen]
            values = [None if v is None else v * scale for v in picked]
            chart.add_trace(go.Bar(name=f"{label}: {a.scenario if label == 'A' else b.scenario}",
                                   x=[r.phase for r in chosen], y=values))  # fmt: skip
        suffix = {"share": " (%)", "ms": " (ms)", "x": " (x)"}.get(unit, "")
        chart.update_layout(barmode="group", title=figure + suffix, height=320)
        body.append(figure_html(chart))
    return page(f"{a.scenario} against {b.scenario}", body)
