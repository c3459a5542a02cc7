"""An event loop in a thread of its own, for synchronous tests of asynchronous servers.

Schemathesis calls the app under test with blocking HTTP from the test's thread; the app (and
a Prometheus whose start is awaited) must keep running meanwhile, so they live in this loop.
Async context managers entered here are left, in reverse order, when the thread stops.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from contextlib import AbstractAsyncContextManager, AsyncExitStack
from types import TracebackType
from typing import Any, Self, TypeVar

T = TypeVar("T")


class LoopThread:
    def __init__(self, timeout: float = 60.0) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._stack = AsyncExitStack()
        self._timeout = timeout

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """Run ``coroutine`` in the loop and wait for its result."""
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(self._timeout)

    def enter(self, context: AbstractAsyncContextManager[T]) -> T:
        """Enter ``context`` in the loop; it is left when this thread stops."""
        return self.run(self._stack.enter_async_context(context))

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        try:
            self.run(self._stack.aclose())
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=self._timeout)
            self._loop.close()
