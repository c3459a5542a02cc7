"""Range selection, ``rate``/``increase``, ``sum`` and ``histogram_quantile`` as Prometheus
3.13.1 computes them.

In embedded mode the shim answers from an in-process sample ring instead of a Prometheus
server, and both modes must give the same numbers for the same samples. These functions
therefore follow Prometheus 3.13.1, the version ``.env`` pins for the stack, rule by rule and
down to the order of the floating-point operations, so the results are equal bit for bit rather
than merely close: range selection (``matrixIterSlice`` in promql/engine.go), ``extrapolatedRate``
(promql/functions.go), the compensated addition of ``sum`` (``aggregation`` in
promql/engine.go, util/kahansum) and ``BucketQuantile`` (promql/quantile.go). The rules were
read from the source of that release (Go module v0.313.1) and are checked against its
``promtool test rules``, which compares without tolerance: on random series with resets, gaps
and stale markers (tests/unit/test_promql.py) and on each edge below
(tests/unit/test_promql_edges.py); and against a running Prometheus 3.13.1 on the samples it
scraped (tests/support/stored.py).

Where Prometheus 3 differs from 2.x, this follows 3.13.1:

- a range ``[W]`` ending at ``t`` is left-open: a sample at exactly ``t - W`` is not selected
  (and an instant selector's five-minute lookback likewise);
- the gap at the start of a range is compared with the extrapolation threshold first and only
  then cut to a counter's zero point (2.x cut first, then compared);
- ``sum`` adds with Kahan-Neumaier compensation, not plainly;
- ``histogram_quantile`` treats bucket counts that differ by a relative 1e-12 or less as equal
  before forcing them monotonic.

Bit for bit as built for amd64 (Prometheus's release builds, GOAMD64=v1). Go may fuse a
multiplication and an addition into one FMA instruction, and does on arm64 (and on amd64 at
GOAMD64=v3): there the interpolation inside a bucket can differ in its last bit.

Time is handled at millisecond resolution, as Prometheus stores it: every timestamp given in
seconds is rounded to whole milliseconds before durations are taken, and a duration in
milliseconds is turned back into seconds the way Prometheus does.

Pure functions, no I/O, no state.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Hashable, Iterable, Sequence
from itertools import islice
from operator import lt
from typing import Final, TypeVar

EXTRAPOLATION_THRESHOLD: Final = 1.1
"""A gap to a range boundary is extrapolated over only if it is shorter than this many average
sample intervals; otherwise half an average interval is assumed."""
SMALL_DELTA_TOLERANCE: Final = 1e-12
"""Adjacent bucket counts this close (relative) are taken as equal by ``histogram_quantile``:
the difference is float rounding, not observations."""
MIN_NORMAL: Final = sys.float_info.min
"""The smallest positive normal float64, below which ``almost_equal`` compares absolutely."""

K = TypeVar("K", bound=Hashable)


def to_millis(seconds: float) -> int:
    """``seconds`` as whole milliseconds, the resolution of Prometheus timestamps."""
    return round(seconds * 1000)


def range_seconds(range_ms: int) -> float:
    """A range in milliseconds as seconds, computed as Go's ``time.Duration.Seconds()``.

    Whole seconds plus the remaining nanoseconds divided by 1e9: for ranges that are not whole
    seconds this can differ in the last bit from ``range_ms / 1000``.
    """
    if range_ms < 0:
        raise ValueError("a range cannot be negative")
    whole, rest = divmod(range_ms, 1000)
    return whole + rest * 1_000_000 / 1e9


def in_range(moment_ms: int, range_start_ms: int, range_end_ms: int) -> bool:
    """Whether a sample at ``moment_ms`` is selected by a range ``(start, end]``: the end is
    included, the start is not (Prometheus 3; 2.x included both)."""
    return range_start_ms < moment_ms <= range_end_ms


def raw_change(values: Sequence[float], is_counter: bool) -> float:
    """Last value minus first value; for a counter, corrected for resets.

    A counter reset is any value lower than the one before it: the value before the drop is
    added back, as if the counter had continued from there. Gauges (``is_counter=False``)
    are taken as they are. ``values`` must not be empty.
    """
    result = values[-1] - values[0]
    if is_counter and any(map(lt, islice(values, 1, None), values)):
        previous = values[0]
        for value in islice(values, 1, None):
            if value < previous:
                result += previous
            previous = value
    return result


def extrapolate(
    change: float,
    first_value: float,
    first_ms: int,
    last_ms: int,
    count: int,
    range_start_ms: int,
    range_end_ms: int,
    *,
    is_counter: bool,
    is_rate: bool,
) -> float:
    """Extend ``change``, seen between the first and last of ``count`` samples, to the range.

    The rules of Prometheus 3.13.1, in its order:

    - the average sample interval is (last - first) / (count - 1);
    - at each end, if the gap between the sample and the range boundary is shorter than 1.1
      average intervals, the change is extrapolated over the whole gap; otherwise over half
      an average interval only (the series probably starts or ends inside the range);
    - then, for a counter that went up (``change > 0``) from a non-negative first value, the
      extrapolation at the start is cut to the time at which the counter, continued backwards
      at its average slope, would have been zero, if that is shorter: extrapolation never
      implies negative counts. (2.x made this cut before comparing with the threshold: a long
      gap whose zero point lay within 1.1 intervals was extrapolated to the zero point, not
      by half an interval.);
    - ``increase`` is the extrapolated change; ``rate`` (``is_rate``) divides it by the range
      in seconds (the whole selector range, not the sampled interval).

    Timestamps are milliseconds; the range is ``(range_start_ms, range_end_ms]``.
    """
    if count < 2 or last_ms <= first_ms:
        raise ValueError("need at least two samples in increasing time order")
    if range_end_ms <= range_start_ms:
        raise ValueError("a range must be positive")
    duration_to_start = (first_ms - range_start_ms) / 1000
    duration_to_end = (range_end_ms - last_ms) / 1000
    sampled_interval = (last_ms - first_ms) / 1000
    average_interval = sampled_interval / (count - 1)

    threshold = average_interval * EXTRAPOLATION_THRESHOLD
    if duration_to_start >= threshold:
        duration_to_start = average_interval / 2
    if is_counter and change > 0 and first_value >= 0:
        duration_to_zero = sampled_interval * (first_value / change)
        if duration_to_zero < duration_to_start:
            duration_to_start = duration_to_zero
    if duration_to_end >= threshold:
        duration_to_end = average_interval / 2

    factor = (sampled_interval + duration_to_start + duration_to_end) / sampled_interval
    if is_rate:
        factor /= range_seconds(range_end_ms - range_start_ms)
    return change * factor


def extrapolated_rate(
    points: Sequence[tuple[float, float]],
    range_start: float,
    range_end: float,
    is_counter: bool,
    is_rate: bool,
) -> float | None:
    """PromQL ``rate`` (``is_counter``, ``is_rate``), ``increase`` (``is_counter``) or
    ``delta`` (neither) over the range ``(range_start, range_end]`` of one series.

    ``points`` are ``(timestamp seconds, value)`` in increasing time order, stale markers
    already left out; those outside the range are not selected (see :func:`in_range`). None
    when fewer than two are selected: Prometheus drops such a series from the result. See
    :func:`raw_change` for counter resets and :func:`extrapolate` for the extrapolation rules.
    """
    start_ms, end_ms = to_millis(range_start), to_millis(range_end)
    selected = [
        (moment, value)
        for moment, value in ((to_millis(t), v) for t, v in points)
        if in_range(moment, start_ms, end_ms)
    ]
    if len(selected) < 2:
        return None
    values = [value for _, value in selected]
    return extrapolate(
        raw_change(values, is_counter),
        values[0],
        selected[0][0],
        selected[-1][0],
        len(selected),
        start_ms,
        end_ms,
        is_counter=is_counter,
        is_rate=is_rate,
    )


def kahan_add(increment: float, total: float, compensation: float) -> tuple[float, float]:
    """One step of Kahan-Neumaier summation: the new total and compensation.

    The compensation collects the rounding error of each addition, taken from whichever of the
    two terms is larger in magnitude; it is reset when the total overflows to an infinity.
    """
    new_total = total + increment
    if math.isinf(new_total):
        compensation = 0.0
    elif abs(total) >= abs(increment):
        compensation += (total - new_total) + increment
    else:
        compensation += (increment - new_total) + total
    return new_total, compensation


def sum_by(pairs: Iterable[tuple[K, float]]) -> dict[K, float]:
    """PromQL ``sum`` of floats per group: ``pairs`` are ``(group, value)`` in the order the
    series are met. Each group starts from its first value, adds the others with
    :func:`kahan_add`, and ends as total plus compensation.

    The order still matters, though far less than for plain addition: Prometheus meets series
    in the order its storage holds them (for a scrape, the order they were first exposed).
    """
    running: dict[K, tuple[float, float]] = {}
    for key, value in pairs:
        previous = running.get(key)
        running[key] = (value, 0.0) if previous is None else kahan_add(value, *previous)
    return {key: total + compensation for key, (total, compensation) in running.items()}


def bucket_quantile(q: float, buckets: Sequence[tuple[float, float]]) -> float:
    """The ``q``-quantile of a classic histogram, as ``histogram_quantile`` in Prometheus 3.13.1.

    ``buckets`` are ``(upper bound, cumulative count)`` in any order. The rules, in order:

    - ``q`` NaN gives NaN, ``q < 0`` gives -Inf, ``q > 1`` gives +Inf (whatever the buckets);
    - no buckets, or a highest upper bound that is not +Inf, gives NaN;
    - buckets with the same upper bound are merged (counts added); then, from the lowest
      bucket up, a count equal to the last one kept within a relative 1e-12 (float rounding,
      see :func:`almost_equal`) is set to it, and a count lower than it is raised to it;
    - fewer than two buckets (only +Inf) or no observations (+Inf count 0) gives NaN;
    - the rank is ``q`` times the +Inf count, and the quantile falls in the first bucket whose
      count reaches it. In the +Inf bucket, the answer is the highest finite upper bound. In
      the lowest bucket with an upper bound <= 0, the answer is that bound. Otherwise the
      answer is interpolated linearly inside the bucket, from the previous upper bound (0 for
      the lowest bucket) to this one.

    A bucket with no observations can make the interpolation 0/0 (``q == 0`` with an empty
    lowest bucket): the answer is then NaN, as in Prometheus.
    """
    if math.isnan(q):
        return math.nan
    if q < 0:
        return -math.inf
    if q > 1:
        return math.inf
    if not buckets:
        return math.nan
    ordered = sorted(buckets, key=lambda bucket: bucket[0])
    if not math.isinf(ordered[-1][0]) or ordered[-1][0] < 0:
        return math.nan

    bounds, counts = _coalesce(ordered)
    _ignore_small_deltas_and_make_monotonic(counts)
    if len(bounds) < 2:
        return math.nan
    observations = counts[-1]
    if observations == 0:
        return math.nan
    rank = q * observations
    index = _search(len(counts) - 1, counts, rank)
    if index == len(counts) - 1:
        return bounds[-2]
    if index == 0 and bounds[0] <= 0:
        return bounds[0]
    bucket_start = 0.0
    bucket_end = bounds[index]
    count = counts[index]
    if index > 0:
        bucket_start = bounds[index - 1]
        count -= counts[index - 1]
        rank -= counts[index - 1]
    return bucket_start + (bucket_end - bucket_start) * divide(rank, count)


def _coalesce(ordered: Sequence[tuple[float, float]]) -> tuple[list[float], list[float]]:
    bounds = [ordered[0][0]]
    counts = [ordered[0][1]]
    for bound, count in islice(ordered, 1, None):
        if bound == bounds[-1]:
            counts[-1] += count
        else:
            bounds.append(bound)
            counts.append(count)
    return bounds, counts


def _ignore_small_deltas_and_make_monotonic(counts: list[float]) -> None:
    """Prometheus's ``ensureMonotonicAndIgnoreSmallDeltas``, in place. ``kept`` is the last
    count taken as it was: a count within the tolerance of it, or lower, is set to it."""
    kept = counts[0]
    for i in range(1, len(counts)):
        current = counts[i]
        if current == kept:
            continue
        if almost_equal(kept, current, SMALL_DELTA_TOLERANCE) or current < kept:
            counts[i] = kept
            continue
        kept = current


def almost_equal(a: float, b: float, epsilon: float) -> bool:
    """Prometheus's ``almost.Equal``: ``a`` and ``b`` differ by less than ``epsilon`` times
    their summed magnitudes (times the smallest normal float when either is 0 or both are
    tiny). Two NaNs are equal here. (Prometheus also tells its stale marker apart from other
    NaNs; a count computed from samples is never one, as arithmetic does not keep it.)"""
    if math.isnan(a) and math.isnan(b):
        return True
    if a == b:
        return True
    magnitude = abs(a) + abs(b)
    difference = abs(a - b)
    if a == 0 or b == 0 or magnitude < MIN_NORMAL:
        return difference < epsilon * MIN_NORMAL
    return difference / min(magnitude, sys.float_info.max) < epsilon


def _search(n: int, counts: Sequence[float], rank: float) -> int:
    """The first index below ``n`` whose count reaches ``rank``, else ``n``, found by the
    same bisection as Go's ``sort.Search`` (which matters only for NaN counts)."""
    low, high = 0, n
    while low < high:
        middle = (low + high) // 2
        if not counts[middle] >= rank:
            low = middle + 1
        else:
            high = middle
    return low


def divide(a: float, b: float) -> float:
    """IEEE 754 division, as in Go: x/0 is ±Inf and 0/0 is NaN instead of an exception."""
    if b != 0:
        return a / b
    if a == 0 or math.isnan(a):
        return math.nan
    return math.copysign(math.inf, a) * math.copysign(1.0, b)
