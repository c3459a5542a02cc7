"""The live feed's ``topology`` message: the graph of ``GET /v1/topology``, when it changes.

The topology costs the backend a score of queries, and its figures move slowly next to a
dashboard's attention, so the feed's poller asks for it once every
``ws_topology_interval_seconds`` (5 s by default) rather than every tick, for all clients
together, over the feed's window (``metrics_window_seconds``) ending at that moment. It is
sent only when something in it changed since the last one sent (its timestamp aside), and a
client that connects gets the latest at once, so nobody waits an interval for the graph.

A failing query sends nothing and tries again at the next interval; the ``metrics`` message
of the same tick already tells clients about the backend's health. Whatever goes wrong here
never costs a tick its other messages.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from exporter.errors import SourceError
from exporter.feed_messages import envelope
from exporter.runtime import ExporterRuntime
from exporter.topology_routes import topology_at

logger = logging.getLogger(__name__)


class TopologyTicker:
    """Asks for the topology when due; says what to send, and what a new client gets."""

    def __init__(
        self,
        runtime: ExporterRuntime,
        interval: float,
        window: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._runtime = runtime
        self._interval = interval
        self._window = window
        self._clock = clock
        self._due = 0.0
        self._sent_data: str | None = None
        self.latest: str | None = None
        """The last ``topology`` message sent, for a client that has just connected."""

    def reset(self) -> None:
        """Nobody is watching: forget the last graph, ask afresh for the next client."""
        self._due = 0.0
        self._sent_data = None
        self.latest = None

    async def poll(self) -> str | None:
        """The ``topology`` message to send now, if one is due and anything changed."""
        now = self._clock()
        if now < self._due:
            return None
        self._due = now + self._interval
        try:
            topology = await topology_at(self._runtime, self._window, round(time.time(), 3))
        except SourceError as exc:
            logger.debug("live feed: no topology this interval: %s", exc.message)
            return None
        except Exception:
            logger.exception("live feed: the topology could not be built")
            return None
        data = topology.model_dump_json(exclude={"timestamp"})
        if data == self._sent_data:
            return None
        self._sent_data = data
        self.latest = envelope("topology", topology)
        return self.latest
