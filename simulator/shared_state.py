"""Shared state that Redis may lose, and the keeper that writes it back.

Redis in this lab keeps nothing on disk (compose runs it without persistence), so a restart
comes back empty. State that replicas only cache (limits, cached reads) is simply rebuilt;
state that someone set on purpose, such as the failure config, would silently fall back to
its defaults and end a running experiment. Every replica holds a copy of such state, so each one
can tell that Redis lost it and write its copy back.

A piece of shared state joins by implementing ``SharedState``: how to tell that Redis lost it
(``lost``: it is missing while this replica had seen it there) and how to write this
replica's copy back (``write_back``: the last replica to write back wins, as writes do, but a
write made since Redis came back is never undone). The keeper asks every piece once per
``interval`` (one EXISTS each), logs and counts what it wrote back, and carries on quietly
while Redis is down.

Such state: the failure config, the circuit breaker's config and the disruptions. The
breaker's state is each process's own and never in Redis, so a Redis restart leaves it as it is.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Protocol

from failure_lab.errors import BackendFailure
from simulator.periodic import Periodic

log = logging.getLogger(__name__)


class SharedState(Protocol):
    name: str
    """What it is, for the log and the ``state`` label (``failure_config``)."""

    async def lost(self) -> bool:
        """Redis no longer holds it while this replica saw it there; raises
        ``BackendFailure`` while Redis does not answer."""
        ...

    async def write_back(self) -> bool:
        """Write this replica's copy back; False when a write made since got there first."""
        ...

    def describe(self) -> str:
        """This replica's copy, in words, for the log."""
        ...


class StateKeeper:
    """Writes shared state back to a Redis that lost it; ``on_restored(name)`` per write."""

    def __init__(
        self,
        states: Sequence[SharedState],
        interval: float,
        on_restored: Callable[[str], None] = lambda name: None,
    ) -> None:
        self._states = tuple(states)
        self._on_restored = on_restored
        self._periodic = Periodic("shared-state-keeper", interval, self.check)

    async def check(self) -> list[str]:
        """One round: the names of the states written back."""
        restored = []
        for state in self._states:
            try:
                if not await state.lost():
                    continue
                written = await state.write_back()
            except BackendFailure as exc:
                log.debug("%s: redis does not answer (%s); trying again", state.name, exc)
                continue
            if written:
                log.warning(
                    "redis had lost the %s: wrote back this replica's copy (the last replica "
                    "to write back wins): %s",
                    state.name,
                    state.describe(),
                )
                self._on_restored(state.name)
                restored.append(state.name)
            else:
                log.info("redis had lost the %s: it was set again before a write-back", state.name)
        return restored

    def start(self) -> None:
        """Run a round once per interval from now on, until ``aclose``."""
        self._periodic.start()

    async def aclose(self) -> None:
        await self._periodic.aclose()
