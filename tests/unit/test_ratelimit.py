"""Exact expectations for the four rate limiting algorithms, on both backends.

Every scenario runs on a scripted clock against ``MemoryRateLimiter`` and against
``RedisRateLimiter`` on a real redis-server, and the admitted requests are compared with
counts derived by hand from the semantics in ``simulator.ratelimit.algorithms``. Arrival
times are ``T0 + i/40`` and the like: exact at whole seconds, so window boundaries are exact.
"""

from __future__ import annotations

import asyncio
import random
import socket
import time
from collections.abc import AsyncIterator, Callable, Sequence

import pytest
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from failure_lab.control import RateLimitAlgorithm
from simulator.ratelimit import Decision, RateLimiter, RateLimiterUnavailable
from simulator.ratelimit.algorithms import ALGORITHMS, DEFAULT_MAX_QUEUE_DELAY
from simulator.ratelimit.memory import MemoryRateLimiter
from simulator.ratelimit.redis import RedisRateLimiter
from simulator.redis_client import redis_client

T0 = 1000.0
TIMEOUT = 2.0
"""Redis timeout in the scenario tests: generous, a slow CI machine must not fail them."""


def closed_port() -> int:
    """A loopback port nobody listens on."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class ScriptedClock:
    """A clock that reads whatever the test last set."""

    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


MakeLimiter = Callable[..., RateLimiter]


@pytest.fixture(params=["memory", "redis"])
def make_limiter(request: pytest.FixtureRequest) -> MakeLimiter:
    """Build a limiter of the parametrized backend: ``make_limiter(clock[, max_queue_delay])``."""
    if request.param == "memory":
        return MemoryRateLimiter
    client: Redis = request.getfixturevalue("redis_client")

    def make(
        clock: Callable[[], float], max_queue_delay: float = DEFAULT_MAX_QUEUE_DELAY
    ) -> RateLimiter:
        return RedisRateLimiter(client, clock, max_queue_delay=max_queue_delay, timeout=TIMEOUT)

    return make


async def run(
    limiter: RateLimiter,
    clock: ScriptedClock,
    algorithm: RateLimitAlgorithm,
    rate: float,
    times: Sequence[float],
) -> list[Decision]:
    decisions = []
    for now in times:
        clock.now = now
        decisions.append(await limiter.acquire(algorithm, rate))
    return decisions


def admitted(decisions: Sequence[Decision]) -> list[int]:
    return [i for i, decision in enumerate(decisions) if decision.allowed]


SPREAD = [T0 + i / 40 for i in range(100)]
"""100 requests over 2.5 s, one every 25 ms, starting on a whole second."""


# token_bucket


async def test_token_bucket_admits_its_capacity_at_one_instant(make_limiter: MakeLimiter) -> None:
    clock = ScriptedClock()
    decisions = await run(make_limiter(clock), clock, "token_bucket", 10, [T0] * 100)
    assert admitted(decisions) == list(range(10))
    assert all(d.delay == 0.0 for d in decisions)


async def test_token_bucket_refills_one_token_per_interval(make_limiter: MakeLimiter) -> None:
    clock = ScriptedClock()
    limiter = make_limiter(clock)
    # rate 8: a token every 0.125 s.
    burst = await run(limiter, clock, "token_bucket", 8, [T0] * 9)
    assert admitted(burst) == list(range(8))
    times = [T0 + 0.0625, T0 + 0.125, T0 + 0.125, T0 + 0.375, T0 + 0.375, T0 + 0.375]
    decisions = await run(limiter, clock, "token_bucket", 8, times)
    # half a token; one token; none; two tokens; so two admitted and the third refused.
    assert [d.allowed for d in decisions] == [False, True, False, True, True, False]


async def test_token_bucket_over_a_spread_of_arrivals(make_limiter: MakeLimiter) -> None:
    clock = ScriptedClock()
    decisions = await run(make_limiter(clock), clock, "token_bucket", 10, SPREAD)
    # Tokens available at arrival i: 10 + i/4 in all, so i = 0..12 pass on the initial burst,
    # then one arrival in four, exactly as a token completes (i = 16, 20, ..., 96).
    assert admitted(decisions) == list(range(13)) + list(range(16, 100, 4))
    assert len(admitted(decisions)) == 34


async def test_token_bucket_refill_is_capped_at_capacity(make_limiter: MakeLimiter) -> None:
    clock = ScriptedClock()
    limiter = make_limiter(clock)
    await run(limiter, clock, "token_bucket", 10, [T0] * 10)
    decisions = await run(limiter, clock, "token_bucket", 10, [T0 + 60] * 30)
    assert admitted(decisions) == list(range(10))


async def test_token_bucket_fractional_rate_holds_one_token(make_limiter: MakeLimiter) -> None:
    clock = ScriptedClock()
    times = [T0, T0 + 1, T0 + 2, T0 + 2, T0 + 100, T0 + 100]
    decisions = await run(make_limiter(clock), clock, "token_bucket", 0.5, times)
    assert [d.allowed for d in decisions] == [True, False, True, False, True, False]


# leaky_bucket


async def test_leaky_bucket_delays_a_burst_into_slots(make_limiter: MakeLimiter) -> None:
    clock = ScriptedClock()
    decisions = await run(make_limiter(clock), clock, "leaky_bucket", 10, [T0] * 20)
    # Slots every 0.1 s; waits up to 1 s are queued, so delays 0, 0.1, ..., 1.0.
    assert admitted(decisions) == list(range(11))
    assert [d.delay for d in decisions[:11]] == pytest.approx([k / 10 for k in range(11)], abs=1e-9)
    assert all(d.delay == 0.0 for d in decisions[11:])


async def test_leaky_bucket_over_a_spread_of_arrivals(make_limiter: MakeLimiter) -> None:
    clock = ScriptedClock()
    decisions = await run(make_limiter(clock), clock, "leaky_bucket", 10, SPREAD)
    # With A admitted before arrival i, its slot waits A/10 - i/40 s; admitted while that is
    # at most 1 s: i = 0..13, then every fourth arrival, which waits exactly 1 s.
    assert admitted(decisions) == list(range(14)) + list(range(16, 100, 4))
    assert len(admitted(decisions)) == 35
    expected = {0: 0.0, 1: 0.075, 13: 0.975, 16: 1.0, 96: 1.0}
    assert {i: decisions[i].delay for i in expected} == pytest.approx(expected, abs=1e-9)


async def test_leaky_bucket_queue_drains(make_limiter: MakeLimiter) -> None:
    clock = ScriptedClock()
    times = [T0, T0, T0, T0 + 0.25, T0 + 1.0]
    decisions = await run(make_limiter(clock), clock, "leaky_bucket", 10, times)
    assert all(d.allowed for d in decisions)
    # Slots at 0, 0.1, 0.2, then 0.3 for the arrival at 0.25; the queue is empty by 1.0.
    delays = [d.delay for d in decisions]
    assert delays == pytest.approx([0.0, 0.1, 0.2, 0.05, 0.0], abs=1e-9)


async def test_leaky_bucket_max_queue_delay(make_limiter: MakeLimiter) -> None:
    clock = ScriptedClock()
    limiter = make_limiter(clock, max_queue_delay=0.5)
    decisions = await run(limiter, clock, "leaky_bucket", 10, [T0] * 20)
    assert admitted(decisions) == list(range(6))
    assert decisions[5].delay == pytest.approx(0.5, abs=1e-9)


# fixed_window


async def test_fixed_window_lets_twice_the_rate_across_a_boundary(
    make_limiter: MakeLimiter,
) -> None:
    clock = ScriptedClock()
    times = [T0 + 0.9] * 15 + [T0 + 1.0] * 15
    decisions = await run(make_limiter(clock), clock, "fixed_window", 10, times)
    assert admitted(decisions) == list(range(10)) + list(range(15, 25))


async def test_fixed_window_over_a_spread_of_arrivals(make_limiter: MakeLimiter) -> None:
    clock = ScriptedClock()
    decisions = await run(make_limiter(clock), clock, "fixed_window", 10, SPREAD)
    # Windows start at arrivals 0, 40 and 80; the first ten of each pass.
    assert admitted(decisions) == list(range(10)) + list(range(40, 50)) + list(range(80, 90))


async def test_fixed_window_fractional_rate_admits_the_ceiling(
    make_limiter: MakeLimiter,
) -> None:
    clock = ScriptedClock()
    limiter = make_limiter(clock)
    times = [T0 + 0.5] * 5 + [T0 + 1.5] * 5
    assert admitted(await run(limiter, clock, "fixed_window", 2.5, times)) == [0, 1, 2, 5, 6, 7]
    assert admitted(await run(limiter, clock, "fixed_window", 0.5, times)) == [0, 5]


# sliding_window


async def test_sliding_window_refuses_the_boundary_burst(make_limiter: MakeLimiter) -> None:
    clock = ScriptedClock()
    times = [T0 + 0.9] * 15 + [T0 + 1.0] * 15 + [T0 + 1.5] * 10
    decisions = await run(make_limiter(clock), clock, "sliding_window", 10, times)
    # At 1.0 the estimate is 10 * 1 + 0; at 1.5 it is 10 * 0.5 + count, so five more pass.
    assert admitted(decisions) == list(range(10)) + list(range(30, 35))


async def test_sliding_window_over_a_spread_of_arrivals(make_limiter: MakeLimiter) -> None:
    clock = ScriptedClock()
    decisions = await run(make_limiter(clock), clock, "sliding_window", 10, SPREAD)
    # In a later window, arrival j (0-based, at j/40 s) with c counted passes iff
    # 10 * (1 - j/40) + c < 10, i.e. j > 4c: j = 1, 5, 9, ...
    assert admitted(decisions) == list(range(10)) + list(range(41, 80, 4)) + list(range(81, 100, 4))
    assert len(admitted(decisions)) == 25


async def test_sliding_window_weights_and_forgets_windows(make_limiter: MakeLimiter) -> None:
    clock = ScriptedClock()
    limiter = make_limiter(clock)
    counts = []
    for now in (T0 + 0.5, T0 + 1.25, T0 + 2.25, T0 + 4.0):
        decisions = await run(limiter, clock, "sliding_window", 10, [now] * 20)
        counts.append(len(admitted(decisions)))
    # 10 fresh; 10 * 0.75 + c < 10 -> 3; 3 * 0.75 + c < 10 -> 8; two windows later, fresh: 10.
    assert counts == [10, 3, 8, 10]


# every algorithm


async def test_limits_are_keyed_by_algorithm_and_rate(make_limiter: MakeLimiter) -> None:
    clock = ScriptedClock()
    limiter = make_limiter(clock)
    burst = [T0] * 20
    assert len(admitted(await run(limiter, clock, "token_bucket", 10, burst))) == 10
    assert len(admitted(await run(limiter, clock, "token_bucket", 10.0, burst))) == 0
    assert len(admitted(await run(limiter, clock, "token_bucket", 5, burst))) == 5
    assert len(admitted(await run(limiter, clock, "fixed_window", 10, burst))) == 10
    assert len(admitted(await run(limiter, clock, "sliding_window", 10, burst))) == 10
    assert len(admitted(await run(limiter, clock, "leaky_bucket", 10, burst))) == 11


async def test_a_clock_running_backwards_never_refills_or_reopens(
    make_limiter: MakeLimiter,
) -> None:
    """Processes sharing one limit may disagree on the time by a little."""
    clock = ScriptedClock()
    limiter = make_limiter(clock)
    # Behind the last update: no refill; the next token still comes 1/8 s after T0.
    times = [T0] * 8 + [T0 - 0.5] + [T0 + 0.125] * 2
    decisions = await run(limiter, clock, "token_bucket", 8, times)
    assert admitted(decisions) == [*range(8), 9]
    # A request from an earlier window counts in the newer one.
    times = [T0 + 1.2] * 10 + [T0 + 0.9] + [T0 + 2.0]
    decisions = await run(limiter, clock, "fixed_window", 10, times)
    assert admitted(decisions) == [*range(10), 11]
    # Behind the window start, the previous window weighs fully: 4 * 1 + c < 10.
    times = [T0 + 0.5] * 4 + [T0 + 1.5] * 3 + [T0 + 0.75] * 10
    decisions = await run(limiter, clock, "sliding_window", 10, times)
    assert admitted(decisions) == list(range(10))
    # Behind the queue, a request waits the longer for the same next slot.
    times = [T0] * 3 + [T0 - 0.5, T0 - 0.8]
    decisions = await run(limiter, clock, "leaky_bucket", 10, times)
    assert [d.allowed for d in decisions] == [True, True, True, True, False]
    assert decisions[3].delay == pytest.approx(0.8, abs=1e-9)


@pytest.mark.parametrize("rate", [0, -1, float("nan"), float("inf")])
@pytest.mark.parametrize("algorithm", ALGORITHMS)
async def test_rate_must_be_positive_and_finite(
    make_limiter: MakeLimiter, algorithm: RateLimitAlgorithm, rate: float
) -> None:
    limiter = make_limiter(ScriptedClock())
    with pytest.raises(ValueError, match="rate must be a finite number > 0"):
        await limiter.acquire(algorithm, rate)


@pytest.mark.parametrize("start", [T0, 1_700_000_000.0])
async def test_backends_decide_identically(redis_client: Redis, start: float) -> None:
    """Random arrivals, decisions and delays equal to the last bit, at small and epoch times."""
    rng = random.Random(20240601)
    times: list[float] = []
    now = start
    for _ in range(400):
        now += rng.expovariate(40.0)
        times.append(now)
    for algorithm in ALGORITHMS:
        for rate in (0.5, 3, 10, 25):
            memory_clock, redis_clock = ScriptedClock(), ScriptedClock()
            memory = MemoryRateLimiter(memory_clock)
            shared = RedisRateLimiter(redis_client, redis_clock, timeout=TIMEOUT)
            expected = await run(memory, memory_clock, algorithm, rate, times)
            assert await run(shared, redis_clock, algorithm, rate, times) == expected
            assert 0 < len(admitted(expected)) < len(times)
            if algorithm == "leaky_bucket":
                assert any(d.delay > 0 for d in expected)


# Redis specifics


@pytest.fixture
async def second_client(redis_url: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_url)
    try:
        yield client
    finally:
        await client.aclose()


async def test_two_limiters_on_two_clients_share_one_limit(
    redis_client: Redis, second_client: Redis
) -> None:
    clock = ScriptedClock()
    first = RedisRateLimiter(redis_client, clock, timeout=TIMEOUT)
    second = RedisRateLimiter(second_client, clock, timeout=TIMEOUT)
    decisions = []
    for i, now in enumerate(SPREAD):
        clock.now = now
        decisions.append(await (first if i % 2 else second).acquire("token_bucket", 10))
    assert admitted(decisions) == list(range(13)) + list(range(16, 100, 4))


@pytest.mark.parametrize(
    ("algorithm", "expected"),
    [("token_bucket", 10), ("leaky_bucket", 11), ("fixed_window", 10), ("sliding_window", 10)],
)
async def test_concurrent_requests_from_two_clients_are_atomic(
    redis_client: Redis, second_client: Redis, algorithm: RateLimitAlgorithm, expected: int
) -> None:
    clock = ScriptedClock()
    limiters = [
        RedisRateLimiter(client, clock, timeout=TIMEOUT) for client in (redis_client, second_client)
    ]
    decisions = await asyncio.gather(*(limiters[i % 2].acquire(algorithm, 10) for i in range(40)))
    assert sum(d.allowed for d in decisions) == expected


@pytest.mark.parametrize(
    ("algorithm", "ttl_ms"),
    [
        ("token_bucket", 2000),
        ("leaky_bucket", 2100),
        ("fixed_window", 2000),
        ("sliding_window", 3000),
    ],
)
async def test_state_expires_after_its_idle_horizon(
    redis_client: Redis, algorithm: RateLimitAlgorithm, ttl_ms: int
) -> None:
    limiter = RedisRateLimiter(redis_client, ScriptedClock(), key_prefix="p:", timeout=TIMEOUT)
    assert (await limiter.acquire(algorithm, 10)).allowed
    assert limiter.key(algorithm, 10) == f"p:{algorithm}:10.0"
    assert await redis_client.keys("*") == [f"p:{algorithm}:10.0".encode()]
    assert ttl_ms - 500 < await redis_client.pttl(f"p:{algorithm}:10.0") <= ttl_ms


async def test_key_prefixes_separate_limits(redis_client: Redis) -> None:
    clock = ScriptedClock()
    first = RedisRateLimiter(redis_client, clock, key_prefix="a:", timeout=TIMEOUT)
    second = RedisRateLimiter(redis_client, clock, key_prefix="b:", timeout=TIMEOUT)
    assert len(admitted(await run(first, clock, "fixed_window", 10, [T0] * 20))) == 10
    assert len(admitted(await run(second, clock, "fixed_window", 10, [T0] * 20))) == 10


async def test_unreachable_redis_is_unavailable_within_the_timeout() -> None:
    client = redis_client(f"redis://127.0.0.1:{closed_port()}/0")
    limiter = RedisRateLimiter(client, timeout=0.1)
    try:
        started = time.monotonic()
        with pytest.raises(RateLimiterUnavailable) as caught:
            await limiter.acquire("token_bucket", 10)
        elapsed = time.monotonic() - started
    finally:
        await client.aclose()
    assert elapsed < 0.1 + 0.15
    assert caught.value.reason == "unavailable"
    assert caught.value.__cause__ is not None


async def test_silent_redis_is_unavailable_after_the_timeout() -> None:
    async def never_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()
        writer.close()

    server = await asyncio.start_server(never_answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    client = Redis(host="127.0.0.1", port=port)
    limiter = RedisRateLimiter(client, timeout=0.1)
    try:
        started = time.monotonic()
        with pytest.raises(RateLimiterUnavailable, match=r"within 0\.1 s") as caught:
            await limiter.acquire("sliding_window", 10)
        elapsed = time.monotonic() - started
    finally:
        await client.aclose()
        server.close()
        await server.wait_closed()
    assert 0.1 <= elapsed < 0.1 + 0.15
    assert caught.value.reason == "timeout"


async def test_redis_error_is_unavailable(redis_client: Redis) -> None:
    limiter = RedisRateLimiter(redis_client, key_prefix="p:", timeout=TIMEOUT)
    await redis_client.set("p:fixed_window:10.0", "not a hash")
    with pytest.raises(RateLimiterUnavailable) as caught:
        await limiter.acquire("fixed_window", 10)
    assert isinstance(caught.value.__cause__, ResponseError)
    assert caught.value.reason == "unavailable"


async def test_aclose_leaves_the_callers_client_open(redis_client: Redis) -> None:
    limiter = RedisRateLimiter(redis_client, timeout=TIMEOUT)
    await limiter.aclose()
    assert await redis_client.ping() is True
