"""``rate``/``increase`` extrapolation and ``histogram_quantile`` as Prometheus 2.42 computes them.

In embedded mode the shim answers from an in-process sample ring instead of a Prometheus
server, and both modes must give the same numbers for the same samples. These functions
therefore follow Prometheus's ``extrapolatedRate`` (promql/functions.go) and ``bucketQuantile``
(promql/quantile.go) rule by rule, down to the order of the floating-point operations, so the
results are equal bit for bit rather than merely close.

Time is handled at millisecond resolution, as Prometheus stores it: every timestamp given in
seconds is rounded to whole milliseconds before durations are taken, and a duration in
milliseconds is turned back into seconds the way Prometheus does.

Pure functions, no I/O, no state.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from itertools import islice
from operator import lt
from typing import Final

EXTRAPOLATION_THRESHOLD: Final = 1.1
"""A gap to a range boundary is extrapolated over only if it is shorter than this many average
sample intervals; otherwise half an average interval is assumed."""


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

    The rules of Prometheus 2.42:

    - the average sample interval is (last - first) / (count - 1);
    - at each end, if the gap between the sample and the range boundary is shorter than 1.1
      average intervals, the change is extrapolated over the whole gap; otherwise over half
      an average interval only (the series probably starts or ends inside the range);
    - for a counter that went up (``change > 0``) from a non-negative first value, the gap at
      the start is first cut to the time at which the counter, continued backwards at its
      average slope, would have been zero: extrapolation never implies negative counts;
    - ``increase`` is the extrapolated change; ``rate`` (``is_rate``) divides it by the range
      in seconds (the whole selector range, not the sampled interval).

    Timestamps are milliseconds; the range is ``[range_start_ms, range_end_ms]``.
    """
    if count < 2 or last_ms <= first_ms:
        raise ValueError("need at least two samples in increasing time order")
    if range_end_ms <= range_start_ms:
        raise ValueError("a range must be positive")
    duration_to_start = (first_ms - range_start_ms) / 1000
    duration_to_end = (range_end_ms - last_ms) / 1000
    sampled_interval = (last_ms - first_ms) / 1000
    average_interval = sampled_interval / (count - 1)

    if is_counter and change > 0 and first_value >= 0:
        duration_to_zero = sampled_interval * (first_value / change)
        if duration_to_zero < duration_to_start:
            duration_to_start = duration_to_zero

    threshold = average_interval * EXTRAPOLATION_THRESHOLD
    extrapolate_to = sampled_interval
    if duration_to_start < threshold:
        extrapolate_to += duration_to_start
    else:
        extrapolate_to += average_interval / 2
    if duration_to_end < threshold:
        extrapolate_to += duration_to_end
    else:
        extrapolate_to += average_interval / 2

    factor = extrapolate_to / sampled_interval
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
    ``delta`` (neither) of the samples of one series in the range ``[range_start, range_end]``.

    ``points`` are ``(timestamp seconds, value)`` in increasing time order, already restricted
    to the range (both ends included, as in Prometheus 2.42). None when there are fewer than
    two points: Prometheus drops such a series from the result. See :func:`raw_change` for
    counter resets and :func:`extrapolate` for the extrapolation rules.
    """
    if len(points) < 2:
        return None
    values = [value for _, value in points]
    return extrapolate(
        raw_change(values, is_counter),
        values[0],
        to_millis(points[0][0]),
        to_millis(points[-1][0]),
        len(points),
        to_millis(range_start),
        to_millis(range_end),
        is_counter=is_counter,
        is_rate=is_rate,
    )


def bucket_quantile(q: float, buckets: Sequence[tuple[float, float]]) -> float:
    """The ``q``-quantile of a classic histogram, as ``histogram_quantile`` in Prometheus 2.42.

    ``buckets`` are ``(upper bound, cumulative count)`` in any order. The rules, in order:

    - ``q`` NaN gives NaN, ``q < 0`` gives -Inf, ``q > 1`` gives +Inf (whatever the buckets);
    - no buckets, or a highest upper bound that is not +Inf, gives NaN;
    - buckets with the same upper bound are merged (counts added), then counts are made
      monotonic: a count lower than one of a lower bucket is raised to it;
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
    _make_monotonic(counts)
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


def _make_monotonic(counts: list[float]) -> None:
    highest = counts[0]
    for i in range(1, len(counts)):
        if counts[i] > highest:
            highest = counts[i]
        elif counts[i] < highest:
            counts[i] = highest


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
