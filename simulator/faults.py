"""Where the live ``FailureConfig`` lives: in the process, or in Redis for every replica.

A PUT replaces the whole config and takes effect for the next request. With Redis the
config is read on every request (one GET on loopback costs far less than the simulated
database), so a change made through one replica is seen by all of them at once. If Redis
stops answering, requests keep the last config they saw; the control API answers 503.

A missing key means the defaults, but only to a replica that never saw one: once it has, a
missing key means Redis lost it (restarted empty), and the replica keeps applying the config
it last saw and writes it back (``SharedState``, driven by :mod:`simulator.shared_state`).
Replicas read the config on every request, so they hold the same copy; should they not, the
last one to write back wins, as PUTs do. A write-back never replaces a config PUT since: a
marker beside the config says who wrote it, and one script checks it and writes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Protocol, TypeVar

import redis.asyncio as aioredis
from pydantic import ValidationError
from redis.exceptions import RedisError

from failure_lab.control import FailureConfig
from failure_lab.errors import BackendFailure

OnChange = Callable[[FailureConfig], None]
T = TypeVar("T")


class ConfigStoreUnavailable(BackendFailure):
    """The store's backend did not answer in time."""

    def __init__(self, message: str) -> None:
        super().__init__("redis (failure config store)", message)


def _nothing(_: FailureConfig) -> None:
    return None


class FailureConfigStore(Protocol):
    async def get(self) -> FailureConfig:
        """The stored config; raises ``ConfigStoreUnavailable``."""
        ...

    async def put(self, config: FailureConfig) -> None:
        """Replace the stored config; raises ``ConfigStoreUnavailable``."""
        ...

    async def current(self) -> FailureConfig:
        """The config for the next request: never raises, falls back to the last seen."""
        ...


class MemoryConfigStore:
    def __init__(
        self, initial: FailureConfig | None = None, on_change: OnChange = _nothing
    ) -> None:
        self._config = initial or FailureConfig.defaults()
        self._on_change = on_change

    async def get(self) -> FailureConfig:
        return self._config

    async def put(self, config: FailureConfig) -> None:
        self._config = config
        self._on_change(config)

    async def current(self) -> FailureConfig:
        return self._config


# KEYS: the config, who wrote it ("put" or "restore"); ARGV: this replica's copy.
# Writes unless a PUT got there since Redis lost it; 1 if it wrote.
_WRITE_BACK = """
if redis.call('EXISTS', KEYS[1]) == 1 and redis.call('GET', KEYS[2]) ~= 'restore' then
  return 0
end
redis.call('SET', KEYS[1], ARGV[1])
redis.call('SET', KEYS[2], 'restore')
return 1
"""


class RedisConfigStore:
    """One JSON document under one key, and beside it who wrote it (a PUT, or a restore); a key
    never seen means ``defaults``.

    ``on_change`` is called whenever this process sees a config other than the last one,
    whichever replica wrote it, so each replica's gauges follow the shared config.
    """

    name = "failure_config"

    def __init__(
        self,
        client: aioredis.Redis,
        *,
        key: str = "failure-lab:config:failure",
        timeout: float = 0.5,
        on_change: OnChange = _nothing,
        defaults: FailureConfig | None = None,
    ) -> None:
        self._client = client
        self._key = key
        self._origin_key = key + ":written-by"
        self._timeout = timeout
        self._on_change = on_change
        self._defaults = defaults or FailureConfig.defaults()
        self._last = self._defaults
        self._held = False  # whether this process has seen the key (or written it)
        self._write_back = client.register_script(_WRITE_BACK)

    def _seen(self, config: FailureConfig) -> None:
        self._held = True
        if config != self._last:
            self._last = config
            self._on_change(config)

    async def get(self, timeout: float | None = None) -> FailureConfig:
        raw = await self._call(self._client.get(self._key), timeout)
        if raw is None:
            # Never seen one: the defaults. Seen one: Redis lost it; keep it until written back.
            return self._last if self._held else self._defaults
        try:
            config = FailureConfig.model_validate_json(raw, strict=False)
        except ValidationError:
            config = self._last
        self._seen(config)
        return config

    async def put(self, config: FailureConfig) -> None:
        writes = self._client.pipeline(transaction=True)
        writes.set(self._key, config.model_dump_json())
        writes.set(self._origin_key, "put")
        await self._call(writes.execute(), None)
        self._seen(config)

    async def current(self) -> FailureConfig:
        try:
            return await self.get(timeout=self._last.redis_timeout_seconds)
        except ConfigStoreUnavailable:
            return self._last

    # SharedState: what Redis may lose, and how it gets it back.

    async def lost(self) -> bool:
        """Redis holds no config while this process has seen one there."""
        return self._held and await self._call(self._client.exists(self._key), None) == 0

    async def write_back(self) -> bool:
        """Write the config this process applies back, unless a PUT got there first."""
        keys = [self._key, self._origin_key]
        written = self._write_back(keys=keys, args=[self._last.model_dump_json()])
        return bool(await self._call(written, None))

    def describe(self) -> str:
        return self._last.model_dump_json()

    async def _call(self, call: Awaitable[T], timeout: float | None) -> T:
        try:
            async with asyncio.timeout(self._timeout if timeout is None else timeout):
                return await call
        except (TimeoutError, RedisError, OSError) as exc:
            raise ConfigStoreUnavailable(str(exc) or "timed out") from exc
