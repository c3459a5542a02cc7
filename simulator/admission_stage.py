"""The admission stage of the request path: whether a request is let in at all.

Two things can refuse a request before it costs the service anything: an active disruption
(an ``error_burst`` fails it outright; a ``rate_limit_squeeze`` adds a tight limit) and the
request's own rate limit. Both go through the one rate limiter, in a ``rate_limit`` span
each, with the same metrics and events. A limiter whose backend does not answer admits the
request (fail open): losing the limit for a while is better than refusing all traffic.

Kept apart from the pipeline because the /error endpoint admits its requests the same way
without going further. With no disruption active and no rate limit asked for, admission
costs a request two attribute checks.
"""

from __future__ import annotations

from opentelemetry.trace import Span, Tracer

from failure_lab.control import RateLimitAlgorithm
from simulator.disruption_scope import DisruptionScope
from simulator.ratelimit import Decision, RateLimiter, RateLimiterUnavailable
from simulator.request_scope import Outcome, RequestScope, Sleep, detail_json
from simulator.telemetry.metrics import ServiceMetrics


class AdmissionStage:
    def __init__(
        self, limiter: RateLimiter, tracer: Tracer, metrics: ServiceMetrics, sleep: Sleep
    ) -> None:
        self._limiter = limiter
        self._tracer = tracer
        self._metrics = metrics
        self._sleep = sleep

    async def admit(self, scope: RequestScope) -> Outcome | None:
        """Apply disruptions and the rate limit; an ``Outcome`` means the request was refused."""
        disruption = scope.disruption
        if disruption is not None:
            refused = await self._disrupted(disruption, scope.server_span)
            if refused is not None:
                return refused
        options = scope.options
        if options.rate_limit <= 0:
            return None
        return await self._limit(options.algorithm, options.rate_limit, scope.server_span)

    async def _disrupted(self, disruption: DisruptionScope, server_span: Span) -> Outcome | None:
        burst = disruption.error_burst()
        if burst is not None:
            return Outcome(
                500,
                detail_json(
                    f"disruption error_burst {burst.disruption_id} "
                    f"(severity {burst.severity:g}) failed this request"
                ),
                "error_burst",
            )
        for entry in disruption.live("rate_limit_squeeze"):
            refused = await self._limit(
                "token_bucket", disruption.squeeze_rate(entry), server_span, entry.disruption_id
            )
            if refused is not None:
                disruption.touch(entry, "refused")
                return refused
        return None

    async def _limit(
        self,
        algorithm: RateLimitAlgorithm,
        rate: float,
        server_span: Span,
        disruption_id: str | None = None,
    ) -> Outcome | None:
        attributes: dict[str, str | float] = {
            "failure_lab.ratelimit.algorithm": algorithm,
            "failure_lab.ratelimit.rate": rate,
        }
        if disruption_id is not None:
            attributes["failure_lab.disruption_id"] = disruption_id
        with self._tracer.start_as_current_span("rate_limit", attributes=attributes) as span:
            try:
                # A squeeze down to 0 req/s admits nothing: a bucket that never refills.
                decision = (
                    await self._limiter.acquire(algorithm, rate)
                    if rate > 0
                    else Decision(allowed=False)
                )
            except RateLimiterUnavailable as exc:
                self._metrics.ratelimit_errors.inc()
                self._metrics.ratelimit_fail_open.labels(algorithm, exc.reason).inc()
                span.set_attribute("failure_lab.ratelimit.decision", "error")
                server_span.add_event(
                    "rate_limit.error",
                    {"error": str(exc), "reason": exc.reason, "fail_open": True},
                )
                decision = Decision(allowed=True)
            else:
                span.set_attribute(
                    "failure_lab.ratelimit.decision", "allowed" if decision.allowed else "limited"
                )
                self._metrics.ratelimit_decisions.labels(
                    algorithm, "allowed" if decision.allowed else "limited"
                ).inc()
            if not decision.allowed:
                server_span.add_event("rate_limited", {"algorithm": algorithm, "rate": rate})
                cause = "" if disruption_id is None else f" (disruption {disruption_id})"
                return Outcome(
                    429,
                    detail_json(f"rate limited: {algorithm} at {rate:g} req/s{cause}"),
                    "rate_limited",
                    extra_headers={"retry-after": "1"},
                )
            if decision.delay > 0:
                span.set_attribute("failure_lab.ratelimit.delay_ms", decision.delay * 1000)
                self._metrics.ratelimit_delay.labels(algorithm).inc(decision.delay)
                await self._sleep(decision.delay)
        return None
