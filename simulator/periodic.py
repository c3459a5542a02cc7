"""A round of housekeeping run once per interval in a task of its own, until closed.

The replicas' loops over shared state (``shared_state.StateKeeper``, writing back what Redis
lost, and ``shared_sync.SyncLoop``, refreshing each replica's copy) run the same way: a round
every ``interval``, never traced as a request, never ended by a bug in one round, and stopped by
``aclose`` even when a Redis client swallowed the cancel mid-round.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from opentelemetry.instrumentation.utils import suppress_instrumentation

log = logging.getLogger(__name__)


class Periodic:
    """``work()`` once per ``interval`` from ``start`` until ``aclose``."""

    def __init__(self, name: str, interval: float, work: Callable[[], Awaitable[object]]) -> None:
        self._name = name
        self._interval = interval
        self._work = work
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=self._name)

    async def aclose(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        # Its Redis calls are housekeeping, not requests: no trace of their own each time.
        with suppress_instrumentation():
            # Until aclose: it also stops a round whose Redis client swallowed the cancel.
            while asyncio.current_task() is self._task:
                await asyncio.sleep(self._interval)
                try:
                    await self._work()
                except Exception:  # a bug must not end the rounds for good
                    log.exception("%s: a round failed", self._name)
