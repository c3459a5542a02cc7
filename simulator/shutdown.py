"""The one clock of a shutdown: from SIGTERM, ``shutdown_grace_seconds`` to be gone.

The server starts it when it begins to stop; every stage after (cancelling jobs, draining
connections, closing backends, flushing spans) takes only what is left of it, so however
the stages fare (a collector that hangs, a client that never reads) the process exits within
the grace. The stages before the span flush leave it ``flush_reserve`` at least: spans of
the last requests are worth more than waiting longer for a slow connection.
"""

from __future__ import annotations

import time
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Deadline:
    at: float
    """``time.monotonic()`` by which everything is done."""
    grace: float

    @classmethod
    def after(cls, grace: float) -> Deadline:
        return cls(time.monotonic() + grace, grace)

    @property
    def flush_reserve(self) -> float:
        """Seconds kept for the span flush: 1 s, or half the grace if that is shorter."""
        return min(1.0, self.grace / 2)

    def left(self) -> float:
        """Seconds left, 0 once it has passed."""
        return max(0.0, self.at - time.monotonic())

    def left_before_flush(self) -> float:
        """Seconds the stages before the span flush may take."""
        return max(0.0, self.left() - self.flush_reserve)
