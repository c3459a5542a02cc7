"""The simulated database: a user table whose every query costs latency and may fail.

Latency is uniform in ``[db_latency_min_ms, db_latency_max_ms]`` plus the request's own
``db_latency``; a query longer than ``db_timeout_seconds`` is abandoned at the timeout, as
a client library would; with failure injection on, a query fails with probability
``failure_rate`` after spending its latency (failures are not free). Waiting is
``await sleep(...)``: the event loop keeps serving other requests meanwhile.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal

from failure_lab.control import FailureConfig

QueryKind = Literal["list", "get", "create", "update"]
LIST_PAGE = 20


class DatabaseError(Exception):
    kind = "error"


class DatabaseTimeout(Exception):
    kind = "timeout"


@dataclass(frozen=True, slots=True)
class Query:
    kind: QueryKind
    user_id: int | None = None
    body: dict[str, Any] | None = None


class SimulatedDatabase:
    """Users 1..``users`` exist from the start; writes are kept in memory."""

    def __init__(
        self,
        users: int,
        rng: random.Random,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._users = users
        self._rng = rng
        self._sleep = sleep
        self._written: dict[int, dict[str, Any]] = {}
        self._next_id = users + 1

    def draw_latency(self, config: FailureConfig, extra_ms: float) -> float:
        """Seconds one query takes before any timeout."""
        low, high = config.db_latency_min_ms, config.db_latency_max_ms
        base = low if high <= low else self._rng.uniform(low, high)
        return (base + extra_ms) / 1000.0

    async def execute(self, query: Query, config: FailureConfig, extra_ms: float) -> Any:
        latency = self.draw_latency(config, extra_ms)
        if latency > config.db_timeout_seconds:
            await self._sleep(config.db_timeout_seconds)
            raise DatabaseTimeout(
                f"query exceeded db_timeout_seconds={config.db_timeout_seconds:g}"
            )
        if latency > 0:
            await self._sleep(latency)
        if config.failure_injection_enabled and self._rng.random() < config.failure_rate:
            raise DatabaseError("injected database error")
        return self._apply(query)

    def _row(self, user_id: int) -> dict[str, Any] | None:
        if user_id in self._written:
            return self._written[user_id]
        if 1 <= user_id <= self._users:
            return {
                "id": user_id,
                "name": f"user-{user_id}",
                "email": f"user{user_id}@example.test",
            }
        return None

    def _apply(self, query: Query) -> Any:
        match query.kind:
            case "list":
                rows = (self._row(i) for i in range(1, LIST_PAGE + 1))
                return [row for row in rows if row is not None]
            case "get":
                assert query.user_id is not None
                return self._row(query.user_id)
            case "create":
                row = {"id": self._next_id, **(query.body or {})}
                self._written[self._next_id] = row
                self._next_id += 1
                return row
            case "update":
                assert query.user_id is not None
                current = self._row(query.user_id)
                if current is None:
                    return None
                updated = {**current, **(query.body or {})}
                self._written[query.user_id] = updated
                return updated
