"""One settings document in Redis, shared by every replica: the failure config, the breaker's.

Someone sets such a document on purpose (a PUT) and every replica applies it. A missing key
means the defaults, but only to a replica that never saw one: once it has, a missing key
means Redis lost it (restarted empty), and the replica keeps applying the copy it last saw and
writes it back (``SharedState``, driven by :mod:`simulator.shared_state`). Should replicas
hold different copies, the last one to write back wins, as PUTs do; a write-back never
replaces a PUT made since: a marker beside the document says who wrote it, and one script
checks it and writes.

``on_change`` is called whenever this process sees a document other than the last one,
whichever replica wrote it, so each replica's gauges (and breaker) follow the shared copy.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

import redis.asyncio as aioredis
from pydantic import BaseModel, ValidationError
from redis.exceptions import RedisError

from failure_lab.errors import BackendFailure

M = TypeVar("M", bound=BaseModel)
T = TypeVar("T")


# KEYS: the document, who wrote it ("put" or "restore"); ARGV: this replica's copy.
# Writes unless a PUT got there since Redis lost it; 1 if it wrote.
_WRITE_BACK = """
if redis.call('EXISTS', KEYS[1]) == 1 and redis.call('GET', KEYS[2]) ~= 'restore' then
  return 0
end
redis.call('SET', KEYS[1], ARGV[1])
redis.call('SET', KEYS[2], 'restore')
return 1
"""


class RedisDocument(Generic[M]):
    """One JSON document of type ``model`` under ``key``, and beside it who wrote it;
    ``error`` makes the ``BackendFailure`` raised when Redis does not answer."""

    def __init__(
        self,
        client: aioredis.Redis,
        *,
        model: type[M],
        key: str,
        name: str,
        error: Callable[[str], BackendFailure],
        defaults: M,
        timeout: float = 0.5,
        on_change: Callable[[M], None] = lambda _: None,
    ) -> None:
        self.name = name
        self._client = client
        self._model = model
        self._key = key
        self._origin_key = key + ":written-by"
        self._error = error
        self._timeout = timeout
        self._on_change = on_change
        self._defaults = defaults
        self._last = defaults
        self._held = False  # whether this process has seen the key (or written it)
        self._write_back = client.register_script(_WRITE_BACK)

    @property
    def last(self) -> M:
        """The document this process applies: the last it saw, else the defaults."""
        return self._last

    def _seen(self, document: M) -> None:
        self._held = True
        if document != self._last:
            self._last = document
            self._on_change(document)

    async def get(self, timeout: float | None = None) -> M:
        raw = await self.call(self._client.get(self._key), timeout)
        if raw is None:
            # Never seen one: the defaults. Seen one: Redis lost it; keep it until written back.
            return self._last if self._held else self._defaults
        try:
            document = self._model.model_validate_json(raw, strict=False)
        except ValidationError:
            document = self._last
        self._seen(document)
        return document

    async def put(self, document: M) -> None:
        writes = self._client.pipeline(transaction=True)
        writes.set(self._key, document.model_dump_json())
        writes.set(self._origin_key, "put")
        await self.call(writes.execute(), None)
        self._seen(document)

    async def refresh(self) -> None:
        """``Synced``: read it, so ``on_change`` follows a change made elsewhere."""
        await self.get()

    # SharedState: what Redis may lose, and how it gets it back.

    async def lost(self) -> bool:
        """Redis holds no document while this process has seen one there."""
        return self._held and await self.call(self._client.exists(self._key), None) == 0

    async def write_back(self) -> bool:
        """Write the document this process applies back, unless a PUT got there first."""
        keys = [self._key, self._origin_key]
        written = self._write_back(keys=keys, args=[self._last.model_dump_json()])
        return bool(await self.call(written, None))

    def describe(self) -> str:
        return self._last.model_dump_json()

    async def call(self, call: Awaitable[T], timeout: float | None) -> T:
        try:
            async with asyncio.timeout(self._timeout if timeout is None else timeout):
                return await call
        except (TimeoutError, RedisError, OSError) as exc:
            raise self._error(str(exc) or "timed out") from exc
