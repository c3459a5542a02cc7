"""Where disruptions are kept: in this process, or in Redis for every replica.

One interface for the control API, two implementations side by side. Requests never go
through it: they read the process's own copy, the ``DisruptionRegistry``, which costs a
request nothing. ``LocalDisruptions`` is that copy alone (no Redis: each replica has its own,
a restart clears them). ``RedisDisruptions`` (:mod:`simulator.redis_disruptions`) keeps the
disruptions in Redis and the copy in step with them, so one created, cancelled or cleared
through any replica acts, or stops acting, on all of them.
"""

from __future__ import annotations

from typing import Protocol

from failure_lab.control import Disruption, DisruptionRequest
from simulator.disruptions import DisruptionRegistry


class Disruptions(Protocol):
    registry: DisruptionRegistry
    """This process's copy, the one requests read."""

    where: str
    """Where they live, for the start-up log."""

    async def create(self, request: DisruptionRequest) -> Disruption:
        """Start one; ``Conflict`` when too many are active."""
        ...

    async def list_active(self) -> list[Disruption]: ...

    async def get(self, disruption_id: str) -> Disruption:
        """One, active or recently ended; ``NotFound`` otherwise."""
        ...

    async def cancel(self, disruption_id: str) -> Disruption:
        """End an active one; ``NotFound`` if unknown, ``Conflict`` if it already ended."""
        ...

    async def clear(self) -> list[Disruption]:
        """End every active one; those it ended."""
        ...

    async def aclose(self) -> None:
        """The process stops: its copy is dropped."""
        ...


class LocalDisruptions:
    """Disruptions of this process only."""

    where = "in-process: none survive a restart"

    def __init__(self, registry: DisruptionRegistry) -> None:
        self.registry = registry

    async def create(self, request: DisruptionRequest) -> Disruption:
        return self.registry.create(request)

    async def list_active(self) -> list[Disruption]:
        return self.registry.list_active()

    async def get(self, disruption_id: str) -> Disruption:
        return self.registry.get(disruption_id)

    async def cancel(self, disruption_id: str) -> Disruption:
        return self.registry.cancel(disruption_id)

    async def clear(self) -> list[Disruption]:
        return self.registry.clear()

    async def aclose(self) -> None:
        self.registry.close()
