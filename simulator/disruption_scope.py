"""What one disruption is, and what the disruptions on a request do to it.

Kept apart from the registry (:mod:`simulator.disruptions`), which decides which disruptions
exist and when they end: an ``Entry`` is one disruption as a process holds it, a
``SharedRecord`` one as every replica sees it, and a ``DisruptionScope`` carries the entries
that apply to one request through the stages, where each effect is drawn and counted.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from opentelemetry.trace import Span

from failure_lab.control import DisruptionStatus, DisruptionType
from simulator.cache import CacheError
from simulator.database import DatabaseError

if TYPE_CHECKING:
    from simulator.disruptions import DisruptionRegistry


@dataclass(slots=True, eq=False)
class Entry:
    """One disruption as the registry keeps it; ``until`` is on the monotonic clock."""

    disruption_id: str
    type: DisruptionType
    severity: float
    endpoints: tuple[str, ...]
    duration: float
    created_wall: float
    until: float
    requests_affected: int = 0
    """As far as this process knows: the shared count it last read, plus ``unflushed``."""
    unflushed: int = 0
    """Requests counted here that the shared count has not been given yet."""
    status: DisruptionStatus = "active"
    ended_wall: float | None = None

    def live(self, now: float) -> bool:
        return self.status == "active" and now < self.until

    def describe(self, now: float) -> str:
        left = max(0.0, self.until - now)
        return f"{self.disruption_id} ({self.type}, severity {self.severity:g}, {left:.1f}s left)"


@dataclass(frozen=True, slots=True)
class SharedRecord:
    """One disruption as every replica sees it; ``deadline`` and times are Unix time."""

    disruption_id: str
    type: DisruptionType
    severity: float
    endpoints: tuple[str, ...]
    duration: float
    created_wall: float
    cancelled_wall: float | None = None
    requests_affected: int = 0

    @property
    def deadline(self) -> float:
        return self.created_wall + self.duration


class DisruptionScope:
    """The disruptions that apply to one request, and what they did to it.

    Made only when a disruption is active on the request's route, so a request without
    one pays a single attribute check. Each effect is re-checked against the clock, and
    the request counts once per disruption in ``requests_affected``.
    """

    __slots__ = ("_entries", "_registry", "_span", "_touched")

    def __init__(self, registry: DisruptionRegistry, span: Span, entries: list[Entry]) -> None:
        self._registry = registry
        self._span = span
        self._entries = entries
        self._touched: set[str] = set()

    def live(self, kind: DisruptionType) -> Iterator[Entry]:
        now = self._registry.clock()
        for entry in self._entries:
            if entry.type == kind and entry.live(now):
                yield entry

    def error_burst(self) -> Entry | None:
        """The ``error_burst`` that fails this request, if one draws it."""
        for entry in self.live("error_burst"):
            if self._registry.draw(entry.severity):
                self.touch(entry, "failed")
                return entry
        return None

    def squeeze_rate(self, entry: Entry) -> float:
        return round((1.0 - entry.severity) * self._registry.squeeze_rps, 6)

    def db_attempt(self, attempt: int) -> float:
        """Milliseconds to add to this attempt; raises ``DatabaseError`` for an outage."""
        for entry in self.live("db_outage"):
            if self._registry.draw(entry.severity):
                self.touch(entry, "failed", attempt=attempt)
                raise DatabaseError("disruption: db_outage")
        extra = 0.0
        for entry in self.live("db_latency_spike"):
            delay = entry.severity * self._registry.latency_spike_ms
            if delay > 0:
                self.touch(entry, "delayed", attempt=attempt, delay_ms=delay)
                extra += delay
        return extra

    def cache_operation(self, operation: str) -> None:
        """Raises ``CacheError`` when a ``cache_outage`` fails this operation."""
        for entry in self.live("cache_outage"):
            if self._registry.draw(entry.severity):
                self.touch(entry, "failed", operation=operation)
                raise CacheError("unavailable", "disruption: cache_outage")

    def touch(self, entry: Entry, effect: str, **extra: str | int | float) -> None:
        """Record that ``entry`` changed this request: a span event, and a count once."""
        self._span.add_event(
            "disruption",
            {
                "disruption_id": entry.disruption_id,
                "type": entry.type,
                "severity": entry.severity,
                "effect": effect,
                **extra,
            },
        )
        if entry.disruption_id not in self._touched:
            self._touched.add(entry.disruption_id)
            entry.requests_affected += 1
            entry.unflushed += 1
            self._registry.metrics.disruption_requests_affected.labels(entry.type).inc()
