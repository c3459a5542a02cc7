"""The four rate limiting algorithms as pure arithmetic over explicit state and an explicit clock.

Nothing here reads a clock or does I/O: every decision is a function of the stored state, the
limit ``rate`` (req/s, > 0) and ``now`` (seconds as a float). That makes the algorithms exact
to test, and lets the Lua scripts in ``simulator.ratelimit.redis`` perform the same float
operations in the same order, so both backends decide identically.

Semantics (one limit per ``limit_key(algorithm, rate)``):

``token_bucket``
    Capacity ``max(rate, 1)`` tokens (one second of burst), refilled continuously at ``rate``
    tokens/s and full at the first request. A request takes one token or is refused.

``leaky_bucket``
    A shaping bucket (a queue, not a meter), in the style of GCRA. A request is given the next
    free slot ``slot = max(now, next_free)``; if it would wait more than ``max_queue_delay``
    seconds it is refused, otherwise ``next_free = slot + 1/rate`` and it is admitted with
    ``delay = slot - now``. It never lets a burst through: it spaces requests ``1/rate``
    apart, so at one instant it admits ``floor(rate * max_queue_delay) + 1`` requests.

``fixed_window``
    Windows of one second aligned to ``floor(now)``. A request is admitted while the count in
    its window is below ``rate``, so a fractional rate admits ``ceil(rate)`` per window, and
    up to twice the rate can pass across a window boundary.

``sliding_window``
    The sliding window counter: one-second windows, and the estimate
    ``prev_count * (1 - (now - window_start)) + curr_count`` of the requests in the last
    second. A request is admitted if the estimate is below ``rate`` and then counted; a
    refused request is not counted.

Comparisons allow ``EPSILON`` of slack toward the exact-arithmetic answer: an arrival exactly
on a refill instant or on a slot boundary is decided as if the clock values and ``1/rate``
were exact decimals, not as their binary rounding happens to fall.

A clock that runs backwards (two processes sharing one Redis limit) never refills tokens,
never moves a window back and never counts a negative elapsed time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

from failure_lab.control import RateLimitAlgorithm
from simulator.ratelimit.base import Decision

EPSILON = 1e-9
"""Slack in comparisons (tokens, seconds or requests, whichever is compared).

It exceeds the rounding of clock values such as ``1000 + i/40`` and of sums of ``1/rate`` at
clock values up to about 1e4 s, and is far below anything a real request could notice. At
wall-clock epoch values (~1.7e9 s) a float resolves only ~2.4e-7 s, so exact ties there fall
as the rounding does, which no real arrival, never exactly on a tie, notices either.
"""

DEFAULT_MAX_QUEUE_DELAY = 1.0
"""Seconds the leaky bucket lets a request wait for its slot before refusing it."""

ALGORITHMS: tuple[RateLimitAlgorithm, ...] = (
    "token_bucket",
    "leaky_bucket",
    "fixed_window",
    "sliding_window",
)


def check_rate(rate: float) -> float:
    """Return ``rate`` as a float, refusing a rate that is not finite and positive."""
    value = float(rate)
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"rate must be a finite number > 0 req/s, got {rate!r}")
    return value


def limit_key(algorithm: RateLimitAlgorithm, rate: float) -> str:
    """The name of the limit shared by every request with this algorithm and rate.

    The rate is written with ``repr`` (shortest round-trip form), so two different rates
    never share a limit and ``10`` and ``10.0`` do.
    """
    return f"{algorithm}:{check_rate(rate)!r}"


def idle_horizon(algorithm: RateLimitAlgorithm, rate: float, max_queue_delay: float) -> float:
    """Seconds after a request beyond which the limit's state decides like a fresh one.

    Stored state may be dropped once this long idle: the token bucket has refilled, the leaky
    bucket's queue has drained, the fixed window has ended, the sliding window's two counts
    have aged out.
    """
    rate = check_rate(rate)
    if algorithm == "token_bucket":
        return max(rate, 1.0) / rate
    if algorithm == "leaky_bucket":
        return max_queue_delay + 1.0 / rate
    if algorithm == "fixed_window":
        return 1.0
    return 2.0


class Limit(Protocol):
    """The state of one limit (one algorithm at one rate)."""

    def acquire(self, now: float) -> Decision:
        """Decide one request arriving at ``now`` and update the state."""
        ...


@dataclass(slots=True)
class TokenBucket:
    """``token_bucket``: ``tokens`` left as of ``updated``; ``None`` before the first request."""

    rate: float
    tokens: float | None = None
    updated: float = 0.0

    def acquire(self, now: float) -> Decision:
        capacity = max(self.rate, 1.0)
        tokens = capacity if self.tokens is None else self.tokens
        updated = now if self.tokens is None else self.updated
        elapsed = max(0.0, now - updated)
        tokens = min(capacity, tokens + elapsed * self.rate)
        self.updated = max(updated, now)
        allowed = tokens >= 1.0 - EPSILON
        self.tokens = tokens - 1.0 if allowed else tokens
        return Decision(allowed=allowed)


@dataclass(slots=True)
class LeakyBucket:
    """``leaky_bucket``: ``next_free`` is the earliest slot not yet given; ``None`` if never."""

    rate: float
    max_queue_delay: float = DEFAULT_MAX_QUEUE_DELAY
    next_free: float | None = None

    def acquire(self, now: float) -> Decision:
        slot = now if self.next_free is None else max(now, self.next_free)
        delay = slot - now
        if delay > self.max_queue_delay + EPSILON:
            return Decision(allowed=False)
        self.next_free = slot + 1.0 / self.rate
        return Decision(allowed=True, delay=delay)


@dataclass(slots=True)
class FixedWindow:
    """``fixed_window``: ``count`` requests admitted in the window starting at ``window``."""

    rate: float
    window: float | None = None
    count: int = 0

    def acquire(self, now: float) -> Decision:
        window = float(math.floor(now))
        if self.window is None or window > self.window:
            self.window = window
            self.count = 0
        if self.count < self.rate:
            self.count += 1
            return Decision(allowed=True)
        return Decision(allowed=False)


@dataclass(slots=True)
class SlidingWindow:
    """``sliding_window``: counts of the window starting at ``start`` and of the one before."""

    rate: float
    start: float | None = None
    prev: int = 0
    curr: int = 0

    def acquire(self, now: float) -> Decision:
        window = float(math.floor(now))
        if self.start is None or window > self.start + 1.0:
            self.start, self.prev, self.curr = window, 0, 0
        elif window == self.start + 1.0:
            self.start, self.prev, self.curr = window, self.curr, 0
        elapsed = max(0.0, now - self.start)
        estimate = self.prev * (1.0 - elapsed) + self.curr
        if estimate < self.rate - EPSILON:
            self.curr += 1
            return Decision(allowed=True)
        return Decision(allowed=False)


def new_limit(
    algorithm: RateLimitAlgorithm,
    rate: float,
    max_queue_delay: float = DEFAULT_MAX_QUEUE_DELAY,
) -> Limit:
    """A fresh limit of ``algorithm`` at ``rate`` req/s."""
    rate = check_rate(rate)
    if algorithm == "token_bucket":
        return TokenBucket(rate)
    if algorithm == "leaky_bucket":
        return LeakyBucket(rate, max_queue_delay)
    if algorithm == "fixed_window":
        return FixedWindow(rate)
    if algorithm == "sliding_window":
        return SlidingWindow(rate)
    raise ValueError(f"unknown rate limiting algorithm {algorithm!r}")
