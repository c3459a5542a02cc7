"""The rate limiter interface shared by the in-process and Redis implementations."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from failure_lab.control import RateLimitAlgorithm


class RateLimiterUnavailable(Exception):
    """The limiter's backend (Redis) did not answer; the caller decides to fail open."""


@dataclass(frozen=True, slots=True)
class Decision:
    """What the limiter decided for one request.

    ``delay`` is only non-zero for ``leaky_bucket``, which shapes traffic: an admitted
    request waits ``delay`` seconds for its slot instead of being refused.
    """

    allowed: bool
    delay: float = 0.0


class RateLimiter(Protocol):
    async def acquire(self, algorithm: RateLimitAlgorithm, rate: float) -> Decision:
        """Decide one request against the limit ``rate`` (req/s, > 0) of ``algorithm``.

        Limits are keyed by (algorithm, rate): requests configured alike share one limit.
        """
        ...

    async def aclose(self) -> None: ...
