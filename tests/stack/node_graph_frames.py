"""What Grafana makes of a node graph panel's Prometheus answers, for the tests.

Grafana cannot run here (it is AGPL and not built for the tests), so the small part of its
data pipeline the Overview's node graph relies on is written out, from Grafana's own sources:

- a table-format instant query becomes one frame per query: ``Time``, one string field per
  label (labels sorted by name, "" where a series lacks one) and the value, named
  ``Value #<refId>`` when the panel has several queries (``transformDFToTable``);
- ``merge`` joins the frames it applies to on the fields they all have, row by row where the
  rows agree (``mergeTransformer``), and its ``filter`` (``byRefId``, ``/regex/`` or ``A|B``)
  leaves the other frames as they were; ``frameAlias`` names the result;
- ``organize`` drops the fields of ``excludeByName`` and renames those of ``renameByName``;
- the node graph takes a frame with a ``source`` field (or named ``edges``) as its edges and
  the other as its nodes, and reads fields by name, case-insensitively (``getNodeFields``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

Value = str | float | None


@dataclass
class Frame:
    ref_id: str
    fields: list[str]
    rows: list[dict[str, Value]] = field(default_factory=list)

    def column(self, name: str) -> list[Value]:
        return [row.get(name) for row in self.rows]


def table_frames(answers: dict[str, list[dict[str, Any]]]) -> list[Frame]:
    """One frame per query, from each query's instant vector (``result``)."""
    frames = []
    for ref_id, series in answers.items():
        labels = sorted({label for one in series for label in one["metric"]})
        value = f"Value #{ref_id}" if len(answers) > 1 else "Value"
        frame = Frame(ref_id, ["Time", *labels, value])
        for one in series:
            row: dict[str, Value] = {"Time": float(one["value"][0]) * 1000}
            row |= {label: one["metric"].get(label, "") for label in labels}
            row[value] = float(one["value"][1])
            frame.rows.append(row)
        frames.append(frame)
    return frames


def apply(transformations: list[dict[str, Any]], frames: list[Frame]) -> list[Frame]:
    for transformation in transformations:
        options = transformation.get("options", {})
        selected = _matcher(transformation.get("filter"))
        chosen = [frame for frame in frames if selected(frame)]
        match transformation["id"]:
            case "merge":
                merged = _merge(chosen, options.get("frameAlias"))
                frames = [frame for frame in frames if not selected(frame)] + merged
            case "organize":
                frames = [_organize(f, options) if selected(f) else f for f in frames]
            case other:
                raise NotImplementedError(f"transformation {other!r} is not written out here")
    return frames


def split(frames: list[Frame]) -> tuple[Frame, Frame]:
    """The node graph's (nodes, edges) frames; the test expects exactly one of each."""
    edges = [f for f in frames if "source" in f.fields or f.ref_id == "edges"]
    nodes = [f for f in frames if f not in edges]
    assert len(nodes) == 1, [f.ref_id for f in nodes]
    assert len(edges) == 1, [f.ref_id for f in edges]
    return nodes[0], edges[0]


def _matcher(config: dict[str, Any] | None) -> Any:
    if not config:
        return lambda frame: True
    assert config["id"] == "byRefId", config
    pattern: str = config["options"]
    if pattern.startswith("/") and pattern.endswith("/"):
        regex = re.compile(pattern[1:-1])
        return lambda frame: regex.search(frame.ref_id) is not None
    names = set(pattern.split("|"))
    return lambda frame: frame.ref_id in names


def _merge(frames: list[Frame], alias: str | None) -> list[Frame]:
    if len(frames) <= 1:
        return frames
    names: list[str] = []
    for frame in frames:
        names += [name for name in frame.fields if name not in names]
    keys = [name for name in frames[-1].fields if all(name in f.fields for f in frames)]
    merged: dict[tuple[Value, ...], list[dict[str, Value]]] = {}
    for frame in frames:
        for row in frame.rows:
            candidates = merged.setdefault(tuple(row[k] for k in keys), [])
            for existing in candidates:
                if all(existing.get(n) in (None, v) for n, v in row.items()):
                    existing.update(row)
                    break
            else:
                candidates.append(dict(row))
    ref_id = alias or "merge-" + "-".join(f.ref_id for f in frames)
    rows = [row for candidates in merged.values() for row in candidates]
    return [Frame(ref_id, names, rows)]


def _organize(frame: Frame, options: dict[str, Any]) -> Frame:
    excluded = {name for name, drop in options.get("excludeByName", {}).items() if drop}
    rename: dict[str, str] = options.get("renameByName", {})
    kept = [name for name in frame.fields if name not in excluded]
    rows = [{rename.get(n, n): row.get(n) for n in kept} for row in frame.rows]
    return Frame(frame.ref_id, [rename.get(n, n) for n in kept], rows)
