"""Where the live ``FailureConfig`` lives: in the process, or in Redis for every replica.

A PUT replaces the whole config and takes effect for the next request. With Redis the
config is read on every request (one GET on loopback costs far less than the simulated
database), so a change made through one replica is seen by all of them at once. If Redis
stops answering, requests keep the last config they saw; the control API answers 503.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Protocol

import redis.asyncio as aioredis
from pydantic import ValidationError
from redis.exceptions import RedisError

from failure_lab.control import FailureConfig
from failure_lab.errors import BackendFailure

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


class RedisConfigStore:
    """One JSON document under one key; a missing key means ``defaults``.

    ``on_change`` is called whenever this process sees a config other than the last one,
    whichever replica wrote it, so each replica's gauges follow the shared config.
    """

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
        self._timeout = timeout
        self._on_change = on_change
        self._defaults = defaults or FailureConfig.defaults()
        self._last = self._defaults

    def _seen(self, config: FailureConfig) -> None:
        if config != self._last:
            self._last = config
            self._on_change(config)

    async def get(self, timeout: float | None = None) -> FailureConfig:
        try:
            async with asyncio.timeout(self._timeout if timeout is None else timeout):
                raw = await self._client.get(self._key)
        except (TimeoutError, RedisError, OSError) as exc:
            raise ConfigStoreUnavailable(str(exc) or "timed out") from exc
        if raw is None:
            config = self._defaults
        else:
            try:
                config = FailureConfig.model_validate_json(raw, strict=False)
            except ValidationError:
                config = self._last
        self._seen(config)
        return config

    async def put(self, config: FailureConfig) -> None:
        try:
            async with asyncio.timeout(self._timeout):
                await self._client.set(self._key, config.model_dump_json())
        except (TimeoutError, RedisError, OSError) as exc:
            raise ConfigStoreUnavailable(str(exc) or "timed out") from exc
        self._seen(config)

    async def current(self) -> FailureConfig:
        try:
            return await self.get(timeout=self._last.redis_timeout_seconds)
        except ConfigStoreUnavailable:
            return self._last
