"""Disruptions shared by every replica through Redis.

A disruption created through one replica acts on the requests of all of them, and one
cancelled or cleared through any replica ends everywhere. Redis holds them in three hashes
keyed by disruption id: the record itself (type, severity, endpoints, duration and the
wall-clock creation time; never changed once written), the cancellation time of those
cancelled, and the requests affected, summed over replicas. A disruption's deadline is its
creation time plus its duration: a wall-clock instant every replica reads alike, so expiry
needs no writer and happens at the same moment everywhere. Each change is one Lua script,
so two replicas never both take the last free slot or both cancel the same disruption.

Requests never read Redis for this: they read the replica's ``DisruptionRegistry``, which
``refresh`` brings in step (the sync loop calls it every interval; the API calls it before
answering). ``refresh`` also hands the registry's new ``requests_affected`` counts to Redis
(HINCRBY), so the count a replica answers is everyone's, each replica's share at most one
interval late. While Redis does not answer, writes are 503 naming Redis; reads answer the
copy this replica acts on, which keeps expiring disruptions on time.

A marker key beside them says who last wrote (``put``, or ``restore``): once this replica has
seen it, a missing marker means Redis lost everything (a restart without persistence), and
the replica keeps its copy and writes it back (``SharedState``), unless a write got there first.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable
from typing import Any, TypeVar

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from failure_lab.control import Disruption, DisruptionRequest
from failure_lab.errors import BackendFailure, Conflict, NotFound
from simulator.disruption_scope import SharedRecord
from simulator.disruptions import DisruptionRegistry, too_many

T = TypeVar("T")


class DisruptionStoreUnavailable(BackendFailure):
    def __init__(self, message: str) -> None:
        super().__init__("redis (disruptions)", message)


# KEYS of every script: records, cancelled, affected, marker.
_COMMON = """
local function deadline(raw)
  local record = cjson.decode(raw)
  return record.created + record.duration
end
local function live(id, raw, now)
  return redis.call('HEXISTS', KEYS[2], id) == 0 and deadline(raw) > now
end
local function prune(kept, now)
  local all = redis.call('HGETALL', KEYS[1])
  local ended = {}
  for i = 1, #all, 2 do
    local at = redis.call('HGET', KEYS[2], all[i])
    if at then
      at = tonumber(at)
    else
      local due = deadline(all[i + 1])
      if due <= now then at = due end
    end
    if at then table.insert(ended, {all[i], at}) end
  end
  if #ended > kept then
    table.sort(ended, function(a, b) return a[2] < b[2] end)
    for i = 1, #ended - kept do
      for k = 1, 3 do redis.call('HDEL', KEYS[k], ended[i][1]) end
    end
  end
end
"""

# ARGV: id, record, now, max active, kept. -1 when created, else the active count.
_CREATE = (
    _COMMON
    + """
local now = tonumber(ARGV[3])
local all = redis.call('HGETALL', KEYS[1])
local active = 0
for i = 1, #all, 2 do
  if live(all[i], all[i + 1], now) then active = active + 1 end
end
if active >= tonumber(ARGV[4]) then return active end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('SET', KEYS[4], 'put')
prune(tonumber(ARGV[5]), now)
return -1
"""
)

# ARGV: id, now, kept. {'ok', record, affected}, or why not: unknown, cancelled, expired.
_CANCEL = (
    _COMMON
    + """
local raw = redis.call('HGET', KEYS[1], ARGV[1])
if not raw then return {'unknown'} end
if redis.call('HEXISTS', KEYS[2], ARGV[1]) == 1 then return {'cancelled'} end
if deadline(raw) <= tonumber(ARGV[2]) then return {'expired'} end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
redis.call('SET', KEYS[4], 'put')
prune(tonumber(ARGV[3]), tonumber(ARGV[2]))
return {'ok', raw, redis.call('HGET', KEYS[3], ARGV[1]) or '0'}
"""
)

# ARGV: now, kept. id, record, affected of each disruption it cancelled.
_CLEAR = (
    _COMMON
    + """
local now = tonumber(ARGV[1])
local all = redis.call('HGETALL', KEYS[1])
local out = {}
for i = 1, #all, 2 do
  if live(all[i], all[i + 1], now) then
    redis.call('HSET', KEYS[2], all[i], ARGV[1])
    table.insert(out, all[i])
    table.insert(out, all[i + 1])
    table.insert(out, redis.call('HGET', KEYS[3], all[i]) or '0')
  end
end
if #out > 0 then redis.call('SET', KEYS[4], 'put') end
prune(tonumber(ARGV[2]), now)
return out
"""
)

# ARGV: id, count pairs to add. The three hashes, and whether the marker exists.
_SYNC = """
for i = 1, #ARGV, 2 do
  if redis.call('HEXISTS', KEYS[1], ARGV[i]) == 1 then
    redis.call('HINCRBY', KEYS[3], ARGV[i], ARGV[i + 1])
  end
end
return {redis.call('HGETALL', KEYS[1]), redis.call('HGETALL', KEYS[2]),
        redis.call('HGETALL', KEYS[3]), redis.call('EXISTS', KEYS[4])}
"""

# ARGV: id, record, cancelled ('' if not), affected of each. 1 if written, 0 if a write
# made since Redis came back got there first.
_WRITE_BACK = """
if redis.call('EXISTS', KEYS[4]) == 1 and redis.call('GET', KEYS[4]) ~= 'restore' then
  return 0
end
for i = 1, #ARGV, 4 do
  redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
  if ARGV[i + 2] ~= '' then redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 2]) end
  redis.call('HSET', KEYS[3], ARGV[i], ARGV[i + 3])
end
redis.call('SET', KEYS[4], 'restore')
return 1
"""


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _pairs(flat: list[Any]) -> dict[str, str]:
    return {_text(flat[i]): _text(flat[i + 1]) for i in range(0, len(flat), 2)}


def encode(record: SharedRecord) -> str:
    """The record's immutable part as stored; floats as ``repr`` writes them (exact)."""
    return json.dumps(
        {
            "type": record.type,
            "severity": record.severity,
            "endpoints": list(record.endpoints),
            "duration": record.duration,
            "created": record.created_wall,
        }
    )


def decode(
    disruption_id: str, raw: str, cancelled: str | None, affected: str | None
) -> SharedRecord:
    stored = json.loads(raw)
    return SharedRecord(
        disruption_id=disruption_id,
        type=stored["type"],
        severity=float(stored["severity"]),
        endpoints=tuple(stored["endpoints"]),
        duration=float(stored["duration"]),
        created_wall=float(stored["created"]),
        cancelled_wall=None if cancelled is None else float(cancelled),
        requests_affected=int(affected or 0),
    )


class RedisDisruptions:
    """The ``Disruptions`` of every replica, kept in Redis; ``registry`` is this replica's
    copy. Also ``Synced`` (:mod:`simulator.shared_sync`) and ``SharedState``."""

    name = "disruptions"
    where = "shared through redis: every replica applies them"

    def __init__(
        self,
        client: aioredis.Redis,
        registry: DisruptionRegistry,
        *,
        prefix: str = "failure-lab:disruptions",
        timeout: float = 0.5,
    ) -> None:
        self.registry = registry
        self._keys = [prefix, prefix + ":cancelled", prefix + ":affected", prefix + ":written-by"]
        self._timeout = timeout
        self._create = client.register_script(_CREATE)
        self._cancel = client.register_script(_CANCEL)
        self._clear = client.register_script(_CLEAR)
        self._sync = client.register_script(_SYNC)
        self._write_back = client.register_script(_WRITE_BACK)
        self._client = client
        self._held = False  # whether this process has seen the marker (or written it)
        self._writes = 0  # writes made through this process; a refresh older is partial

    # The control API.

    async def create(self, request: DisruptionRequest) -> Disruption:
        registry = self.registry
        record = self.registry.new_record(request)
        args: list[str | int] = [record.disruption_id, encode(record)]
        args += [repr(record.created_wall), registry.max_active, registry.kept]
        active = await self._call(self._create(keys=self._keys, args=args))
        if active >= 0:
            raise too_many(active)
        self._wrote([record])
        return await self.get(record.disruption_id)

    async def list_active(self) -> list[Disruption]:
        """Oldest first, in the same order on every replica."""
        await self._refresh_if_possible()
        active = self.registry.list_active()
        return sorted(active, key=lambda d: (d.created_at, d.disruption_id))

    async def get(self, disruption_id: str) -> Disruption:
        await self._refresh_if_possible()
        return self.registry.get(disruption_id)

    async def cancel(self, disruption_id: str) -> Disruption:
        now = self.registry.wall()
        args: list[str | int] = [disruption_id, repr(now), self.registry.kept]
        answer = await self._call(self._cancel(keys=self._keys, args=args))
        outcome = _text(answer[0])
        if outcome == "ok":
            raw, affected = _text(answer[1]), _text(answer[2])
            self._wrote([decode(disruption_id, raw, repr(now), affected)])
            return await self.get(disruption_id)
        if outcome == "unknown":
            # Gone from Redis; this copy may still hold it as ended (the GET shows it).
            ended = self.registry.get(disruption_id)  # NotFound when unknown here too
            outcome = ended.status
        if outcome == "active":  # not in Redis, yet active here: dropped elsewhere
            raise NotFound(f"no disruption {disruption_id} (unknown, or ended long ago)")
        raise Conflict(f"disruption {disruption_id} has already {outcome}; not active")

    async def clear(self) -> list[Disruption]:
        now = self.registry.wall()
        flat = await self._call(self._clear(keys=self._keys, args=[repr(now), self.registry.kept]))
        records = [
            decode(_text(flat[i]), _text(flat[i + 1]), repr(now), _text(flat[i + 2]))
            for i in range(0, len(flat), 3)
        ]
        records.sort(key=lambda record: (record.created_wall, record.disruption_id))
        self._wrote(records)
        await self._refresh_if_possible()
        return [self.registry.get(record.disruption_id) for record in records]

    async def aclose(self) -> None:
        """Hand the last counts to Redis (best effort), then drop this copy."""
        await self._refresh_if_possible()
        self.registry.close(shared=True)

    # Synced: the copy brought in step, and this replica's counts handed over.

    async def refresh(self) -> None:
        registry = self.registry
        owed = registry.take_unflushed()
        writes = self._writes
        args: list[str | int] = [item for pair in owed.items() for item in pair]
        try:
            answer = await self._call(self._sync(keys=self._keys, args=args))
        except BackendFailure:
            registry.give_back(owed)
            raise
        records, cancelled, affected = (_pairs(part) for part in answer[:3])
        if not answer[3]:  # no marker
            if self._held:  # Redis lost them: keep this copy until it is written back
                registry.give_back(owed)
                return
        else:
            self._held = True
        shared = sorted(
            (decode(i, raw, cancelled.get(i), affected.get(i)) for i, raw in records.items()),
            key=lambda record: (record.created_wall, record.disruption_id),
        )
        # A write made through this process while the answer was on its way is not in it.
        registry.adopt(shared, complete=writes == self._writes)

    # SharedState: what Redis may lose, and how it gets it back.

    async def lost(self) -> bool:
        return self._held and await self._call(self._client.exists(self._keys[3])) == 0

    async def write_back(self) -> bool:
        args: list[str | int] = []
        for record in self.registry.records():
            cancelled = "" if record.cancelled_wall is None else repr(record.cancelled_wall)
            args += [record.disruption_id, encode(record), cancelled, record.requests_affected]
        return bool(await self._call(self._write_back(keys=self._keys, args=args)))

    def describe(self) -> str:
        active = self.registry.list_active()
        return f"{len(active)} active: " + (
            ", ".join(f"{d.disruption_id} ({d.type})" for d in active) or "none"
        )

    def _wrote(self, records: list[SharedRecord]) -> None:
        self._writes += 1
        self._held = True
        self.registry.adopt(records, complete=False)

    async def _refresh_if_possible(self) -> None:
        with contextlib.suppress(BackendFailure):  # else this replica's copy answers
            await self.refresh()

    async def _call(self, call: Awaitable[T]) -> T:
        try:
            async with asyncio.timeout(self._timeout):
                return await call
        except (TimeoutError, RedisError, OSError) as exc:
            raise DisruptionStoreUnavailable(str(exc) or "timed out") from exc
