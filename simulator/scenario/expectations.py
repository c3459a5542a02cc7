"""What the model predicts for each phase of a scenario, before it runs.

The formulas are in ``predict.py``; this module feeds them one phase: its load shape and
request mix (taken from the generator's own ``plan_scenario``, so the rotation and the rate
over time are the ones the job will send), its failure config, breaker and pipeline options,
and its disruptions as they switch on and off. The phase is cut into short steps and each
figure is summed over them weighted by the requests sent in each, which handles ramps,
latency that grows, and disruptions covering part of a phase alike.

Assumptions, stated in every prediction: attempts fail independently; user ids are uniform
(reads and writes of a key are Poisson); the service sees exactly the offered load; a
limiter starts the phase fresh; the first phase with the cache on starts it empty, later
ones find it as the model left it (warm).
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field

from simulator.generator.planner import CREATE_USER, ERROR, GET_USER, LIST_USERS, UPDATE_USER
from simulator.generator.scenarios import ERROR_RATE, ScenarioPlan, plan_scenario
from simulator.options import PipelineOptions
from simulator.routes import ERROR as ERROR_ROUTE
from simulator.routes import LIST, ONE
from simulator.scenario import predict
from simulator.scenario.cache_model import CacheModel, undisturbed_share
from simulator.scenario.conditions import (
    Conditions,
    ServerConstants,
    conditions_at,
    refused_share,
)
from simulator.scenario.spec import Phase, Scenario

STEPS = 200
MIX_SAMPLE = 1000
_READS = frozenset({GET_USER, LIST_USERS})
_WRITES = frozenset({CREATE_USER, UPDATE_USER})
_ROUTE = {GET_USER: ONE, UPDATE_USER: ONE, LIST_USERS: LIST, CREATE_USER: LIST, ERROR: ERROR_ROUTE}


@dataclass(slots=True)
class Tally:
    """Sums over a phase's steps; each is a number of requests (or of reads, of retries)."""

    requests: float = 0.0
    retries: float = 0.0
    retries_variance: float = 0.0
    errors: float = 0.0
    refused: float = 0.0
    reads: float = 0.0
    hits: float = 0.0
    open_seconds: float = 0.0
    failing_stretch: float = 0.0
    breaker_matters: bool = False
    query_ms_sum: float = 0.0  # a request's database time, summed over requests
    notes: set[str] = field(default_factory=set)


def plan_of(phase: Phase, options: PipelineOptions, server: ServerConstants) -> ScenarioPlan:
    rate = phase.max_rps if phase.max_rps is not None else server.max_rps
    return plan_scenario(
        phase.scenario,
        duration=phase.seconds,
        max_rps=rate,
        endpoints=phase.endpoints,
        options=options,
        users=server.users,
        rng=random.Random(0),
        latency_growth_ms=server.latency_growth_ms,
    )


def request_mix(plan: ScenarioPlan) -> dict[str, float]:
    """Share of each route key among the requests the job sends."""
    counts = Counter(plan.requests.next().endpoint for _ in range(MIX_SAMPLE))
    return {key: count / MIX_SAMPLE for key, count in counts.items()}


@dataclass(frozen=True, slots=True)
class Expected:
    """One predicted figure of a phase; ``variance`` is per draw (a request, a read), for the
    statistical error of a measurement over a known number of draws."""

    figure: str
    predicted: float
    variance: float
    formula: str
    assumptions: str
    caveat: str | None = None


INDEPENDENT = "attempts fail independently"
OFFERED = "the service sees exactly the offered load"


class PhaseModel:
    """Steps through one phase and sums what the formulas predict for each step."""

    def __init__(
        self, scenario: Scenario, phase: Phase, server: ServerConstants, cache: CacheModel
    ) -> None:
        self._phase = phase
        self._server = server
        self._cache = cache
        self._cold = cache.clock == 0.0
        self._config = scenario.failure_config_for(phase)
        self._breaker = scenario.circuit_breaker_for(phase)
        base = scenario.pipeline_for(phase)
        self._plan = plan_of(phase, base, server)
        self._mix = request_mix(self._plan)
        self._tally = Tally()
        self._p_shares: dict[float, float] = {}
        self._carry = 0.0
        sequence = [self._plan.requests.next().endpoint for _ in range(MIX_SAMPLE)]
        self._undisturbed = undisturbed_share(sequence, LIST_USERS, _WRITES)

    def options_at(self, t: float) -> PipelineOptions:
        options = self._plan.options
        return options(t) if callable(options) else options

    def attempt_failure(self, route: str, options: PipelineOptions, cond: Conditions) -> float:
        config = self._config
        extra = options.db_latency_ms + cond.spike_ms.get(route, 0.0)
        timed_out = predict.timeout_probability(
            config.db_latency_min_ms, config.db_latency_max_ms, extra, config.db_timeout_seconds
        )
        injected = config.failure_rate if config.failure_injection_enabled else 0.0
        return predict.attempt_failure(cond.outage.get(route, 0.0), timed_out, injected)

    def run(self) -> Tally:
        dt = self._phase.seconds / STEPS
        for step in range(STEPS):
            self.step((step + 0.5) * dt, dt)
        self._cache.advance(self._phase.seconds)
        return self._tally

    def step(self, t: float, dt: float) -> None:
        rate = self._plan.rate_at(t)
        if rate <= 0:
            return
        options = self.options_at(t)
        cond = conditions_at(self._phase.disruptions, t, self._server)
        refused = refused_share(options, rate, cond.squeeze)
        retries = self._config.max_retries if options.retries_enabled else 0
        tally = self._tally
        attempts = failing = first = 0.0
        for key, share in self._mix.items():
            n = rate * share * dt
            route = _ROUTE[key]
            burst = cond.burst.get(route, 0.0)
            admitted = (1.0 - burst) * (1.0 - refused)
            tally.requests += n
            tally.refused += n * (1.0 - burst) * refused
            if key == ERROR:
                tally.errors += n * (burst + (1.0 - burst) * (refused + admitted * ERROR_RATE))
                continue
            p = self.attempt_failure(route, options, cond)
            lost = predict.failure_after_retries(p, retries)
            hit = self._reads(key, rate * admitted, options, cond, lost, t - dt / 2, dt)
            tally.reads += n * admitted if options.cache_enabled and key in _READS else 0.0
            tally.hits += n * admitted * hit
            reach = admitted * (1.0 - hit)
            mean = predict.expected_attempts(p, retries) - 1.0
            second = predict.retries_variance(p, retries) + mean * mean
            tally.retries += n * reach * mean
            tally.retries_variance += n * (reach * second - (reach * mean) ** 2)
            lost = (1.0 - hit) * predict.failure_after_retries(p, retries)
            tally.errors += n * (burst + (1.0 - burst) * (refused + (1.0 - refused) * lost))
            first += rate * share * reach
            attempts += rate * share * reach * (1.0 + mean)
            failing += rate * share * reach * (1.0 + mean) * p
        p_mean = failing / attempts if attempts else 0.0
        per_request = attempts / first if first else 0.0
        tally.query_ms_sum += (
            1000.0 * self._attempt_seconds(options, cond) * per_request * rate * dt
        )
        p_key = round(p_mean, 2)
        self._p_shares[p_key] = self._p_shares.get(p_key, 0.0) + dt
        if self._breaker.enabled:
            seconds = self._attempt_seconds(options, cond)
            self._breaker_step(p_mean, attempts, first, seconds, dt)

    def _reads(
        self,
        key: str,
        admitted_rate: float,
        options: PipelineOptions,
        cond: Conditions,
        lost: float,
        t: float,
        dt: float,
    ) -> float:
        """Hit probability of a read of ``key``'s kind over this step (``cache_model.py``)."""
        if key not in _READS or not options.cache_enabled:
            return 0.0
        error = cond.cache_outage.get(_ROUTE[key], 0.0)
        fill = (1.0 - error) * (1.0 - lost)
        now, ttl, mix = self._cache.clock + t, options.cache_ttl, self._mix
        if key == GET_USER:
            users = self._server.users
            reads = admitted_rate * mix[key] / users
            invalidation = admitted_rate * mix.get(UPDATE_USER, 0.0) / users
            fresh = self._cache.user.step(now, dt, reads * (1.0 - error) * fill, invalidation, ttl)
            return (1.0 - error) * fresh
        reads = admitted_rate * mix[key]
        fresh = self._cache.listing.step(now, dt, reads * (1.0 - error) * fill, 0.0, ttl)
        return (1.0 - error) * fresh * self._undisturbed

    def _attempt_seconds(self, options: PipelineOptions, cond: Conditions) -> float:
        config = self._config
        extra = options.db_latency_ms + max(cond.spike_ms.values(), default=0.0)
        mean_ms = (config.db_latency_min_ms + config.db_latency_max_ms) / 2 + extra
        return min(config.db_timeout_seconds, mean_ms / 1000.0)

    def _breaker_step(
        self, p: float, attempt_rate: float, request_rate: float, attempt_seconds: float, dt: float
    ) -> None:
        config, tally = self._breaker, self._tally
        if p >= 0.999:
            tally.failing_stretch += dt
            trip = predict.breaker_trip_seconds(
                config.failure_threshold, request_rate, attempt_seconds
            )
            opened = min(dt, max(0.0, tally.failing_stretch - trip))
            tally.open_seconds += opened
            if opened > 0:
                self._carry = config.open_seconds / 2
            return
        tally.failing_stretch = 0.0
        share = predict.breaker_open_fraction(
            p, attempt_rate, config.failure_threshold, config.open_seconds, attempt_seconds
        )
        carry = min(dt, self._carry)
        self._carry -= carry
        tally.open_seconds += max(share * dt, carry)

    def expected(self) -> list[Expected]:
        """The phase's predictions, once ``run`` has summed it."""
        tally, config = self.run(), self._config
        if tally.requests <= 0:
            return []
        found: list[Expected] = []
        options = self.options_at(0.0)
        retries = config.max_retries if options.retries_enabled else 0
        p_text = _shares(self._p_shares)
        opens = self._breaker.enabled and tally.open_seconds > 0.5
        if not opens:
            amplification = 1.0 + tally.retries / tally.requests
            found.append(
                Expected(
                    "retry_amplification",
                    amplification,
                    tally.retries_variance / tally.requests,
                    f"1 + h x (p + ... + p^{retries}) per request reaching the database, "
                    f"with {p_text}, r = {retries}",
                    f"{INDEPENDENT}; {OFFERED}",
                )
            )
            error = (tally.errors - self._allowance(tally, options)) / tally.requests
            found.append(
                Expected(
                    "error_rate",
                    error,
                    error * (1.0 - error),
                    f"h x p^{retries + 1} of the requests reaching the database"
                    + (", plus 429s and 500s refused before it" if tally.refused else "")
                    + f", with {p_text}",
                    f"{INDEPENDENT}; {OFFERED}",
                )
            )
        found += self._limits_and_cache(tally, options)
        if self._breaker.enabled:
            found.append(
                Expected(
                    "breaker_open_seconds",
                    tally.open_seconds,
                    0.0,
                    f"open after {self._breaker.failure_threshold} consecutive failures, "
                    f"{self._breaker.open_seconds:g}s per failed probe, with {p_text}",
                    f"{INDEPENDENT}; probes go out as soon as open_seconds end",
                )
            )
        return found

    @staticmethod
    def _allowance(tally: Tally, options: PipelineOptions) -> float:
        """Requests the steady-state sum counted as refused that a fresh limiter admits."""
        if options.rate_limit <= 0:
            return 0.0
        return min(tally.refused, predict.burst_allowance(options.algorithm, options.rate_limit))

    def _limits_and_cache(self, tally: Tally, options: PipelineOptions) -> list[Expected]:
        found: list[Expected] = []
        squeezed = any(d.type == "rate_limit_squeeze" for d in self._phase.disruptions)
        if options.rate_limit > 0 or squeezed:
            refused = tally.refused - self._allowance(tally, options)
            share = refused / tally.requests
            limit = (
                f"{options.algorithm} at {options.rate_limit:g} req/s" if options.rate_limit else ""
            )
            found.append(
                Expected(
                    "rate_limited_fraction",
                    share,
                    share * (1.0 - share),
                    "1 - limit / offered rate" + (f" ({limit})" if limit else " (the squeeze)"),
                    f"{OFFERED}; the limiter starts the phase fresh",
                )
            )
        if tally.reads > 0:
            ratio = tally.hits / tally.reads
            found.append(
                Expected(
                    "cache_hit_ratio",
                    ratio,
                    ratio * (1.0 - ratio),
                    f"F(t) = integral over the last ttl ({options.cache_ttl:g}s) of lambda x "
                    f"fill x (1 - F) x e^(-w (t - s)) ds, over {self._server.users} user ids; "
                    f"list reads that follow no write: {self._undisturbed:.0%} "
                    "(steady state: lambda m / (1 + lambda m), m = min(ttl, next write))",
                    "user ids uniform, so reads and writes of a key are Poisson; requests do "
                    "not overlap (a query slower than the gap between requests can reorder a "
                    "write and a read); "
                    + ("the cache starts empty" if self._cold else "carried over from before"),
                    self._overlap_caveat(tally),
                )
            )
        return found

    def _overlap_caveat(self, tally: Tally) -> str | None:
        """Said when requests overlap enough to reorder a read's cache write and a write's
        invalidation, which the model leaves out."""
        writes = any(key in self._mix for key in _WRITES)
        query_ms = tally.query_ms_sum / tally.requests
        gap_ms = 1000.0 * self._phase.seconds / tally.requests
        if not writes or query_ms <= gap_ms:
            return None
        return (
            f"the model assumes requests do not overlap, and here a request spends about "
            f"{query_ms:.0f} ms on the database while one comes every {gap_ms:.0f} ms: a slow "
            "read's cache write can land after a later write's invalidation"
        )


def _shares(shares: dict[float, float]) -> str:
    """``p = 0.53`` or ``p = 0.35 for 75 % of the phase, 0.98 for 25 %``."""
    total = sum(shares.values())
    if not total:
        return "p = 0"
    ranked = sorted(shares.items(), key=lambda item: -item[1])[:3]
    if len(ranked) == 1:
        return f"p = {ranked[0][0]:.2g}"
    parts = [f"{p:.2g} for {seconds / total:.0%}" for p, seconds in ranked]
    return "p = " + ", ".join(parts) + " of the phase"


def expectations_for(scenario: Scenario, server: ServerConstants) -> list[list[Expected]]:
    """Per phase, in order: what the model predicts. The cache is empty when the run starts."""
    cache = CacheModel()
    return [PhaseModel(scenario, phase, server, cache).expected() for phase in scenario.phases]
