"""Each phase in plain words, before it runs: the load, the database's faults, the breaker,
the pipeline options and each disruption translated into what it does to a request.

A newcomer reading ``db_latency_spike (severity 0.1)`` cannot know it adds 100 ms to every
query, nor that the phase's own failure config (30 % of queries failing, a 250 ms timeout)
is the bigger fault; these sentences say both, with the numbers the service will apply
(``Scenario.failure_config_for``, ``circuit_breaker_for``, ``pipeline_for``) and the
disruption constants of the target (a fresh server's unless told otherwise).
"""

from __future__ import annotations

from failure_lab.control import CircuitBreakerConfig, FailureConfig
from simulator.options import PipelineOptions
from simulator.scenario import predict
from simulator.scenario.conditions import ServerConstants
from simulator.scenario.spec import Phase, Scenario, ScheduledDisruption


def _rate(value: float) -> str:
    return f"{value:g} req/s"


def load_words(phase: Phase, server: ServerConstants) -> str:
    rate = phase.max_rps if phase.max_rps is not None else server.max_rps
    where = "the default mix" if phase.endpoints is None else ", ".join(phase.endpoints)
    shape = {
        "normal": f"{_rate(rate)} throughout",
        "peak": f"0 to {_rate(rate)} over the first quarter, held, back to 0 over the last",
        "error_injection": f"{_rate(rate)}, 3 requests in 10 to the error endpoint (50 % fail)",
        "latency_degradation": f"{_rate(rate)}, every query {server.latency_growth_ms:g} ms "
        "slower by the end",
        "stress": f"{_rate(rate)} from the first instant",
    }[phase.scenario]
    return f"load: {phase.seconds:g} s, {shape}, over {where}"


def database_words(config: FailureConfig, options: PipelineOptions) -> str:
    extra = options.db_latency_ms
    low, high = config.db_latency_min_ms + extra, config.db_latency_max_ms + extra
    timeout_ms = config.db_timeout_seconds * 1000.0
    latency = f"{low:g} ms" if high <= low else f"{low:g}-{high:g} ms"
    parts = [f"database: queries take {latency} against a {timeout_ms:g} ms timeout"]
    share = predict.timeout_probability(
        config.db_latency_min_ms, config.db_latency_max_ms, extra, config.db_timeout_seconds
    )
    if share > 0:
        parts.append(f"{share:.0%} time out")
    if config.failure_injection_enabled and config.failure_rate > 0:
        parts.append(f"{config.failure_rate:.0%} fail (injected)")
    if options.retries_enabled and config.max_retries > 0:
        parts.append(f"up to {config.max_retries} retries with backoff")
    else:
        parts.append("no retries")
    return ", ".join(parts)


def breaker_words(breaker: CircuitBreakerConfig) -> str:
    if not breaker.enabled:
        return "breaker: off"
    return (
        f"breaker: on, opens after {breaker.failure_threshold} consecutive failed attempts "
        f"and fails requests fast for {breaker.open_seconds:g} s before one probe"
    )


def pipeline_words(options: PipelineOptions) -> str:
    cache = (
        f"cache: on, entries fresh {options.cache_ttl:g} s"
        if options.cache_enabled
        else ("cache: off, every request reaches the database")
    )
    if options.rate_limit > 0:
        return f"{cache}; rate limit: {options.algorithm} at {_rate(options.rate_limit)}"
    return cache


def disruption_effect(planned: ScheduledDisruption, server: ServerConstants) -> str:
    """What one disruption does to a request, in words and numbers."""
    s = planned.severity
    effect = {
        "db_outage": f"{s:.0%} of database attempts fail",
        "db_latency_spike": f"+{s * server.latency_spike_ms:g} ms on every query",
        "cache_outage": f"{s:.0%} of cache operations fail (reads fall back to the database)",
        "error_burst": f"{s:.0%} of requests answered 500 before the pipeline",
        "rate_limit_squeeze": f"a {(1 - s) * server.squeeze_rps:g} req/s limit on top (429s)",
    }[planned.type]
    if planned.endpoints:
        effect += f" on {', '.join(planned.endpoints)} only"
    return effect


def disruption_words(
    planned: ScheduledDisruption,
    server: ServerConstants,
    config: FailureConfig,
    options: PipelineOptions,
) -> str:
    effect = disruption_effect(planned, server)
    if planned.type == "db_latency_spike":
        extra = options.db_latency_ms + planned.severity * server.latency_spike_ms
        share = predict.timeout_probability(
            config.db_latency_min_ms, config.db_latency_max_ms, extra, config.db_timeout_seconds
        )
        if share > 0:
            effect += f", {share:.0%} time out then"
    return (
        f"at {planned.at:g} s for {planned.duration:g} s: {effect} "
        f"({planned.type}, severity {planned.severity:g})"
    )


def phase_plan(scenario: Scenario, phase: Phase, server: ServerConstants) -> list[str]:
    """The phase in sentences, in the order a reader needs them."""
    options = scenario.pipeline_for(phase)
    config = scenario.failure_config_for(phase)
    lines = [
        load_words(phase, server),
        database_words(config, options),
        breaker_words(scenario.circuit_breaker_for(phase)),
        pipeline_words(options),
    ]
    lines += [disruption_words(p, server, config, options) for p in phase.disruptions]
    return lines
