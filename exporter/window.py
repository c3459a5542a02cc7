"""The ``?window=`` parameter: a PromQL-style duration (``30s``, ``1m``, ``1m30s``, ``500ms``)
or plain seconds (``90``)."""

from __future__ import annotations

import re

UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")


def parse_window(text: str, minimum: float, maximum: float) -> float:
    """Seconds; ValueError naming the accepted forms and bounds."""
    cleaned = text.strip()
    try:
        seconds = float(cleaned)
    except ValueError:
        parts = DURATION.findall(cleaned)
        if not parts or "".join(n + u for n, u in parts) != cleaned:
            raise ValueError(
                f"window {text!r}: expected a duration like 30s, 1m, 1m30s, 500ms, or seconds"
            ) from None
        seconds = sum(float(n) * UNITS[u] for n, u in parts)
    if not minimum <= seconds <= maximum:
        raise ValueError(f"window {text!r}: must be between {minimum:g}s and {maximum:g}s")
    return seconds
