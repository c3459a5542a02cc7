"""Time-boxed disruptions: faults that switch themselves off.

A failure config stays until someone changes it back; a disruption is created
with a severity and a duration and reverts by itself, so a scenario can say "the database
is down for 30 s" and walk away. Five types act on the request path:

- ``db_outage``: each database attempt fails with probability ``severity``;
- ``db_latency_spike``: each attempt takes ``severity x disruption_latency_spike_ms`` more;
- ``cache_outage``: each cache operation fails (kind ``unavailable``) with probability
  ``severity``;
- ``error_burst``: a request is answered 500 before the pipeline with probability
  ``severity``;
- ``rate_limit_squeeze``: every request must also pass a ``token_bucket`` limit of
  ``(1 - severity) x disruption_squeeze_rps`` on the service's own rate limiter.

A disruption applies to requests that start while it is active on their route, and stops
acting on them the moment it ends. Expiry is checked against the clock wherever a
disruption is read, so behaviour, listings and the active gauge are exact without any call;
one timer per registry also ends them at their deadline, which counts and logs the end.

The registry is this process's copy, which requests read without any call. Without Redis it
is the only one: every replica has its own, and a restart clears it. With Redis the copy
mirrors the shared disruptions (:mod:`simulator.disruption_stores`), which ``adopt`` brings in
as ``SharedRecord``s; their deadline is a wall-clock instant, so every replica ends a
disruption at the same moment.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import get_args

from opentelemetry.trace import Span

from failure_lab.control import (
    Disruption,
    DisruptionRequest,
    DisruptionStatus,
    UserRoute,
)
from failure_lab.errors import Conflict, NotFound
from failure_lab.settings import Settings
from simulator.disruption_scope import DisruptionScope, Entry, SharedRecord
from simulator.telemetry.metrics import ServiceMetrics

log = logging.getLogger(__name__)
Clock = Callable[[], float]
ROUTES: tuple[str, ...] = get_args(UserRoute)
# Timers may fire a hair before the monotonic deadline; never re-arm closer than this.
_MIN_TIMER_SECONDS = 0.001


def too_many(active: int) -> Conflict:
    return Conflict(
        f"{active} disruptions are active, the most "
        "FAILURE_LAB_MAX_ACTIVE_DISRUPTIONS allows; cancel one or clear all"
    )


class DisruptionRegistry:
    """The active disruptions of this process, and the most recently ended ones.

    ``active`` is true while any disruption is held as active (possibly just past its
    deadline until the next check); the request path reads nothing else when it is false.
    """

    def __init__(
        self,
        settings: Settings,
        metrics: ServiceMetrics,
        rng: random.Random,
        *,
        clock: Clock = time.monotonic,
        wall: Clock = time.time,
    ) -> None:
        self.metrics = metrics
        self.clock = clock
        self.latency_spike_ms = settings.disruption_latency_spike_ms
        self.squeeze_rps = settings.disruption_squeeze_rps
        self.max_active = settings.max_active_disruptions
        self.kept = settings.finished_disruptions_kept
        self._rng = rng
        self.wall = wall
        self._entries: dict[str, Entry] = {}
        self._ended: OrderedDict[str, Entry] = OrderedDict()
        self._timer: asyncio.TimerHandle | None = None
        self.active = False

    def draw(self, probability: float) -> bool:
        return self._rng.random() < probability

    def create(self, request: DisruptionRequest) -> Disruption:
        self.expire_due()
        if len(self._entries) >= self.max_active:
            raise too_many(len(self._entries))
        now = self.clock()
        record = self.new_record(request)
        entry = self._entry(record, now, record.created_wall)
        self._add(entry, now)
        self._arm()
        return self._view(entry, now)

    def new_record(self, request: DisruptionRequest) -> SharedRecord:
        """A new disruption, created now, as a record to share."""
        return SharedRecord(
            disruption_id=uuid.uuid4().hex,
            type=request.type,
            severity=request.severity,
            endpoints=tuple(dict.fromkeys(request.endpoints)) if request.endpoints else ROUTES,
            duration=request.duration_seconds,
            created_wall=self.wall(),
        )

    def adopt(self, records: Iterable[SharedRecord], *, complete: bool) -> None:
        """Bring the shared disruptions into this copy: new ones start acting, cancelled
        ones end, counts follow. ``complete``: the records are all there are, so an active
        disruption missing from them has been dropped elsewhere and ends here too."""
        now, wall = self.clock(), self.wall()
        seen: set[str] = set()
        for record in records:
            seen.add(record.disruption_id)
            entry = self._entries.get(record.disruption_id) or self._ended.get(record.disruption_id)
            if entry is not None:
                entry.requests_affected = record.requests_affected + entry.unflushed
                if entry.status == "active" and record.cancelled_wall is not None:
                    self._end(entry, "cancelled", record.cancelled_wall)
                continue
            entry = self._entry(record, now, wall)
            if record.cancelled_wall is None and entry.until > now:
                self._add(entry, now)
            else:  # ended before this process saw it: readable, never acted on here
                cancelled = record.cancelled_wall is not None
                entry.status = "cancelled" if cancelled else "expired"
                entry.ended_wall = record.cancelled_wall if cancelled else record.deadline
                self._keep(entry)
        if complete:
            for entry in [e for e in self._entries.values() if e.disruption_id not in seen]:
                self._end(entry, "cancelled")
        self.expire_due()
        self._arm()

    def records(self) -> list[SharedRecord]:
        """Every disruption this copy holds, active and ended, as records to share."""
        return [
            SharedRecord(
                disruption_id=entry.disruption_id,
                type=entry.type,
                severity=entry.severity,
                endpoints=entry.endpoints,
                duration=entry.duration,
                created_wall=entry.created_wall,
                cancelled_wall=entry.ended_wall if entry.status == "cancelled" else None,
                requests_affected=entry.requests_affected,
            )
            for entry in (*self._ended.values(), *self._entries.values())
        ]

    def take_unflushed(self) -> dict[str, int]:
        """The counts made here since the last call, by disruption, now owed to the shared
        count; ``give_back`` returns them if they could not be added there."""
        taken = {}
        for entry in (*self._entries.values(), *self._ended.values()):
            if entry.unflushed:
                taken[entry.disruption_id] = entry.unflushed
                entry.unflushed = 0
        return taken

    def give_back(self, taken: dict[str, int]) -> None:
        for disruption_id, count in taken.items():
            entry = self._entries.get(disruption_id) or self._ended.get(disruption_id)
            if entry is not None:
                entry.unflushed += count

    def _entry(self, record: SharedRecord, now: float, wall: float) -> Entry:
        return Entry(
            disruption_id=record.disruption_id,
            type=record.type,
            severity=record.severity,
            endpoints=record.endpoints,
            duration=record.duration,
            created_wall=record.created_wall,
            until=now + (record.deadline - wall),
            requests_affected=record.requests_affected,
        )

    def _add(self, entry: Entry, now: float) -> None:
        self._entries[entry.disruption_id] = entry
        self.active = True
        self.metrics.disruptions_created.labels(entry.type).inc()
        log.info("disruption %s created on %s", entry.describe(now), ", ".join(entry.endpoints))

    def list_active(self) -> list[Disruption]:
        self.expire_due()
        now = self.clock()
        return [self._view(entry, now) for entry in self._entries.values()]

    def get(self, disruption_id: str) -> Disruption:
        self.expire_due()
        entry = self._entries.get(disruption_id) or self._ended.get(disruption_id)
        if entry is None:
            raise NotFound(f"no disruption {disruption_id} (unknown, or ended long ago)")
        return self._view(entry, self.clock())

    def cancel(self, disruption_id: str) -> Disruption:
        self.expire_due()
        entry = self._entries.get(disruption_id)
        if entry is None:
            ended = self._ended.get(disruption_id)
            if ended is None:
                raise NotFound(f"no disruption {disruption_id} (unknown, or ended long ago)")
            # It exists (GET shows it) but has ended: a state conflict, not a missing thing.
            raise Conflict(f"disruption {disruption_id} has already {ended.status}; not active")
        self._end(entry, "cancelled")
        self._arm()
        return self._view(entry, self.clock())

    def clear(self) -> list[Disruption]:
        self.expire_due()
        cleared = list(self._entries.values())
        for entry in cleared:
            self._end(entry, "cancelled")
        self._arm()
        now = self.clock()
        return [self._view(entry, now) for entry in cleared]

    def count_active(self, kind: str) -> int:
        """Active disruptions of ``kind`` now; reads only, so a scrape can call it."""
        now = self.clock()
        return sum(1 for e in self._entries.values() if e.type == kind and e.live(now))

    def planned_end(self, kind: str) -> float:
        """Latest planned end (Unix time) of the active ``kind`` disruptions, 0 when none.

        The same disruptions as ``count_active``; the end is ``active_until`` of the API.
        """
        now = self.clock()
        return max(
            (
                e.created_wall + e.duration
                for e in self._entries.values()
                if e.type == kind and e.live(now)
            ),
            default=0.0,
        )

    def scope(self, route: str, span: Span) -> DisruptionScope | None:
        """What applies to a request on ``route`` starting now; None when nothing does."""
        now = self.clock()
        applicable: list[Entry] = []
        due = False
        for entry in self._entries.values():
            if entry.until <= now:
                due = True
            elif route in entry.endpoints:
                applicable.append(entry)
        if due:
            self.expire_due()
        return DisruptionScope(self, span, applicable) if applicable else None

    def expire_due(self) -> None:
        now = self.clock()
        for entry in [e for e in self._entries.values() if e.until <= now]:
            self._end(entry, "expired")

    def close(self, *, shared: bool = False) -> None:
        """Drop everything (the process stops); active disruptions are logged by name, as
        dropped unless ``shared`` (they go on acting on the other replicas)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.expire_due()
        if self._entries:
            now = self.clock()
            log.log(
                logging.INFO if shared else logging.WARNING,
                "stopping with %d active disruptions, %s: %s",
                len(self._entries),
                "left to the other replicas (shared in redis)"
                if shared
                else "dropped (in-process only)",
                "; ".join(entry.describe(now) for entry in self._entries.values()),
            )
        self._entries.clear()
        self.active = False

    def _end(self, entry: Entry, reason: DisruptionStatus, when: float | None = None) -> None:
        del self._entries[entry.disruption_id]
        self.active = bool(self._entries)
        entry.status = reason
        if reason == "expired":
            entry.ended_wall = entry.created_wall + entry.duration
        else:
            entry.ended_wall = self.wall() if when is None else when
        self.metrics.disruptions_ended.labels(entry.type, reason).inc()
        log.info(
            "disruption %s (%s) %s; %d requests affected",
            entry.disruption_id,
            entry.type,
            reason,
            entry.requests_affected,
        )
        self._keep(entry)

    def _keep(self, entry: Entry) -> None:
        if self.kept > 0:
            self._ended[entry.disruption_id] = entry
            while len(self._ended) > self.kept:
                self._ended.popitem(last=False)

    def _arm(self) -> None:
        """Schedule the one timer for the earliest deadline (none outside an event loop)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self._entries:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        due = min(entry.until for entry in self._entries.values())
        delay = max(_MIN_TIMER_SECONDS, due - self.clock())
        self._timer = loop.call_later(delay, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self.expire_due()
        self._arm()

    def _view(self, entry: Entry, now: float) -> Disruption:
        created = datetime.fromtimestamp(entry.created_wall, UTC)
        remaining = max(0.0, entry.until - now) if entry.status == "active" else 0.0
        return Disruption(
            disruption_id=entry.disruption_id,
            type=entry.type,
            severity=entry.severity,
            endpoints=list(entry.endpoints),
            created_at=created,
            active_until=datetime.fromtimestamp(entry.created_wall + entry.duration, UTC),
            time_remaining_seconds=round(remaining, 3),
            requests_affected=entry.requests_affected,
            status=entry.status,
            ended_at=(
                None if entry.ended_wall is None else datetime.fromtimestamp(entry.ended_wall, UTC)
            ),
        )
