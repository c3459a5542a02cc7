"""Cumulative statistics of everything one traffic engine sent, for ``/v1/traffic/statistics``.

Prometheus counters answer "how much, per label, as a rate"; a person at a terminal (and the
statistics call) wants plain totals since the process started: per endpoint, per HTTP
status, per kind of error, with retries, bytes sent and the breaker's trips. ``TrafficTally``
keeps them with plain integer and dict increments, once per sent, dropped and finished
request, since it sits on the generator's hot path; timestamps are kept as
``perf_counter`` instants and the pydantic model is built only when someone asks.

The engine, its requests and the route that reads the tally share one event loop, so a
snapshot is consistent without locks. A job split over worker processes keeps a tally in
each; a worker reports its ``counts()`` and the parent ``absorb``s what changed since the
last report, so the statistics stay those of everything this process's generator sent.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal, TypeVar

from failure_lab.control import EndpointCounts, TrafficErrorCounts, TrafficStatistics, TrafficTotals
from simulator.generator.planner import PlannedRequest
from simulator.generator.senders import TransportErrorKind

ErrorKind = Literal["http_5xx", "rate_limited", "http_4xx"] | TransportErrorKind
K = TypeVar("K")


def error_kind(status: int | None, transport: TransportErrorKind | None) -> ErrorKind:
    """The kind of a request that did not succeed: from its HTTP status when one arrived
    (429 is ``rate_limited``, apart from other 4xx), else from why none did."""
    if status is None:
        return "other" if transport is None else transport
    if status >= 500:
        return "http_5xx"
    if status == 429:
        return "rate_limited"
    if status >= 400:
        return "http_4xx"
    return "other"  # 1xx/3xx: a status, but not a success


def body_bytes(body: object) -> int:
    """Bytes of a JSON body as the sender encodes it (aiohttp: ``json.dumps``, UTF-8).

    ``json.dumps`` escapes every non-ASCII character by default, so the text is ASCII and
    its length is its length in bytes.
    """
    return 0 if body is None else len(json.dumps(body))


@dataclass(frozen=True, slots=True)
class TallyCounts:
    """A tally's totals at one moment, or what changed between two such moments."""

    sent: int
    succeeded: int
    failed: int
    dropped: int
    late_sends: int
    retries: int
    bytes_sent: int
    first_send: float | None
    last_send: float | None
    endpoints: Mapping[str, tuple[int, int]]
    """endpoint -> (succeeded, failed)"""
    statuses: Mapping[int, int]
    errors: Mapping[ErrorKind, int]

    def minus(self, earlier: TallyCounts) -> TallyCounts:
        """What changed since ``earlier`` (send instants are this one's)."""
        before = earlier.endpoints
        return TallyCounts(
            sent=self.sent - earlier.sent,
            succeeded=self.succeeded - earlier.succeeded,
            failed=self.failed - earlier.failed,
            dropped=self.dropped - earlier.dropped,
            late_sends=self.late_sends - earlier.late_sends,
            retries=self.retries - earlier.retries,
            bytes_sent=self.bytes_sent - earlier.bytes_sent,
            first_send=self.first_send,
            last_send=self.last_send,
            endpoints={
                key: (ok - before.get(key, (0, 0))[0], bad - before.get(key, (0, 0))[1])
                for key, (ok, bad) in self.endpoints.items()
            },
            statuses=_minus(self.statuses, earlier.statuses),
            errors=_minus(self.errors, earlier.errors),
        )


def _minus(now: Mapping[K, int], then: Mapping[K, int]) -> dict[K, int]:
    return {key: value - then.get(key, 0) for key, value in now.items()}


class TrafficTally:
    """Totals since construction; ``statistics()`` turns them into the API's model."""

    __slots__ = (
        "_endpoints",
        "_errors",
        "_statuses",
        "bytes_sent",
        "dropped",
        "failed",
        "first_send",
        "last_send",
        "late_sends",
        "retries",
        "sent",
        "succeeded",
    )

    def __init__(self) -> None:
        self.sent = 0
        self.succeeded = 0
        self.failed = 0
        self.dropped = 0
        self.late_sends = 0
        self.retries = 0
        self.bytes_sent = 0
        self.first_send: float | None = None
        """``perf_counter`` instant of the first send."""
        self.last_send: float | None = None
        self._endpoints: dict[str, list[int]] = {}  # endpoint -> [succeeded, failed]
        self._statuses: dict[int, int] = {}
        self._errors: dict[ErrorKind, int] = {}

    def record_sent(self, actual: float, late: bool) -> None:
        """A request left at ``actual`` (a ``perf_counter`` instant)."""
        self.sent += 1
        if late:
            self.late_sends += 1
        if self.first_send is None:
            self.first_send = actual
        self.last_send = actual

    def record_dropped(self) -> None:
        self.dropped += 1

    def record_finished(
        self,
        planned: PlannedRequest,
        status: int | None,
        transport: TransportErrorKind | None,
        retries: int,
    ) -> None:
        """A sent request ended: with an HTTP ``status``, or with none for ``transport``."""
        counts = self._endpoints.get(planned.endpoint)
        if counts is None:
            counts = self._endpoints[planned.endpoint] = [0, 0]
        if status is not None:
            self._statuses[status] = self._statuses.get(status, 0) + 1
        if status is not None and 200 <= status < 300:
            self.succeeded += 1
            counts[0] += 1
        else:
            self.failed += 1
            counts[1] += 1
            kind = error_kind(status, transport)
            self._errors[kind] = self._errors.get(kind, 0) + 1
        self.retries += retries
        if planned.json is not None:
            self.bytes_sent += body_bytes(planned.json)

    def counts(self) -> TallyCounts:
        return TallyCounts(
            sent=self.sent,
            succeeded=self.succeeded,
            failed=self.failed,
            dropped=self.dropped,
            late_sends=self.late_sends,
            retries=self.retries,
            bytes_sent=self.bytes_sent,
            first_send=self.first_send,
            last_send=self.last_send,
            endpoints={key: (ok, bad) for key, (ok, bad) in self._endpoints.items()},
            statuses=dict(self._statuses),
            errors=dict(self._errors),
        )

    def absorb(self, delta: TallyCounts) -> None:
        """Add what another tally counted (a ``TallyCounts.minus`` of two of its counts)."""
        self.sent += delta.sent
        self.succeeded += delta.succeeded
        self.failed += delta.failed
        self.dropped += delta.dropped
        self.late_sends += delta.late_sends
        self.retries += delta.retries
        self.bytes_sent += delta.bytes_sent
        if delta.first_send is not None and (
            self.first_send is None or delta.first_send < self.first_send
        ):
            self.first_send = delta.first_send
        if delta.last_send is not None and (
            self.last_send is None or delta.last_send > self.last_send
        ):
            self.last_send = delta.last_send
        for key, (ok, bad) in delta.endpoints.items():
            counts = self._endpoints.setdefault(key, [0, 0])
            counts[0] += ok
            counts[1] += bad
        for status, n in delta.statuses.items():
            self._statuses[status] = self._statuses.get(status, 0) + n
        for kind, n in delta.errors.items():
            self._errors[kind] = self._errors.get(kind, 0) + n

    def statistics(
        self, *, circuit_breaker_trips: int, now: float | None = None
    ) -> TrafficStatistics:
        """The API's view; ``now`` is a ``perf_counter`` instant, taken now if not given."""
        clock = time.perf_counter()
        offset = time.time() - clock  # adds to a perf_counter instant for wall time
        if now is None:
            now = clock
        elapsed = 0.0 if self.first_send is None else max(0.0, now - self.first_send)
        return TrafficStatistics(
            totals=TrafficTotals(
                sent=self.sent,
                succeeded=self.succeeded,
                failed=self.failed,
                in_flight=self.sent - self.succeeded - self.failed,
                dropped=self.dropped,
                late_sends=self.late_sends,
                elapsed_seconds=elapsed,
                mean_send_rps=self.sent / elapsed if elapsed > 0 else 0.0,
            ),
            endpoint_counts={
                endpoint: EndpointCounts(
                    sent=succeeded + failed, succeeded=succeeded, failed=failed
                )
                for endpoint, (succeeded, failed) in sorted(self._endpoints.items())
            },
            status_counts={str(status): n for status, n in sorted(self._statuses.items())},
            error_counts=TrafficErrorCounts(**self._errors),
            retries=self.retries,
            circuit_breaker_trips=circuit_breaker_trips,
            bytes_sent=self.bytes_sent,
            first_send_time=_wall(self.first_send, offset),
            last_send_time=_wall(self.last_send, offset),
        )


def _wall(instant: float | None, offset: float) -> datetime | None:
    return None if instant is None else datetime.fromtimestamp(instant + offset, UTC)
