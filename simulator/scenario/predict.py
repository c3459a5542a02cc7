"""Closed forms of what the simulated service must show, derived from its own code.

A measured figure alone cannot say whether the service behaved as designed or whether the
machine, the load or a bug had a hand in it; beside the model's prediction, the gap says it.
Each function here is one formula, with the code it is read from:

- a database attempt (``database.py``, ``disruptions.py``): an active ``db_outage`` of
  severity ``s`` fails it first, with probability ``s``, before any latency; otherwise its
  latency is uniform in ``[min, max]`` ms plus the request's ``db_latency`` and every active
  ``db_latency_spike`` (``severity x spike_ms``), it times out when that exceeds the timeout,
  and with failure injection on it fails with probability ``failure_rate`` after its latency;
- retries (``database_stage.py``): up to ``r = max_retries`` more attempts, while each fails;
  with independent attempts failing with probability ``p``, a request makes
  ``1 + p + ... + p^r`` attempts on average and fails with probability ``p^(r+1)``;
- the cache (``cache_stage.py``, ``cache.py``): a read of a key fresh in the cache hits; a
  miss fills the key for ``cache_ttl`` seconds, unless a write invalidates it first;
- the rate limiters (``ratelimit/algorithms.py``): each admits ``limit`` req/s in the long
  run, the token bucket one second of burst more, the leaky bucket one second of queue more;
- the breaker (``breaker.py``): opens after ``failure_threshold`` consecutive failed
  attempts, stays open ``open_seconds``, then one probe closes it or opens it again.
"""

from __future__ import annotations

import math

from failure_lab.control import RateLimitAlgorithm


def timeout_probability(low_ms: float, high_ms: float, extra_ms: float, timeout_s: float) -> float:
    """P(an attempt's latency > the timeout): latency uniform in [low, high] ms plus extra."""
    limit = timeout_s * 1000.0 - extra_ms
    if high_ms <= low_ms:
        return 1.0 if low_ms > limit else 0.0
    return min(1.0, max(0.0, (high_ms - limit) / (high_ms - low_ms)))


def attempt_failure(outage: float, timed_out: float, injected: float) -> float:
    """P(one attempt fails): the outage draw first, then a timeout, then injection."""
    return outage + (1.0 - outage) * (timed_out + (1.0 - timed_out) * injected)


def expected_attempts(p: float, retries: int) -> float:
    """1 + p + p^2 + ... + p^r: attempts per request when each fails with probability p."""
    return sum(p**k for k in range(retries + 1))


def failure_after_retries(p: float, retries: int) -> float:
    """p^(r+1): the request fails only when every one of its r + 1 attempts fails."""
    return p ** (retries + 1)


def retries_variance(p: float, retries: int) -> float:
    """Variance of the retries one request makes (X >= k with probability p^k, k <= r)."""
    mean = sum(p**k for k in range(1, retries + 1))
    second = sum((2 * k - 1) * p**k for k in range(1, retries + 1))
    return max(0.0, second - mean * mean)


def fresh_seconds(ttl: float, invalidation_rate: float) -> float:
    """How long a filled key stays fresh: min(ttl, the next invalidation), on average."""
    if invalidation_rate <= 0:
        return ttl
    return (1.0 - math.exp(-invalidation_rate * ttl)) / invalidation_rate


def hit_ratio(
    read_rate: float, fresh: float, fill: float = 1.0, lookup_error: float = 0.0
) -> float:
    """Share of a key's reads that hit, in the steady state.

    Reads arrive at ``read_rate``; a failed lookup (probability ``lookup_error``) is neither
    a hit nor a fill; a miss fills the key with probability ``fill`` (its query succeeded and
    its write reached the cache), after which reads hit for ``fresh`` seconds. Per cycle:
    ``1 / fill`` missing reads, then ``read_rate x (1 - lookup_error) x fresh`` hits.
    """
    if read_rate <= 0 or fresh <= 0 or fill <= 0:
        return 0.0
    hits = read_rate * (1.0 - lookup_error) * fresh
    return (1.0 - lookup_error) * hits / (1.0 / fill + hits)


def burst_allowance(algorithm: RateLimitAlgorithm, limit: float) -> float:
    """What a fresh limiter admits on top of its rate: a full token bucket (one second of
    tokens, at least one), or the leaky bucket's one second of queue and its first slot."""
    return {"token_bucket": max(limit, 1.0), "leaky_bucket": limit + 1.0}.get(algorithm, 0.0)


def admitted_requests(
    algorithm: RateLimitAlgorithm, limit: float, offered: float, seconds: float
) -> float:
    """Requests a limiter admits out of ``offered`` req/s over ``seconds``, starting fresh."""
    if limit <= 0:
        return 0.0
    return min(offered * seconds, limit * seconds + burst_allowance(algorithm, limit))


def refused_fraction(
    algorithm: RateLimitAlgorithm, limit: float, offered: float, seconds: float
) -> float:
    """1 - admitted / offered: the share of a constant offered rate the limiter refuses."""
    total = offered * seconds
    if total <= 0:
        return 0.0
    return max(0.0, 1.0 - admitted_requests(algorithm, limit, offered, seconds) / total)


def breaker_open_fraction(
    p: float, attempt_rate: float, threshold: int, open_seconds: float, attempt_seconds: float
) -> float:
    """Long-run share of time a breaker is open when attempts fail with probability ``p``.

    Closed, it needs ``threshold`` consecutive failures: ``(1 - p^k) / ((1 - p) p^k)``
    attempts on average (the classic run length), at ``attempt_rate`` per second, plus one
    attempt's duration; open, it stays ``open_seconds`` per failed probe, and probes fail with
    probability ``p``: ``open_seconds / (1 - p)`` per cycle.
    """
    if p <= 0 or attempt_rate <= 0:
        return 0.0
    if p >= 1:
        return 1.0
    closed = (1.0 - p**threshold) / ((1.0 - p) * p**threshold) / attempt_rate + attempt_seconds
    opened = open_seconds / (1.0 - p)
    return opened / (opened + closed)


def breaker_trip_seconds(threshold: int, request_rate: float, attempt_seconds: float) -> float:
    """When every attempt fails: seconds from the fault's start until the breaker opens.

    The first failures are the first attempts of the requests that arrived first, at
    ``request_rate``: the ``threshold``-th of them starts ``(threshold - 1) / rate`` in and
    fails one attempt's duration later.
    """
    if request_rate <= 0:
        return math.inf
    return (threshold - 1) / request_rate + attempt_seconds


def standard_error(variance: float, count: float) -> float | None:
    """sqrt(variance / count): the statistical error of a mean over ``count`` draws."""
    return math.sqrt(variance / count) if count > 0 else None
