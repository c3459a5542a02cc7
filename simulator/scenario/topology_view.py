"""The topology as a few lines of text: where in the request path failures enter.

``failure-lab run`` prints this once per phase, from ``GET /v1/topology`` over the phase's
window, so someone without Grafana sees which node the errors start at. Each node is one line
(status, calls per second, error rate, p99, and what is special about it: the cache's hit
ratio, the breaker, active faults, why it is not healthy), and under it the edges leaving it,
with their own rate and error rate; the database's retries are the edge back to itself.

A pure function of the answer and the terminal's width: no line is longer than ``width``
(what does not fit is cut with an ellipsis, and a node's notes move to lines of their own).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Final

from failure_lab.topology import Topology, TopologyEdge, TopologyNode

MIN_WIDTH: Final = 40
WIDE: Final = 80
"""From this width on, figures are spelt out (``req/s``, ``errors``)."""
ELLIPSIS: Final = "…"
MARKS: Final = {"healthy": "✔", "degraded": "▲", "down": "✖"}
NOTE_INDENT: Final = "    "
EDGE_NOTE_INDENT: Final = "        "
EDGE_PAD: Final = 7
"""Puts an edge's figures under its source node's."""


def topology_lines(topology: Topology, width: int = 100) -> list[str]:
    """The drawing of ``topology`` for a terminal ``width`` characters wide."""
    width = max(MIN_WIDTH, width)
    compact = width < WIDE
    titles = {node.id: node.title for node in topology.nodes}
    name_width = min(max((len(t) for t in titles.values()), default=8), width // 3)
    lines: list[str] = []
    for node in topology.nodes:
        status = node.status.upper() if node.status == "down" else node.status
        head = (
            f"{MARKS[node.status]} {_cut(node.title, name_width):<{name_width}} {status:<8} "
            f"{_figures(node.request_rate, node.error_rate, compact)}"
        )
        lines.extend(_with_notes(head, _notes(node), width, NOTE_INDENT))
        leaving = [edge for edge in topology.edges if edge.source == node.id]
        for index, edge in enumerate(leaving):
            last = index == len(leaving) - 1
            head, notes = _edge(edge, titles, name_width, last, compact)
            lines.extend(_with_notes(head, notes, width, EDGE_NOTE_INDENT))
    return lines


def _with_notes(head: str, notes: list[str], width: int, indent: str) -> Iterator[str]:
    """``head`` and its notes on one line if they fit, else the notes on lines of their own,
    as many to a line as fit."""
    if len("  ".join((head, *notes))) <= width:
        yield "  ".join((head, *notes))
        return
    yield _fit(head, width)
    line = ""
    for note in notes:
        if line and len(indent + line + "  " + note) > width:
            yield _fit(indent + line, width)
            line = ""
        line = f"{line}  {note}" if line else note
    if line:
        yield _fit(indent + line, width)


def _notes(node: TopologyNode) -> list[str]:
    """What else the node says: its p99, the cache's hits, where it lives, the breaker, its
    faults (the status's other reasons are these)."""
    notes: list[str] = []
    if node.p99_latency_ms is not None:
        notes.append(f"p99 {node.p99_latency_ms:.1f} ms")
    if node.hit_ratio is not None:
        notes.append(f"hit {node.hit_ratio:.0%}")
    if node.backend is not None:
        notes.append(node.backend)
    if node.breaker is not None and node.breaker != "off":
        notes.append(f"breaker {node.breaker.replace('_', '-')}")
    notes.extend(f"fault: {fault}" for fault in node.faults)
    return notes


def _edge(
    edge: TopologyEdge, titles: dict[str, str], name_width: int, last: bool, compact: bool
) -> tuple[str, list[str]]:
    if edge.source == edge.target:
        arrow, target = "└─↻" if last else "├─↻", "retries"
    else:
        arrow, target = "└─▶" if last else "├─▶", titles.get(edge.target, edge.target)
    head = (
        f"  {arrow} {_cut(target, name_width - 2):<{name_width - 2}} "
        f"{' ' * EDGE_PAD}{_figures(edge.request_rate, edge.error_rate, compact)}"
    )
    if edge.retries_per_request is None:
        return head, []
    return head, [f"{edge.retries_per_request:.2f} retries/request"]


def _figures(rate: float, error_rate: float, compact: bool) -> str:
    if compact:
        return f"{rate:6.1f}/s {error_rate:6.1%}"
    return f"{rate:8.1f} req/s {error_rate:6.1%} errors"


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: max(0, width - 1)] + ELLIPSIS


def _fit(line: str, width: int) -> str:
    return _cut(line.rstrip(), width)
