"""When requests are due in an open-model run.

For a constant rate the i-th request is due at exactly ``i / rate`` seconds after the start,
computed from the start rather than accumulated, so float error never drifts the schedule.
For a rate that is a function of elapsed time (ramps, peaks), the k-th request is due when the
integral of the rate crosses k; one request is also due at 0 when the rate there is positive,
so a constant function gives the same schedule as the constant. The integral is taken over a
fixed grid, with the rate linear inside each step, which is exact for piecewise-linear shapes
whose corners fall on the grid.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Final

Rate = float | Callable[[float], float]

STEP_S: Final = 0.01
MIN_SLEEP_S: Final = 0.001
_EPSILON: Final = 1e-9


@dataclass(frozen=True, slots=True)
class Schedule:
    """Offsets (seconds from the start) of due requests, and how many there are."""

    planned: int
    offsets: Iterator[float]


def schedule(rate: Rate, duration: float) -> Schedule:
    if not (duration > 0 and math.isfinite(duration)):
        raise ValueError("duration must be a finite number of seconds > 0")
    if callable(rate):
        return Schedule(_planned_for(rate, duration), _offsets_for(rate, duration))
    if not (rate > 0 and math.isfinite(rate)):
        raise ValueError("rate must be a finite number of requests per second > 0")
    planned = max(1, math.ceil(rate * duration - _EPSILON))
    return Schedule(planned, (i / rate for i in range(planned)))


def _rate_at(rate: Callable[[float], float], t: float) -> float:
    value = float(rate(t))
    return value if value > 0 and math.isfinite(value) else 0.0


def _segments(
    rate: Callable[[float], float], duration: float
) -> Iterator[tuple[float, float, float, float, float]]:
    """(start, length, rate at start, slope, integral at start) for each grid step."""
    steps = math.ceil(duration / STEP_S - _EPSILON)
    integral = 0.0
    r_a = _rate_at(rate, 0.0)
    for index in range(steps):
        t_a = index * STEP_S
        t_b = min((index + 1) * STEP_S, duration)
        r_b = _rate_at(rate, t_b)
        length = t_b - t_a
        yield t_a, length, r_a, (r_b - r_a) / length, integral
        integral += (r_a + r_b) / 2 * length
        r_a = r_b


def _planned_for(rate: Callable[[float], float], duration: float) -> int:
    total = 0.0
    for _t_a, length, r_a, slope, integral in _segments(rate, duration):
        total = integral + (r_a + r_a + slope * length) / 2 * length
    first = 1 if _rate_at(rate, 0.0) > 0 else 0
    return first + max(0, math.ceil(total - _EPSILON) - 1)


def _offsets_for(rate: Callable[[float], float], duration: float) -> Iterator[float]:
    if _rate_at(rate, 0.0) > 0:
        yield 0.0
    k = 1
    for t_a, length, r_a, slope, integral in _segments(rate, duration):
        end = integral + (r_a + r_a + slope * length) / 2 * length
        while k < end - _EPSILON:
            yield t_a + _crossing(k - integral, r_a, slope, length)
            k += 1


def _crossing(needed: float, r_a: float, slope: float, length: float) -> float:
    """Time tau in [0, length] where r_a * tau + slope * tau**2 / 2 reaches ``needed``."""
    root = math.sqrt(max(0.0, r_a * r_a + 2 * slope * needed))
    denominator = r_a + root
    if denominator <= 0:
        return length
    return min(length, max(0.0, 2 * needed / denominator))


async def sleep_until(deadline: float) -> None:
    """Sleep until a ``perf_counter`` instant, never returning before it.

    Event-loop timers have millisecond granularity (uvloop rounds delays to the nearest ms
    and measures from the iteration's cached time), so a timer can fire early; re-sleeping
    for the sub-millisecond rest would spin, so the last sleep is at least one tick.
    """
    delay = deadline - time.perf_counter()
    while delay > 0:
        await asyncio.sleep(max(delay, MIN_SLEEP_S))
        delay = deadline - time.perf_counter()
