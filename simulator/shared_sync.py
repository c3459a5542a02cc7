"""Keeps each replica's copy of shared state in step with Redis, off the request path.

Some shared state is read by every request: disruptions (asked at each stage) and the
circuit breaker's settings (asked before each database attempt). A Redis round trip per
request for them would put Redis on the path of every request, and make a Redis outage a
service outage. Instead each replica holds a copy that requests read for free, and this loop
refreshes it from Redis every ``interval`` (at most a second), so a change made through one
replica acts on all of them within that time. The API's own reads refresh first, so an answer
is never older than the call. While Redis does not answer, each copy stays as it was: the
replica keeps acting on what it last knew, and the loop tries again next interval.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Protocol

from failure_lab.errors import BackendFailure
from simulator.periodic import Periodic

log = logging.getLogger(__name__)


class Synced(Protocol):
    name: str
    """What it is, for the log (``disruptions``)."""

    async def refresh(self) -> None:
        """Bring this replica's copy up to date; raises ``BackendFailure`` while Redis does
        not answer (the copy is then left as it was)."""
        ...


class SyncLoop:
    """Refreshes every ``Synced`` once per ``interval`` until ``aclose``."""

    def __init__(self, pieces: Sequence[Synced], interval: float) -> None:
        self._pieces = tuple(pieces)
        self._periodic = Periodic("shared-state-sync", interval, self.sync)
        self._failing: set[str] = set()

    async def sync(self) -> None:
        """One round over every piece; a piece whose Redis does not answer is logged once
        until it answers again."""
        for piece in self._pieces:
            try:
                await piece.refresh()
            except BackendFailure as exc:
                if piece.name not in self._failing:
                    self._failing.add(piece.name)
                    log.warning("%s: keeping this replica's copy while %s", piece.name, exc)
                continue
            if piece.name in self._failing:
                self._failing.discard(piece.name)
                log.info("%s: in step with redis again", piece.name)

    def start(self) -> None:
        """Run a round once per interval from now on, until ``aclose``."""
        self._periodic.start()

    async def aclose(self) -> None:
        await self._periodic.aclose()
