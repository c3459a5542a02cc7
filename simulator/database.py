"""The simulated database: a user table whose every query costs latency and may fail.

Latency is uniform in ``[db_latency_min_ms, db_latency_max_ms]`` plus the request's own
``db_latency``; a query longer than ``db_timeout_seconds`` is abandoned at the timeout, as
a client library would; with failure injection on, a query fails with probability
``failure_rate`` after spending its latency (failures are not free). Waiting is
``await sleep(...)``: the event loop keeps serving other requests meanwhile.

The table is bounded: users 1..``users`` always exist (their changes are kept, one row each),
and at most ``max_created`` users made by POST are kept besides them. When a create would go
past that, the oldest created user is forgotten (a later GET or PATCH of it is a 404, as for
an id that never existed) and the eviction is counted. Refusing creates instead would turn
every POST of a long run into an error once the table filled, which no real database does;
forgetting the oldest keeps POST answering 201 with fresh ids, and the generator never reads
created users (it reads ids 1..``users``), so its traffic is unchanged.
"""

from __future__ import annotations

import asyncio
import random
from collections import OrderedDict
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


def _nothing() -> None:
    return None


class SimulatedDatabase:
    """Users 1..``users`` exist from the start; writes are kept in memory, created users
    up to ``max_created`` of them (``on_evict`` is called for each one forgotten)."""

    def __init__(
        self,
        users: int,
        rng: random.Random,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        *,
        max_created: int = 10_000,
        on_evict: Callable[[], None] = _nothing,
    ) -> None:
        if max_created < 1:
            raise ValueError("max_created must be >= 1")
        self._users = users
        self._rng = rng
        self._sleep = sleep
        self._max_created = max_created
        self._on_evict = on_evict
        self._changed: dict[int, dict[str, Any]] = {}  # users 1..users, as changed
        self._created: OrderedDict[int, dict[str, Any]] = OrderedDict()  # oldest first
        self._next_id = users + 1

    @property
    def created_users(self) -> int:
        """Created users kept now (at most ``max_created``)."""
        return len(self._created)

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
        if user_id > self._users:
            return self._created.get(user_id)
        if user_id in self._changed:
            return self._changed[user_id]
        if user_id >= 1:
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
                self._created[self._next_id] = row
                self._next_id += 1
                if len(self._created) > self._max_created:
                    self._created.popitem(last=False)
                    self._on_evict()
                return row
            case "update":
                assert query.user_id is not None
                current = self._row(query.user_id)
                if current is None:
                    return None
                updated = {**current, **(query.body or {})}
                if query.user_id > self._users:
                    self._created[query.user_id] = updated  # keeps its place: age is creation
                else:
                    self._changed[query.user_id] = updated
                return updated
