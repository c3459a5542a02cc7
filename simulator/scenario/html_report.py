"""The run as one self-contained HTML file: charts, checks, conclusion, predictions, traces.

An embedded target disappears with the run and a terminal scrolls away, so the report must
carry everything and open anywhere, offline: plotly draws the charts and its JavaScript is
written into the page (no CDN), and the data are the report's own (the samples taken during
the run, the phases' figures, the traces fetched while the service was up). Text from the
report is escaped; nothing is fetched when the page opens.
"""

from __future__ import annotations

import html
from collections.abc import Iterable
from datetime import datetime

import plotly.graph_objects as go
from plotly.offline import get_plotlyjs
from plotly.subplots import make_subplots

from simulator.scenario.conclude import ms, pct, times
from simulator.scenario.report import RunReport, Sample, StoredTrace
from simulator.scenario.summary import CROSS, TICK
from simulator.scenario.waterfall import segments

FAULT = "rgba(220, 50, 47, 0.12)"
PHASE_LINE = "rgba(0, 0, 0, 0.35)"
STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5em auto; max-width: 1200px;
       color: #222; padding: 0 1em; }
h1 { margin-bottom: 0.2em; } h2 { margin-top: 1.6em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: 0.5em 0; }
td, th { border: 1px solid #ddd; padding: 0.25em 0.6em; text-align: right; }
td:first-child, th:first-child { text-align: left; }
.pass { color: #1a7f37; font-weight: bold; } .fail { color: #c62828; font-weight: bold; }
.warn { color: #9a6700; } .muted { color: #666; } code { font-size: 0.95em; }
ul.plan { margin: 0.2em 0 0.8em 0; }
"""


def e(text: object) -> str:
    return html.escape(str(text))


def page(title: str, body: Iterable[str]) -> str:
    """A whole HTML document with plotly.js inside it."""
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{e(title)}</title><style>{STYLE}</style>"
        f'<script type="text/javascript">{get_plotlyjs()}</script></head><body>\n'
        + "\n".join(body)
        + "\n</body></html>\n"
    )


def figure_html(figure: go.Figure) -> str:
    return str(
        figure.to_html(
            full_html=False,
            include_plotlyjs=False,
            config={"displaylogo": False, "responsive": True},
        )
    )


def table(headers: list[str], rows: Iterable[list[str]]) -> str:
    """A table from already escaped cells."""
    head = "".join(f"<th>{h}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _offset(at: datetime, start: datetime) -> float:
    return (at - start).total_seconds()


def _series(
    samples: list[Sample], name: str, scale: float = 1.0
) -> tuple[list[float], list[float | None]]:
    values = [getattr(s, name) for s in samples]
    return [s.t for s in samples], [None if v is None else v * scale for v in values]


def timeline(report: RunReport) -> go.Figure:
    """The run over time, one panel per figure, phases marked and faults shaded."""
    rows = [
        ("req/s", [("target_rps", "target", 1.0), ("sent_rps", "sent", 1.0),
                   ("request_rate", "service", 1.0)]),
        ("errors %", [("error_rate", "service errors", 100.0)]),
        ("latency ms", [("p50_ms", "service p50", 1.0), ("p95_ms", "service p95", 1.0),
                        ("p99_ms", "service p99", 1.0),
                        ("client_p99_ms", "client p99 (corrected)", 1.0),
                        ("client_p99_uncorrected_ms", "client p99 (uncorrected)", 1.0)]),
        ("retries x", [("retry_amplification", "retry amplification", 1.0)]),
        ("cache hits %", [("cache_hit_ratio", "cache hit ratio", 100.0)]),
    ]  # fmt: skip
    figure = make_subplots(
        rows=len(rows), cols=1, shared_xaxes=True, vertical_spacing=0.03,
    )  # fmt: skip
    for row, (title, lines) in enumerate(rows, start=1):
        for field, label, scale in lines:
            x, y = _series(report.samples, field, scale)
            figure.add_trace(go.Scatter(x=x, y=y, name=label, mode="lines+markers"), row=row, col=1)
        figure.update_yaxes(title_text=title, row=row, col=1)
    for phase in report.phases:
        start = _offset(phase.started_at, report.started_at)
        end = _offset(phase.ended_at, report.started_at)
        figure.add_vline(x=start, line_dash="dot", line_color=PHASE_LINE)
        figure.add_annotation(x=(start + end) / 2, y=1.02, yref="paper", text=e(phase.name),
                              showarrow=False)  # fmt: skip
        for d in phase.disruptions:
            figure.add_vrect(x0=start + d.at_seconds, x1=start + d.at_seconds + d.duration_seconds,
                             fillcolor=FAULT, line_width=0, layer="below")  # fmt: skip
        if any(line.startswith("database:") and "fail" in line for line in phase.plan):
            figure.add_vrect(x0=start, x1=end, fillcolor=FAULT, line_width=0, layer="below")
    figure.update_xaxes(title_text="seconds since the run started", row=len(rows), col=1)
    figure.update_layout(height=260 * len(rows), legend={"orientation": "h"}, margin={"t": 60})
    return figure


def phase_bars(report: RunReport) -> go.Figure:
    """Per phase: p99 of the service and of the client, corrected and not."""
    names = [p.name for p in report.phases]
    figure = go.Figure()
    bars = [
        ("service p99", [p.service.p99_ms for p in report.phases]),
        ("client p99 corrected", [p.generator.latency_ms.p99 for p in report.phases]),
        ("client p99 uncorrected", [p.generator.service_latency_ms.p99 for p in report.phases]),
        ("send lag p99", [p.generator.send_lag_ms.p99 for p in report.phases]),
    ]
    for label, values in bars:
        figure.add_trace(go.Bar(name=label, x=names, y=values))
    figure.update_layout(barmode="group", yaxis_title="ms", height=380, title="p99 per phase")
    return figure


def waterfall(trace: StoredTrace) -> go.Figure:
    parts = segments(trace.trace)
    colours = {"cache": "#6c8ebf", "db_ok": "#2e7d32", "db_fail": "#c62828", "wait": "#bdbdbd",
               "refused": "#ef6c00", "other": "#7e57c2"}  # fmt: skip
    figure = go.Figure(
        go.Bar(
            orientation="h",
            y=[f"{i + 1}. {p.label}" for i, p in enumerate(parts)],
            x=[max(p.end_ms - p.start_ms, 0.2) for p in parts],
            base=[p.start_ms for p in parts],
            marker_color=[colours.get(p.kind, "#7e57c2") for p in parts],
            hovertemplate="%{y}: from %{base:.1f} ms, %{x:.1f} ms<extra></extra>",
        )
    )
    total = trace.trace.trace.total_latency_ms
    figure.update_layout(
        title=f"{trace.why} in {trace.phase}: {ms(total)} in the service, "
        f"status {trace.trace.trace.status_code}",
        xaxis_title="ms since the request arrived",
        yaxis={"autorange": "reversed"},
        height=170 + 26 * len(parts),
        margin={"l": 260, "t": 50, "b": 50},
    )
    return figure


def _phase_section(report: RunReport) -> list[str]:
    out = ["<h2>Phases</h2>"]
    for phase in report.phases:
        out.append(f"<h3>{e(phase.name)} <span class=muted>({e(phase.scenario)})</span></h3>")
        out.append("<ul class=plan>" + "".join(f"<li>{e(line)}</li>" for line in phase.plan))
        out.append("</ul>")
        out += [f"<p class=warn>warning: {e(w)}</p>" for w in phase.warnings]
    rows = [
        [e(p.name), e(f"{p.generator.achieved_rps:.1f}/{p.rps:g}"), pct(p.service.error_rate),
         times(p.service.retry_amplification), ms(p.service.p95_ms), ms(p.service.p99_ms),
         ms(p.generator.latency_ms.p99), ms(p.generator.service_latency_ms.p99),
         pct(p.cache_hit_ratio), f"{p.generator.dropped}"]
        for p in report.phases
    ]  # fmt: skip
    headers = ["phase", "req/s sent/asked", "errors", "retries", "p95", "p99", "client p99 co",
               "client p99 not co", "cache hits", "dropped"]  # fmt: skip
    out.append(table(headers, rows))
    return out


def _predictions(report: RunReport) -> list[str]:
    rows = []
    for phase in report.phases:
        for p in phase.predictions:
            mark = "" if p.agrees is None else (TICK if p.agrees else CROSS)
            rows.append([
                e(phase.name), e(p.figure), f"{p.predicted:.4g}",
                "-" if p.measured is None else f"{p.measured:.4g}",
                "-" if p.error_bar is None else f"±{p.error_bar:.2g}", mark,
                e(p.formula), e(p.assumptions + (f"; {p.caveat}" if p.caveat else "")),
            ])  # fmt: skip
    if not rows:
        return []
    headers = ["phase", "figure", "model", "measured", "error bar", "agrees", "formula",
               "assumptions"]  # fmt: skip
    return ["<h2>The model against the measurement</h2>", table(headers, rows)]


def _mark(passed: bool) -> str:
    return f"<span class={'pass' if passed else 'fail'}>{TICK if passed else CROSS}</span>"


def render(report: RunReport) -> str:
    """The whole page."""
    verdict_class = "pass" if report.verdict == "pass" else "fail"
    body = [
        f"<h1>{e(report.scenario)}</h1>",
        f"<p>{e(report.description or '')}</p>",
        f"<p class=muted>{e(report.started_at.isoformat())} to {e(report.ended_at.isoformat())}"
        f", against {e(report.target)}, file {e(report.file)}</p>",
        f"<p class={verdict_class}>verdict: {e(report.verdict.upper())}</p>",
        "<h2>What happened</h2><ul>" + "".join(f"<li>{e(s)}</li>" for s in report.conclusion),
        "</ul><h2>Checks</h2>",
        table(
            ["", "check", "observed"],
            [
                [
                    _mark(c.passed),
                    e(c.message),
                    "-" if c.observed is None else f"{c.observed:.4g}",
                ]
                for c in report.checks
            ],
        ),
        "<h2>Over time</h2>",
        "<p class=muted>Shaded: faults (disruptions, and phases whose database fails).</p>",
        figure_html(timeline(report)),
        figure_html(phase_bars(report)),
        *_phase_section(report),
        *_predictions(report),
    ]
    traces = [t for phase in report.phases for t in phase.traces]
    if traces:
        body.append("<h2>Traces</h2><p class=muted>Open one in Jaeger by its trace id.</p>")
        for trace in traces:
            body.append(f"<p><code>{e(trace.trace_id)}</code> (request {e(trace.request_id)})</p>")
            body.append(figure_html(waterfall(trace)))
    return page(f"{report.scenario}: failure-lab report", body)
