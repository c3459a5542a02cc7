"""The admission stage against a scripted rate limiter: waits it asks for, refusals it makes."""

from __future__ import annotations

import random

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import CollectorRegistry

from failure_lab.control import DisruptionRequest, RateLimitAlgorithm
from failure_lab.settings import Settings
from simulator.admission_stage import AdmissionStage
from simulator.disruptions import DisruptionRegistry
from simulator.options import PipelineOptions
from simulator.ratelimit import Decision
from simulator.request_scope import RequestScope
from simulator.routes import LIST
from simulator.telemetry.metrics import ServiceMetrics


class Scripted:
    """A rate limiter that answers with ``decision`` and remembers what it was asked."""

    def __init__(self, decision: Decision) -> None:
        self.decision = decision
        self.asked: list[tuple[str, float]] = []

    async def acquire(self, algorithm: RateLimitAlgorithm, rate: float) -> Decision:
        self.asked.append((algorithm, rate))
        return self.decision

    async def aclose(self) -> None:
        return None


class Lab:
    def __init__(self, decision: Decision) -> None:
        self.limiter = Scripted(decision)
        self.slept: list[float] = []
        self.spans = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(self.spans))
        self.tracer = provider.get_tracer("test")
        self.metrics = ServiceMetrics(CollectorRegistry())
        self.stage = AdmissionStage(self.limiter, self.tracer, self.metrics, self.sleep)

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)

    def sample(self, name: str, **labels: str) -> float | None:
        return self.metrics.registry.get_sample_value(name, labels)


async def test_a_shaped_request_waits_its_delay_and_is_admitted() -> None:
    lab = Lab(Decision(allowed=True, delay=0.25))
    options = PipelineOptions(rate_limit=4, algorithm="leaky_bucket")
    with lab.tracer.start_as_current_span("request") as span:
        assert await lab.stage.admit(RequestScope(span, LIST, options, None)) is None
    assert lab.limiter.asked == [("leaky_bucket", 4.0)]
    assert lab.slept == [0.25]
    name = "failure_lab_ratelimit_delay_seconds_total"
    assert lab.sample(name, algorithm="leaky_bucket") == 0.25
    (limit,) = [s for s in lab.spans.get_finished_spans() if s.name == "rate_limit"]
    assert limit.attributes is not None
    assert limit.attributes["failure_lab.ratelimit.delay_ms"] == 250.0


async def test_a_full_squeeze_refuses_without_asking_the_limiter_or_the_request_limit() -> None:
    lab = Lab(Decision(allowed=True))
    settings = Settings.model_validate({"disruption_squeeze_rps": 50})
    disruptions = DisruptionRegistry(settings, lab.metrics, random.Random(0))
    squeeze = {"type": "rate_limit_squeeze", "severity": 1.0, "duration_seconds": 30}
    created = disruptions.create(DisruptionRequest.model_validate(squeeze))
    try:
        with lab.tracer.start_as_current_span("request") as span:
            disrupted = disruptions.scope(LIST, span)
            scope = RequestScope(span, LIST, PipelineOptions(rate_limit=1000), disrupted)
            refused = await lab.stage.admit(scope)
    finally:
        disruptions.close()
    assert refused is not None
    assert (refused.status, refused.outcome) == (429, "rate_limited")
    assert refused.extra_headers == {"retry-after": "1"}
    detail = f"rate limited: token_bucket at 0 req/s (disruption {created.disruption_id})"
    assert refused.body == b'{"detail":"' + detail.encode() + b'"}'
    assert lab.limiter.asked == []
    decisions = "failure_lab_ratelimit_decisions_total"
    assert lab.sample(decisions, algorithm="token_bucket", decision="limited") == 1
