"""The one duration grammar, for ``?window=`` on the metrics routes and for scenario files.

A duration is a non-negative number of seconds (``90``, ``2.5``), or units from the largest
to the smallest, each at most once, each with a non-negative decimal number: ``1h``, ``2m``,
``30s``, ``500ms``, ``1m30s``, ``1h 2m`` (spaces between parts are ignored). Prometheus's
grammar, with decimals; no exponents, signs, ``nan`` or ``inf``, so every duration is finite.
"""

from __future__ import annotations

import math
import re
from typing import Final

MIN_WINDOW_SECONDS: Final = 2.0
"""The shortest window the metrics routes accept: two samples of the default interval."""

_NUMBER: Final = r"\d+(?:\.\d+)?"
_SECONDS: Final = re.compile(_NUMBER)
_UNITS: Final = re.compile(
    rf"(?:(?P<h>{_NUMBER})h)?(?:(?P<m>{_NUMBER})m(?!s))?"
    rf"(?:(?P<s>{_NUMBER})s)?(?:(?P<ms>{_NUMBER})ms)?"
)
_PARTS: Final = re.compile(rf"(?:{_NUMBER}(?:h|ms|m|s))+")
_UNIT_SECONDS: Final = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}


def parse_duration(text: str) -> float:
    """Seconds in ``text``; ``ValueError`` saying what a duration looks like."""
    parts = text.split()
    compact = "".join(parts)
    seconds: float | None = None
    if len(parts) == 1 and _SECONDS.fullmatch(compact):
        seconds = float(compact)
    elif parts and all(_PARTS.fullmatch(part) for part in parts):
        match = _UNITS.fullmatch(compact)
        if match is not None:
            seconds = sum(
                float(value) * _UNIT_SECONDS[unit]
                for unit, value in match.groupdict().items()
                if value is not None
            )
    if seconds is None or not math.isfinite(seconds):
        raise ValueError(
            f"{text!r} is not a duration: write seconds as a number, or a duration such as "
            '"30s", "2m", "1m30s", "500ms"'
        )
    return seconds


def parse_window(text: str, minimum: float, maximum: float) -> float:
    """A duration within ``minimum``..``maximum`` seconds; ``ValueError`` naming the bounds."""
    try:
        seconds = parse_duration(text)
    except ValueError as exc:
        raise ValueError(f"window {exc}") from None
    if not minimum <= seconds <= maximum:
        raise ValueError(f"window {text!r}: must be between {minimum:g}s and {maximum:g}s")
    return seconds
