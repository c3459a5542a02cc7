"""``--set key=value``: change a scenario file's values for one run without editing it.

Trying a longer outage or another rate should not mean copying a bundled file. A key is a
path into the file: fields by name (``pipeline.cache_ttl``), list items by index
(``phases[0].max_rps``) or, for phases, by name (``phases.outage.duration``); a value is read
as YAML would read it in the file (``20s`` stays a duration, ``40`` a number, ``true`` a
boolean). Overrides apply to the file's data before it is validated, so an overridden value
is checked like any other; a path that leads nowhere is a problem of its own.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import yaml

_TOKEN = re.compile(r"([^.\[\]]+)|\[(\d+)\]")
Path = tuple[str | int, ...]


class OverrideError(ValueError):
    """A ``--set`` that cannot be applied; ``given`` is the argument as written."""

    def __init__(self, given: str, message: str) -> None:
        super().__init__(f"--set {given}: {message}")
        self.given = given


def parse_path(key: str) -> list[str | int]:
    """``phases[0].max_rps`` -> ["phases", 0, "max_rps"]."""
    parts: list[str | int] = []
    position = 0
    for match in _TOKEN.finditer(key):
        between = key[position : match.start()]
        if between not in ("", "."):
            raise ValueError(f"cannot read {key!r} as a path")
        name, index = match.groups()
        parts.append(int(index) if index is not None else name)
        position = match.end()
    if not parts or key[position:]:
        raise ValueError(f"cannot read {key!r} as a path (e.g. phases[0].max_rps)")
    return parts


def _step(node: Any, part: str | int, given: str) -> tuple[Any, str | int]:
    """The container and key ``part`` names inside ``node``."""
    if isinstance(node, list):
        if isinstance(part, int):
            if not 0 <= part < len(node):
                raise OverrideError(given, f"there is no item [{part}] (the list has {len(node)})")
            return node, part
        for index, item in enumerate(node):
            if isinstance(item, dict) and item.get("name") == part:
                return node, index
        names = ", ".join(str(i.get("name")) for i in node if isinstance(i, dict))
        raise OverrideError(given, f"no item named {part!r} (names: {names})")
    if isinstance(part, int):
        raise OverrideError(given, f"[{part}] indexes a list, and this is a mapping")
    return node, part


def apply_override(data: dict[str, Any], given: str) -> Path:
    """Set one ``key=value`` in ``data``; returns the path set, with list items as indexes."""
    key, sep, raw = given.partition("=")
    if not sep or not key.strip():
        raise OverrideError(given, "write KEY=VALUE, e.g. phases.outage.duration=20s")
    try:
        parts = parse_path(key.strip())
        value = yaml.safe_load(raw) if raw.strip() else ""
    except (ValueError, yaml.YAMLError) as exc:
        raise OverrideError(given, str(exc)) from None
    node: Any = data
    resolved: list[str | int] = []
    for depth, part in enumerate(parts):
        if not isinstance(node, dict | list):
            where = ".".join(str(p) for p in resolved)
            raise OverrideError(given, f"{where!r} holds a single value, not fields or items")
        container, slot = _step(node, part, given)
        resolved.append(slot)
        if depth == len(parts) - 1:
            container[slot] = value
            break
        if isinstance(container, dict) and slot not in container:
            container[slot] = {}
        node = container[slot]
    return tuple(resolved)


def apply_overrides(data: dict[str, Any], overrides: Sequence[str]) -> list[Path]:
    """Every override in order (a later one wins); the paths they set."""
    return [apply_override(data, given) for given in overrides]
