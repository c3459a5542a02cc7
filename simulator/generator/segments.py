"""Splitting one job's arrivals over worker processes, as k6 splits execution segments.

Worker ``index`` of ``count`` takes the arrivals at positions ``index``, ``index + count``,
``index + 2 * count``, ... of the schedule: striped, not contiguous. Each worker's own sends
then stay evenly spread over the whole run (at a constant rate, ``count / rate`` apart) and
each follows the whole load shape, while the union of the segments is the unsplit schedule,
arrival for arrival. Contiguous fractions would hand the first worker the ramp-up and the
last the ramp-down, and leave each idle for most of the run.

A worker takes the requests of its own arrivals the same way: it draws every request of a
seeded source in order and keeps those at its positions, so the union of what the workers
send is what one process would send with that seed. The price is that each worker plans the
others' requests too (a few microseconds each, never sent).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from simulator.generator.planner import PlannedRequest, RequestSource


@dataclass(frozen=True, slots=True)
class Segment:
    """Worker ``index`` (from 0) of ``count``."""

    index: int
    count: int

    def __post_init__(self) -> None:
        if self.count < 1 or not 0 <= self.index < self.count:
            raise ValueError("a segment is worker index 0..count-1 of count >= 1")

    @classmethod
    def all(cls, count: int) -> list[Segment]:
        """The segments that together make up the whole schedule."""
        return [cls(index, count) for index in range(count)]

    def share(self, planned: int) -> int:
        """How many of ``planned`` arrivals fall in this segment."""
        return max(0, (planned - self.index + self.count - 1) // self.count)

    def offsets(self, offsets: Iterable[float]) -> Iterator[float]:
        """This segment's arrivals of a whole schedule, in order."""
        return itertools.islice(offsets, self.index, None, self.count)

    def requests(self, source: RequestSource) -> RequestSource:
        """The requests of this segment's arrivals, drawn from a source of all of them."""
        return _SegmentSource(source, self)

    def bound(self, total: int) -> int:
        """This worker's part of a bound on requests in flight: the parts add up to
        ``total`` (each is at least 1, so a bound below ``count`` is exceeded)."""
        base, rest = divmod(total, self.count)
        return max(1, base + (1 if self.index < rest else 0))


class _SegmentSource:
    """Hands out the requests at the segment's positions, skipping the others'."""

    def __init__(self, source: RequestSource, segment: Segment) -> None:
        self._source = source
        self._skip = segment.index
        self._stride = segment.count - 1

    def next(self) -> PlannedRequest:
        source = self._source
        for _ in range(self._skip):
            source.next()
        self._skip = self._stride
        return source.next()
