"""The read cache's hit ratio over a run, from its rules, its TTL and its key space.

The cache (``cache_stage.py``, ``cache.py``) keeps a read for ``cache_ttl`` seconds after a
miss filled it, unless a write of the same key invalidates it first; a hit does not refresh
it. For a key read at rate ``lambda`` (Poisson: the generator draws user ids uniformly) and
invalidated at rate ``w``, the probability ``F(t)`` that the key is fresh is the expected sum
of the fills of the last ``ttl`` seconds that no write has undone:

    F(t) = integral over (t - ttl, t] of  lambda (1 - c) fill (1 - F(s)) e^(-w (t - s)) ds

(a read that finds the key stale fills it with probability ``fill``: its query succeeded and
its write reached the cache; a lookup failing with probability ``c`` fills nothing). Its
steady state is ``predict.hit_ratio``'s closed form; stepping it from an empty cache gives
the cold start and the transients between phases too, which matter with a long TTL.

The list key is read and invalidated by a fixed rotation, not at random: in the default mix
a write always comes between two list reads, so they never hit. Its share of reads that
follow no write since the previous list read (``undisturbed``) is read off the rotation.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

REBASE = 30.0


@dataclass(slots=True)
class KeyFreshness:
    """``F(t)`` of one key, stepped forward; fills older than the TTL drop out.

    Each fill is kept with the invalidation integral at its time, so what is left of it
    later is ``amount x e^-(integral now - integral then)``, without touching every fill
    at every step.
    """

    fresh: float = 0.0
    decayed: float = 0.0  # the integral of the invalidation rate so far
    base: float = 0.0  # weights are kept as amount x e^(decayed then - base)
    total: float = 0.0  # the sum of the weights
    fills: deque[tuple[float, float]] = field(default_factory=deque)  # (time, weight)

    def step(
        self, now: float, dt: float, fill_rate: float, invalidation: float, ttl: float
    ) -> float:
        """Advance from ``now`` to ``now + dt``; returns F over the step (its start value)."""
        seen = self.fresh
        self.decayed += invalidation * dt
        if self.decayed - self.base > REBASE:
            shift = math.exp(self.base - self.decayed)
            self.fills = deque((t, w * shift) for t, w in self.fills)
            self.total *= shift
            self.base = self.decayed
        weight = fill_rate * (1.0 - seen) * dt * math.exp(self.decayed - self.base)
        self.fills.append((now, weight))
        self.total += weight
        while self.fills and self.fills[0][0] <= now + dt - ttl:
            self.total -= self.fills.popleft()[1]
        self.fresh = min(1.0, max(0.0, self.total * math.exp(self.base - self.decayed)))
        return seen


@dataclass(slots=True)
class CacheModel:
    """The freshness of the user keys (one, all alike by symmetry) and of the list key,
    carried from phase to phase on one clock (seconds since the run started)."""

    user: KeyFreshness = field(default_factory=KeyFreshness)
    listing: KeyFreshness = field(default_factory=KeyFreshness)
    clock: float = 0.0

    def advance(self, dt: float) -> None:
        self.clock += dt


def undisturbed_share(sequence: list[str], read: str, writes: frozenset[str]) -> float:
    """Share of ``read``s in ``sequence`` (cyclic) with no write since the previous read."""
    positions = [i for i, key in enumerate(sequence) if key == read]
    if not positions:
        return 0.0
    clean = 0
    for number, position in enumerate(positions):
        previous = positions[number - 1]
        between = (
            sequence[previous + 1 : position]
            if previous < position
            else sequence[previous + 1 :] + sequence[:position]
        )
        clean += not any(key in writes for key in between)
    return clean / len(positions)
