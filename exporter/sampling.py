"""A bounded ring of registry snapshots, queried with the semantics of PromQL range selectors.

In embedded mode there is no Prometheus to scrape the app: :class:`SampleRing` plays its part.
It samples the app's own ``CollectorRegistry`` (once a second from :meth:`SampleRing.run`),
keeps the newest ``capacity`` snapshots, and answers ``sum by (...) (rate(...))``,
``increase``, ``histogram_quantile`` and instant sums with the numbers Prometheus 3.13.1 would
give for the same samples (:mod:`exporter.promql` does the arithmetic and says where that
differs from Prometheus 2).

Storage is columnar: every series (sample name plus labels) gets a column number the first
time it is seen, and a snapshot is one ``array('d')`` of values indexed by column, 8 bytes a
series. A series missing from a snapshot (removed from the registry) holds Prometheus's stale
marker there, so range selectors skip it and instant selectors stop seeing it, as after a
scrape that no longer exposes the series. Timestamps are whole milliseconds, as in Prometheus.

Matching is by label equality only (``{label="value"}``; an empty value matches series without
the label, as in PromQL). Sample timestamps set by custom collectors are ignored: every sample
is taken at the snapshot's time. ``_created`` series are not kept: nothing rates a timestamp.
"""

from __future__ import annotations

import asyncio
import logging
import math
import struct
import time
from array import array
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from types import MappingProxyType
from typing import Final

from prometheus_client import CollectorRegistry

from exporter.promql import bucket_quantile, extrapolate, raw_change, sum_by, to_millis

logger = logging.getLogger(__name__)

STALE_BITS: Final = 0x7FF0000000000002
"""Prometheus's stale marker: a NaN with this exact bit pattern."""
STALE_NAN: Final[float] = struct.unpack("<d", struct.pack("<Q", STALE_BITS))[0]
LOOKBACK_SECONDS: Final = 300.0
"""How far back an instant selector looks for a sample (Prometheus's default lookback); as a
range, left-open: a sample exactly this old is not seen."""
_CREATED_SUFFIX: Final = MappingProxyType(
    {
        "counter": "_created",
        "histogram": "_created",
        "summary": "_created",
        "gaugehistogram": "_gcreated",
    }
)
_STALE_BYTES: Final = struct.pack("<Q", STALE_BITS)

Matchers = Mapping[str, str]
Where = Callable[[Mapping[str, str]], bool]
"""A further test of a series' labels, given only the labels the series has."""
Result = dict[tuple[str, ...], float]
"""Values keyed by the values of the ``by`` labels, in the order given ("" when absent)."""


def is_stale(value: float) -> bool:
    """Whether ``value`` is Prometheus's stale marker (not any other NaN)."""
    return math.isnan(value) and struct.pack("<d", value) == _STALE_BYTES


def scalar(result: Mapping[tuple[str, ...], float]) -> float | None:
    """The single value of a query result: None for no series, ValueError for several
    (group with ``by=()`` to get one)."""
    if not result:
        return None
    if len(result) > 1:
        raise ValueError(f"expected at most one series, got {len(result)}")
    return next(iter(result.values()))


class SampleRing:
    """The newest ``capacity`` snapshots of every sample in ``registry``.

    Queries take a range ``(at - window, at]``, left-open as in Prometheus 3: a snapshot at
    exactly ``at - window`` is not in it. ``at`` defaults to the newest snapshot's time;
    ``window`` and ``at`` are seconds. Sums are PromQL's (compensated, see
    :func:`exporter.promql.sum_by`), adding series in the order they first appeared.
    """

    def __init__(
        self,
        registry: CollectorRegistry,
        capacity: int,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if capacity < 2:
            raise ValueError("capacity must be at least 2 snapshots")
        self._registry = registry
        self._capacity = capacity
        self._clock = clock
        self._snapshots: deque[tuple[int, array[float], bool]] = deque(maxlen=capacity)
        self._columns: dict[tuple[str, tuple[tuple[str, str], ...]], int] = {}
        self._labels: list[dict[str, str]] = []
        self._by_name: dict[str, list[int]] = {}
        self._blank: array[float] = array("d")

    @property
    def capacity(self) -> int:
        return self._capacity

    def __len__(self) -> int:
        return len(self._snapshots)

    @property
    def newest(self) -> float | None:
        """Time of the newest snapshot in seconds, None before the first."""
        return self._snapshots[-1][0] / 1000 if self._snapshots else None

    @property
    def series_count(self) -> int:
        """Series seen so far (columns of a snapshot)."""
        return len(self._labels)

    def sample(self) -> bool:
        """Take one snapshot at ``clock()``; the oldest is dropped when the ring is full.

        A snapshot not later than the newest one (same millisecond, or the clock went back) is
        discarded, as Prometheus discards out-of-order samples. Returns whether it was kept.
        """
        now = to_millis(self._clock())
        if self._snapshots and now <= self._snapshots[-1][0]:
            return False
        row = array("d", self._blank)
        columns = self._columns
        for family in self._registry.collect():
            created = _CREATED_SUFFIX.get(family.type)
            skip = family.name + created if created else None
            for sample in family.samples:
                name = sample.name
                if name == skip or sample.native_histogram is not None:
                    continue
                key = (name, tuple(sample.labels.items()))
                column = columns.get(key)
                if column is None:
                    self._add_column(key, sample.labels)
                    row.append(sample.value)
                else:
                    row[column] = sample.value
        # Complete: every known series present and no NaN, so queries can skip the checks.
        self._snapshots.append((now, row, not any(map(math.isnan, row))))
        return True

    def _add_column(self, key: tuple[str, tuple[tuple[str, str], ...]], labels: Matchers) -> None:
        column = len(self._labels)
        self._columns[key] = column
        self._labels.append(dict(labels))
        self._by_name.setdefault(key[0], []).append(column)
        self._blank.append(STALE_NAN)

    async def run(self, interval: float = 1.0) -> None:
        """Sample every ``interval`` seconds, on whole multiples of it, until cancelled.

        A failing collector is logged and the loop goes on; cancellation only ever lands in
        the sleep, between two complete snapshots.
        """
        if interval <= 0:
            raise ValueError("interval must be positive")
        while True:
            try:
                self.sample()
            except Exception:
                logger.exception("sampling the metrics registry failed")
            await asyncio.sleep(interval - self._clock() % interval)

    def rate(
        self,
        name: str,
        window: float,
        matchers: Matchers | None = None,
        by: Sequence[str] = (),
        *,
        at: float | None = None,
        where: Where | None = None,
    ) -> Result:
        """``sum by (by) (rate(name{matchers}[window]))``: per-second rates of counters.
        ``where``, if given, must also hold for a series' labels for it to be selected."""
        return self._extrapolated(name, window, matchers, by, at, where, is_rate=True)

    def increase(
        self,
        name: str,
        window: float,
        matchers: Matchers | None = None,
        by: Sequence[str] = (),
        *,
        at: float | None = None,
        where: Where | None = None,
    ) -> Result:
        """``sum by (by) (increase(name{matchers}[window]))``: extrapolated counter growth."""
        return self._extrapolated(name, window, matchers, by, at, where, is_rate=False)

    def histogram_quantile(
        self,
        q: float,
        name: str,
        window: float,
        matchers: Matchers | None = None,
        by: Sequence[str] = (),
        *,
        at: float | None = None,
    ) -> Result:
        """``histogram_quantile(q, sum by (le, by) (rate(name_bucket{matchers}[window])))``.

        ``name`` is the histogram's name without ``_bucket``. A group with no observations in
        the window is NaN, as in Prometheus.
        """
        grouped: dict[tuple[str, ...], list[tuple[float, float]]] = {}
        bucket_rates = self._extrapolated(
            name + "_bucket", window, matchers, (*by, "le"), at, None, is_rate=True
        )
        for key, value in bucket_rates.items():
            bound = _parse_bound(key[-1])
            if bound is not None:
                grouped.setdefault(key[:-1], []).append((bound, value))
        return {key: bucket_quantile(q, buckets) for key, buckets in grouped.items()}

    def latest(
        self,
        name: str,
        matchers: Matchers | None = None,
        by: Sequence[str] = (),
        *,
        at: float | None = None,
    ) -> Result:
        """``sum by (by) (name{matchers})``: gauge values in the newest snapshot at or before
        ``at``, if it is less than five minutes old."""
        end = self._end(at)
        if end is None:
            return {}
        row = None
        for moment, candidate, _ in reversed(self._snapshots):
            if moment <= end:
                if moment > end - to_millis(LOOKBACK_SECONDS):
                    row = candidate
                break
        if row is None:
            return {}
        return sum_by(
            (self._group(column, by), value)
            for column in self._select(name, matchers, None)
            if column < len(row) and not is_stale(value := row[column])
        )

    def _extrapolated(
        self,
        name: str,
        window: float,
        matchers: Matchers | None,
        by: Sequence[str],
        at: float | None,
        where: Where | None,
        *,
        is_rate: bool,
    ) -> Result:
        window_ms = to_millis(window)
        if window_ms <= 0:
            raise ValueError("window must be at least a millisecond")
        end = self._end(at)
        if end is None:
            return {}
        start = end - window_ms
        times: list[int] = []
        rows: list[array[float]] = []
        complete: list[bool] = []
        for moment, row, full in reversed(self._snapshots):
            if moment <= start:  # left-open: a snapshot at the start is not in the range
                break
            if moment <= end:
                times.append(moment)
                rows.append(row)
                complete.append(full)
        if len(rows) < 2:
            return {}
        times.reverse()
        rows.reverse()
        series = _series_points(self._select(name, matchers, where), times, rows, all(complete))
        return sum_by(
            (
                self._group(column, by),
                extrapolate(
                    raw_change(values, True),
                    values[0],
                    first,
                    last,
                    len(values),
                    start,
                    end,
                    is_counter=True,
                    is_rate=is_rate,
                ),
            )
            for column, (first, last, values) in series
        )

    def _end(self, at: float | None) -> int | None:
        if at is not None:
            return to_millis(at)
        return self._snapshots[-1][0] if self._snapshots else None

    def _select(self, name: str, matchers: Matchers | None, where: Where | None) -> Sequence[int]:
        columns = self._by_name.get(name, [])
        if not matchers and where is None:
            return columns
        wanted = tuple((matchers or {}).items())
        labels = self._labels
        return [
            column
            for column in columns
            if all(labels[column].get(label, "") == value for label, value in wanted)
            and (where is None or where(labels[column]))
        ]

    def _group(self, column: int, by: Sequence[str]) -> tuple[str, ...]:
        labels = self._labels[column]
        return tuple(labels.get(label, "") for label in by)


def _series_points(
    columns: Sequence[int],
    times: Sequence[int],
    rows: Sequence[array[float]],
    complete: bool,
) -> Iterator[tuple[int, tuple[int, int, Sequence[float]]]]:
    """For each column with at least two samples in the window: the column, and its first and
    last timestamps and values, leaving out stale markers and snapshots from before the series
    existed. ``columns`` ascend; ``complete`` says no row has a NaN or a missing column."""
    if not columns:
        return
    low, high = columns[0], columns[-1] + 1
    if complete and high <= len(rows[0]):
        # Rows at least as long as the first: transpose the span of the columns at once.
        span = list(zip(*(row[low:high] for row in rows), strict=True))
        for column in columns:
            yield column, (times[0], times[-1], span[column - low])
        return
    for column in columns:
        kept_times: list[int] = []
        values: list[float] = []
        for moment, row in zip(times, rows, strict=True):
            if column < len(row) and not is_stale(value := row[column]):
                kept_times.append(moment)
                values.append(value)
        if len(values) >= 2:
            yield column, (kept_times[0], kept_times[-1], values)


def _parse_bound(text: str) -> float | None:
    """An ``le`` label as a float, None where Go's ParseFloat would refuse it."""
    if "_" in text or text != text.strip():
        return None
    try:
        return float(text)
    except ValueError:
        return None
