"""Retry backoff: exponential with full jitter.

The wait before retry ``n`` (0-based) is uniform in ``[0, min(cap, base * 2**n)]``, the
"full jitter" schedule that spreads synchronized retries apart instead of letting them
arrive in waves (a retry storm is one of the things this laboratory exists to show).
"""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Backoff:
    base_seconds: float
    cap_seconds: float
    rng: random.Random

    def ceiling(self, attempt: int) -> float:
        """The largest wait retry ``attempt`` can draw."""
        return min(self.cap_seconds, self.base_seconds * 2.0 ** min(attempt, 62))

    def delay(self, attempt: int) -> float:
        return self.rng.uniform(0.0, self.ceiling(attempt))
