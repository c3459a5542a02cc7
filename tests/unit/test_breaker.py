"""The circuit breaker's transitions, exactly, on a scripted clock and failure sequence."""

from __future__ import annotations

import pytest

from failure_lab.control import CircuitBreakerConfig
from simulator.breaker import Admission, CircuitBreaker, State


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def breaker(
    clock: FakeClock, threshold: int = 3, open_seconds: float = 5.0
) -> tuple[CircuitBreaker, list[tuple[State, State]]]:
    seen: list[tuple[State, State]] = []
    config = CircuitBreakerConfig(
        enabled=True, failure_threshold=threshold, open_seconds=open_seconds
    )
    made = CircuitBreaker(config, clock=clock, on_transition=lambda a, b: seen.append((a, b)))
    return made, seen


def state(b: CircuitBreaker) -> State:
    return b.state


def attempt(b: CircuitBreaker, success: bool) -> State | None:
    """One attempt through the breaker, as the pipeline makes it; refused attempts fail."""
    admission = b.acquire()
    assert admission is not Admission.REFUSED
    return b.record(success, admission is Admission.PROBE)


def test_opens_exactly_at_the_nth_consecutive_failure() -> None:
    clock = FakeClock()
    b, seen = breaker(clock, threshold=3)
    assert attempt(b, False) is None
    assert attempt(b, False) is None
    assert state(b) == "closed"
    assert b.consecutive_failures == 2
    assert attempt(b, False) == "open"
    assert state(b) == "open"
    assert b.trips == 1
    assert seen == [("closed", "open")]


def test_a_success_resets_the_count() -> None:
    clock = FakeClock()
    b, seen = breaker(clock, threshold=3)
    for _ in range(2):
        attempt(b, False)
    assert attempt(b, True) is None
    assert b.consecutive_failures == 0
    attempt(b, False)
    attempt(b, False)
    assert state(b) == "closed"
    assert attempt(b, False) == "open"
    assert seen == [("closed", "open")]


def test_fails_fast_while_open_until_open_seconds_have_passed() -> None:
    clock = FakeClock()
    b, _ = breaker(clock, threshold=1, open_seconds=5.0)
    attempt(b, False)
    for elapsed in (0.0, 1.0, 4.999):
        clock.now = 100.0 + elapsed
        assert b.acquire() is Admission.REFUSED
        assert state(b) == "open"
        assert b.retry_after() == pytest.approx(5.0 - elapsed)
    clock.now = 105.0
    assert b.retry_after() == 0.0
    # Past open_seconds the state is still open until a request takes the probe.
    assert state(b) == "open"


def test_half_open_lets_exactly_one_probe_and_its_success_closes() -> None:
    clock = FakeClock()
    b, seen = breaker(clock, threshold=2, open_seconds=5.0)
    attempt(b, False)
    attempt(b, False)
    clock.now += 5.0
    assert b.acquire() is Admission.PROBE
    assert state(b) == "half_open"
    # While the probe is out, everyone else still fails fast.
    assert b.acquire() is Admission.REFUSED
    assert b.acquire() is Admission.REFUSED
    # An attempt that started before the breaker opened does not decide anything.
    assert b.record(True, probe=False) is None
    assert state(b) == "half_open"
    assert b.record(True, probe=True) == "closed"
    assert state(b) == "closed"
    assert b.consecutive_failures == 0
    assert b.acquire() is Admission.PASS
    assert seen == [("closed", "open"), ("open", "half_open"), ("half_open", "closed")]
    assert b.trips == 1


def test_a_failed_probe_reopens_for_another_full_period() -> None:
    clock = FakeClock()
    b, seen = breaker(clock, threshold=1, open_seconds=2.0)
    attempt(b, False)
    clock.now += 2.5
    assert b.acquire() is Admission.PROBE
    clock.now += 0.5  # the probe takes time; the new period starts when it fails
    assert b.record(False, probe=True) == "open"
    assert b.trips == 2
    assert b.retry_after() == pytest.approx(2.0)
    clock.now += 1.999
    assert b.acquire() is Admission.REFUSED
    clock.now += 0.001
    assert b.acquire() is Admission.PROBE
    assert seen == [
        ("closed", "open"),
        ("open", "half_open"),
        ("half_open", "open"),
        ("open", "half_open"),
    ]


def test_a_scripted_sequence_counts_trips_and_never_lets_two_probes() -> None:
    clock = FakeClock()
    b, _ = breaker(clock, threshold=2, open_seconds=1.0)
    script = [False, True, False, False]  # one reset, then a trip at the 2nd in a row
    for success in script:
        attempt(b, success)
    assert (state(b), b.trips) == ("open", 1)
    for _ in range(3):  # three failed probes, one per period
        clock.now += 1.0
        assert b.acquire() is Admission.PROBE
        assert b.acquire() is Admission.REFUSED
        assert b.record(False, probe=True) == "open"
    assert b.trips == 4
    clock.now += 1.0
    assert attempt(b, True) == "closed"
    assert b.trips == 4


def test_an_abandoned_probe_frees_the_slot() -> None:
    clock = FakeClock()
    b, _ = breaker(clock, threshold=1, open_seconds=1.0)
    attempt(b, False)
    clock.now += 1.0
    assert b.acquire() is Admission.PROBE
    b.abandon(probe=True)
    assert b.acquire() is Admission.PROBE
    assert b.acquire() is Admission.REFUSED


def test_failures_while_open_neither_extend_nor_count() -> None:
    clock = FakeClock()
    b, _ = breaker(clock, threshold=1, open_seconds=3.0)
    attempt(b, False)
    clock.now += 2.0
    # Late results of attempts already in flight when it opened.
    assert b.record(False, probe=False) is None
    assert b.trips == 1
    assert b.retry_after() == pytest.approx(1.0)


def test_turning_it_off_resets_to_closed() -> None:
    clock = FakeClock()
    b, seen = breaker(clock, threshold=1)
    attempt(b, False)
    assert state(b) == "open"
    b.configure(CircuitBreakerConfig(enabled=False, failure_threshold=1, open_seconds=5))
    assert (b.enabled, b.state, b.consecutive_failures) == (False, "closed", 0)
    assert seen[-1] == ("open", "closed")
    b.configure(CircuitBreakerConfig(enabled=True, failure_threshold=2, open_seconds=5))
    assert attempt(b, False) is None
    assert attempt(b, False) == "open"


def test_a_new_threshold_applies_to_the_next_failure() -> None:
    clock = FakeClock()
    b, _ = breaker(clock, threshold=5)
    for _ in range(3):
        attempt(b, False)
    b.configure(CircuitBreakerConfig(enabled=True, failure_threshold=2, open_seconds=5))
    assert state(b) == "closed"
    assert attempt(b, False) == "open"
