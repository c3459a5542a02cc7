"""The rate limiter interface shared by the in-process and Redis implementations."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

from failure_lab.control import RateLimitAlgorithm

UnavailableReason = Literal["timeout", "pool_exhausted", "unavailable"]


class RateLimiterUnavailable(Exception):
    """The limiter's backend (Redis) did not answer; the caller decides to fail open.

    ``reason``: ``timeout`` (no answer within the limiter's timeout), ``pool_exhausted``
    (no connection came free in time), ``unavailable`` (Redis refused or failed).
    """

    def __init__(self, reason: UnavailableReason, message: str) -> None:
        super().__init__(message)
        self.reason: UnavailableReason = reason


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
