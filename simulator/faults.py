"""Where the live ``FailureConfig`` lives: in the process, or in Redis for every replica.

A PUT replaces the whole config and takes effect for the next request. With Redis the
config is read on every request (one GET on loopback costs far less than the simulated
database), so a change made through one replica is seen by all of them at once. If Redis
stops answering, requests keep the last config they saw; the control API answers 503.

A missing key means the defaults, but only to a replica that never saw one: once it has, a
missing key means Redis lost it (restarted empty), and the replica keeps applying the config
it last saw and writes it back (``SharedState``, driven by :mod:`simulator.shared_state`;
the document's rules are :mod:`simulator.redis_document`'s). Replicas read the config on every
request, so they hold the same copy; should they not, the last one to write back wins, as PUTs
do.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import redis.asyncio as aioredis

from failure_lab.control import FailureConfig
from failure_lab.errors import BackendFailure
from simulator.redis_document import RedisDocument

OnChange = Callable[[FailureConfig], None]


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


class RedisConfigStore(RedisDocument[FailureConfig]):
    """The failure config as a shared document (:mod:`simulator.redis_document`) under one
    key; a key never seen means ``defaults``. Requests read it through ``current``."""

    def __init__(
        self,
        client: aioredis.Redis,
        *,
        key: str = "failure-lab:config:failure",
        timeout: float = 0.5,
        on_change: OnChange = _nothing,
        defaults: FailureConfig | None = None,
    ) -> None:
        super().__init__(
            client,
            model=FailureConfig,
            key=key,
            name="failure_config",
            error=ConfigStoreUnavailable,
            defaults=defaults or FailureConfig.defaults(),
            timeout=timeout,
            on_change=on_change,
        )

    async def current(self) -> FailureConfig:
        last = self.last
        try:
            return await self.get(timeout=last.redis_timeout_seconds)
        except ConfigStoreUnavailable:
            return self.last
