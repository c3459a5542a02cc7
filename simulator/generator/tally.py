"""Cumulative statistics of everything one traffic engine sent, for ``/v1/traffic/statistics``.

Prometheus counters answer "how much, per label, as a rate"; a person at a terminal (and the
statistics call) wants plain totals since the process started: per endpoint, per HTTP
status, per kind of error, with retries, bytes sent and the breaker's trips. ``TrafficTally``
keeps them with plain integer and dict increments, once per sent, dropped and finished
request, since it sits on the generator's hot path; timestamps are kept as
``perf_counter`` instants and the pydantic model is built only when someone asks.

The engine, its requests and the route that reads the tally share one event loop, so a
snapshot is consistent without locks.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Literal

from failure_lab.control import EndpointCounts, TrafficErrorCounts, TrafficStatistics, TrafficTotals
from simulator.generator.planner import PlannedRequest
from simulator.generator.senders import TransportErrorKind

ErrorKind = Literal["http_5xx", "rate_limited", "http_4xx"] | TransportErrorKind


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
