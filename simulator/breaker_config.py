"""Where the circuit breaker's settings live: in the process, or in Redis for every replica.

Real clients each keep their own breaker, so the breaker's *state* (closed, open, its count
of failures) stays in each replica; what an operator sets, the thresholds, is one setting for
the whole service. With Redis it is one shared document (:mod:`simulator.redis_document`):
a PUT through any replica writes it, and each replica applies it to its own breaker when it
next syncs (:mod:`simulator.shared_sync`, within a second) or reads it for the API. The
request path never reads Redis for it: it asks the local breaker, as before.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import redis.asyncio as aioredis

from failure_lab.control import CircuitBreakerConfig
from failure_lab.errors import BackendFailure
from simulator.redis_document import RedisDocument

OnChange = Callable[[CircuitBreakerConfig], None]


class BreakerConfigUnavailable(BackendFailure):
    def __init__(self, message: str) -> None:
        super().__init__("redis (circuit breaker config store)", message)


class BreakerConfigStore(Protocol):
    async def get(self) -> CircuitBreakerConfig:
        """The shared config; calls ``on_change`` if it is new here; raises
        ``BreakerConfigUnavailable``."""
        ...

    async def put(self, config: CircuitBreakerConfig) -> None:
        """Replace the shared config; raises ``BreakerConfigUnavailable``."""
        ...


class MemoryBreakerConfigStore:
    """One process: the config is the one its own breaker applies."""

    def __init__(self, initial: CircuitBreakerConfig, on_change: OnChange) -> None:
        self._config = initial
        self._on_change = on_change

    async def get(self) -> CircuitBreakerConfig:
        return self._config

    async def put(self, config: CircuitBreakerConfig) -> None:
        self._config = config
        self._on_change(config)


class RedisBreakerConfigStore(RedisDocument[CircuitBreakerConfig]):
    """The breaker's config under one key; a replica that never saw one applies its start-up
    settings (``defaults``)."""

    def __init__(
        self,
        client: aioredis.Redis,
        *,
        defaults: CircuitBreakerConfig,
        on_change: OnChange,
        key: str = "failure-lab:config:circuit-breaker",
        timeout: float = 0.5,
    ) -> None:
        super().__init__(
            client,
            model=CircuitBreakerConfig,
            key=key,
            name="circuit_breaker_config",
            error=BreakerConfigUnavailable,
            defaults=defaults,
            timeout=timeout,
            on_change=on_change,
        )
