"""A circuit breaker in front of the simulated database.

Retries against a database that keeps failing multiply its load exactly when it can least
take it; a breaker stops that. After ``failure_threshold`` consecutive failed attempts
(retries' failures count too) it opens, and requests fail fast without touching the
database. Once ``open_seconds`` have passed, the next request becomes the one probe of the
half-open state: its success closes the breaker, its failure opens it again. The clock is a
dependency so every transition can be checked exactly.

The breaker only decides; the pipeline's database stage turns its answers into spans, events
and responses, and ``on_transition`` lets the owner keep metrics in step with the state.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable
from typing import Literal

from failure_lab.control import CircuitBreakerConfig

State = Literal["closed", "open", "half_open"]
STATES: tuple[State, ...] = ("closed", "open", "half_open")
Clock = Callable[[], float]
OnTransition = Callable[[State, State], None]


class Admission(enum.Enum):
    """What ``acquire`` decided for one database attempt."""

    PASS = "pass"
    """Closed: go ahead."""
    PROBE = "probe"
    """The breaker just went half-open and this attempt is its one probe."""
    REFUSED = "refused"
    """Open, or half-open with the probe still out: fail fast."""


def _ignore(_: State, __: State) -> None:
    return None


class CircuitBreaker:
    """Consecutive-failure breaker; ``enabled`` is a plain attribute for a cheap check."""

    def __init__(
        self,
        config: CircuitBreakerConfig,
        *,
        clock: Clock = time.monotonic,
        on_transition: OnTransition = _ignore,
    ) -> None:
        self._clock = clock
        self._on_transition = on_transition
        self._config = config
        self.enabled = config.enabled
        self._state: State = "closed"
        self._failures = 0
        self._opened_at = 0.0
        self._probing = False
        self.trips = 0

    @property
    def config(self) -> CircuitBreakerConfig:
        return self._config

    @property
    def state(self) -> State:
        """``open`` stays ``open`` past ``open_seconds`` until a request takes the probe."""
        return self._state

    @property
    def consecutive_failures(self) -> int:
        return self._failures

    def configure(self, config: CircuitBreakerConfig) -> None:
        """Apply a new config at once; turning the breaker off resets it to closed."""
        self._config = config
        self.enabled = config.enabled
        if not config.enabled:
            self._failures = 0
            self._probing = False
            self._move("closed")

    def retry_after(self) -> float:
        """Seconds until a probe may go through (0 when it may now, or one is out)."""
        if self._state != "open":
            return 0.0
        return max(0.0, self._opened_at + self._config.open_seconds - self._clock())

    def acquire(self) -> Admission:
        """Decide whether the next database attempt may run."""
        if self._state == "closed":
            return Admission.PASS
        if self._state == "open" and self.retry_after() <= 0:
            self._probing = True
            self._move("half_open")
            return Admission.PROBE
        if self._state == "half_open" and not self._probing:
            # The previous probe was abandoned before it had a result: this one replaces it.
            self._probing = True
            return Admission.PROBE
        return Admission.REFUSED

    def record(self, success: bool, probe: bool) -> State | None:
        """Count one finished attempt; the new state if this attempt changed it.

        Results of attempts that started before the breaker opened are ignored while it is
        open or half-open: only the probe decides how it leaves those states.
        """
        if probe:
            self._probing = False
            if self._state != "half_open":
                return None
            if success:
                self._failures = 0
                self._move("closed")
                return "closed"
            self._trip()
            return "open"
        if self._state != "closed":
            return None
        if success:
            self._failures = 0
            return None
        self._failures += 1
        if self._failures >= self._config.failure_threshold:
            self._trip()
            return "open"
        return None

    def abandon(self, probe: bool) -> None:
        """An attempt ended without a result (cancelled); a lost probe frees its slot."""
        if probe:
            self._probing = False

    def _trip(self) -> None:
        self._opened_at = self._clock()
        self.trips += 1
        self._move("open")

    def _move(self, state: State) -> None:
        old, self._state = self._state, state
        if old != state:
            self._on_transition(old, state)
