"""The topology's figures as PromQL, their values on a scripted ring, and the status rules.

The ring is fed by the simulator's own metrics (``ServiceMetrics``, ``GeneratorMetrics``)
under a scripted clock, one snapshot a second after the same second of traffic, so every
figure of the graph follows from the script by hand; the status rules are checked on answers
written for each threshold.
"""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry

from exporter.figures import grouping, render
from exporter.sampling import SampleRing
from exporter.sources.base import FigureGroups
from exporter.sources.embedded_metrics import EmbeddedMetricsSource
from exporter.topology import build_topology
from exporter.topology_figures import TOPOLOGY
from exporter.translate import metrics_data
from failure_lab.topology import Topology, TopologyNode
from simulator.generator.metrics import GeneratorMetrics
from simulator.telemetry.metrics import ServiceMetrics
from tests.unit.test_figures import GET, POST, FakeClock

FIGURES = {figure.key: figure for figure in TOPOLOGY}


def test_figures_keep_their_labels_in_promql() -> None:
    texts = {key: render(figure.expr, 30) for key, figure in FIGURES.items()}
    assert texts["service.requests"] == (
        "sum by (instance) (rate(failure_lab_http_requests_total[30s]))"
    )
    assert texts["service.p99_ms"] == (
        "1000 * histogram_quantile(0.99, sum by (le, instance) "
        "(rate(failure_lab_http_request_duration_seconds_bucket[30s])))"
    )
    assert texts["cache.p99_ms"] == (
        "1000 * histogram_quantile(0.99, sum by (le) "
        '(rate(failure_lab_cache_operation_duration_seconds_bucket{operation="get"}[30s])))'
    )
    assert texts["disruptions"] == "sum by (instance, type) (failure_lab_disruptions_active)"
    assert texts["database.attempts"] == (
        "sum(rate(failure_lab_db_query_duration_seconds_count[30s]))"
    )
    assert grouping(FIGURES["ratelimit.decisions"].expr) == ("instance", "decision")
    assert grouping(FIGURES["database.p99_ms"].expr) == ()


def second_of_traffic(service: ServiceMetrics, generator: GeneratorMetrics) -> None:
    """20 requests (14 x 200, 2 x 503, 2 x 429, 2 x 404), all 20 ms; the limiter allows 18
    and limits 2; 16 cache gets (10 hits, 5 misses, 1 error) and 4 sets; 5 database attempts
    of 5 ms, 1 failed, and 1 retry; the generator sent 20 and dropped none."""
    service.requests.labels(*GET, "200", "success").inc(14)
    service.requests.labels(*GET, "503", "db_error").inc(2)
    service.requests.labels(*POST, "429", "rate_limited").inc(2)
    service.requests.labels(*GET, "404", "not_found").inc(2)
    for _ in range(20):
        service.request_duration.labels(*GET).observe(0.02)
    service.ratelimit_decisions.labels("token_bucket", "allowed").inc(18)
    service.ratelimit_decisions.labels("token_bucket", "limited").inc(2)
    for result, count in (("hit", 10), ("miss", 5), ("error", 1)):
        service.cache_requests.labels("get", result).inc(count)
        for _ in range(count):
            service.cache_duration.labels("get").observe(0.0005)
    service.cache_requests.labels("set", "ok").inc(4)
    for outcome in ("ok", "ok", "ok", "ok", "error"):
        service.db_duration.labels(outcome).observe(0.005)
    service.db_errors.labels("error").inc()
    service.retries.labels(GET[0], "error").inc()
    generator.sent.inc(20)
    for _ in range(20):
        generator.observe_latency(0.02, 0.02, 0, 0.0)


async def scripted_topology(seconds: int = 5) -> tuple[Topology, EmbeddedMetricsSource]:
    registry = CollectorRegistry()
    service, generator = ServiceMetrics(registry), GeneratorMetrics(registry)
    service.show_backends("memory")
    clock = FakeClock(1000.0)
    ring = SampleRing(registry, 60, clock)
    for second in range(seconds):
        clock.now = 1000.0 + second
        second_of_traffic(service, generator)
        assert ring.sample()
    source = EmbeddedMetricsSource(ring, clock=clock)
    answers = await source.topology(seconds - 1)
    return build_topology(answers, window_seconds=4, timestamp="t", source="embedded"), source


def nodes_of(topology: Topology) -> dict[str, TopologyNode]:
    return {node.id: node for node in topology.nodes}


async def test_the_graph_of_a_scripted_second() -> None:
    topology, source = await scripted_topology()
    nodes = nodes_of(topology)
    assert [node.id for node in topology.nodes] == [
        "generator",
        "simulator",
        "ratelimiter",
        "cache",
        "database",
    ]
    edges = {edge.id: edge for edge in topology.edges}
    assert list(edges) == [
        "generator->simulator",
        "simulator->ratelimiter",
        "ratelimiter->cache",
        "cache->database",
        "database->database",
    ]
    approx = pytest.approx
    assert nodes["generator"].request_rate == approx(20.0)
    assert nodes["generator"].error_rate == 0.0  # it dropped nothing
    service = nodes["simulator"]
    assert (service.request_rate, service.error_rate) == (approx(20.0), approx(0.2))
    assert service.instance is None
    assert nodes["ratelimiter"].error_rate == approx(0.1)
    assert nodes["ratelimiter"].backend == nodes["cache"].backend == "in-process"
    cache = nodes["cache"]
    assert (cache.request_rate, cache.error_rate) == (approx(20.0), approx(1 / 20, abs=1e-6))
    assert cache.hit_ratio == approx(10 / 16, abs=1e-6)
    database = nodes["database"]
    assert (database.request_rate, database.error_rate) == (approx(5.0), approx(0.2))
    assert database.breaker == "off"  # the breaker is off until switched on
    assert edges["cache->database"].request_rate == approx(4.0)  # first attempts
    assert edges["database->database"].request_rate == approx(1.0)  # retries
    assert edges["cache->database"].retries_per_request == approx(1 / 20)
    assert edges["generator->simulator"].error_rate == service.error_rate
    # Each replica says what /metrics/json says for the same window, to the digit.
    red = metrics_data(await source.red(4), 0)
    assert (service.request_rate, service.error_rate) == (red.request_rate, red.error_rate)
    assert service.p99_latency_ms == red.p99_latency


def answers(**overrides: dict[tuple[str, ...], float]) -> FigureGroups:
    """A window of 100 requests a second to one replica, none failing, plus ``overrides``."""
    base: FigureGroups = {
        "service.requests": {("a",): 100.0},
        "service.errors": {("a",): 0.0},
        "database.attempts": {(): 100.0},
        "database.errors": {(): 0.0},
        "breaker.enabled": {("a",): 0.0},
        "breaker.state": {("a", "closed"): 1.0},
    }
    return base | overrides


def status_of(node_id: str, **overrides: dict[tuple[str, ...], float]) -> tuple[str, list[str]]:
    graph = build_topology(answers(**overrides), window_seconds=60, timestamp="t", source="x")
    node = nodes_of(graph)[node_id]
    return node.status, node.reasons


@pytest.mark.parametrize(
    ("errors", "status"),
    [(0.0, "healthy"), (1.0, "healthy"), (1.5, "degraded"), (50.0, "degraded"), (51, "down")],
)
def test_error_rate_thresholds(errors: float, status: str) -> None:
    """Degraded above 1%, down above 50%: the thresholds themselves are not past them."""
    assert status_of("simulator@a", **{"service.errors": {("a",): errors}})[0] == status


def test_the_breaker_decides_the_database_with_the_worst_replica() -> None:
    two = {("a",): 1.0, ("b",): 1.0}
    half = {("a", "closed"): 1.0, ("b", "half_open"): 1.0}
    kwargs = {"breaker.enabled": two, "breaker.state": half}
    assert status_of("database", **kwargs) == ("degraded", ["circuit breaker half-open"])
    kwargs["breaker.state"] = {("a", "open"): 1.0, ("b", "half_open"): 1.0}
    assert status_of("database", **kwargs) == ("down", ["circuit breaker open"])
    off = {"breaker.enabled": {("a",): 0.0}, "breaker.state": {("a", "open"): 1.0}}
    assert status_of("database", **off) == ("healthy", [])


def test_faults_act_on_their_own_node() -> None:
    def with_fault(kind: str) -> FigureGroups:
        """``kind`` active on replica a; the other types' series are there, at 0."""
        return {
            "disruptions": {("a", "cache_outage"): 0.0, ("b", "db_outage"): 0.0}
            | {("a", kind): 1.0}
        }

    assert status_of("database", **with_fault("db_outage")) == ("down", ["fault: db_outage"])
    assert status_of("database", **with_fault("db_latency_spike"))[0] == "degraded"
    assert status_of("cache", **with_fault("cache_outage"))[0] == "down"
    assert status_of("ratelimiter", **with_fault("rate_limit_squeeze"))[0] == "degraded"
    assert status_of("simulator@a", **with_fault("error_burst"))[0] == "degraded"
    assert status_of("database", **with_fault("error_burst"))[0] == "healthy"
    injected = {("a", "failure_injection_enabled"): 1.0, ("a", "failure_rate"): 0.3}
    assert status_of("database", failure_config=injected) == (
        "degraded",
        ["fault: failure_injection"],
    )
    never = {("a", "failure_injection_enabled"): 1.0, ("a", "failure_rate"): 0.0}
    assert status_of("database", failure_config=never) == ("healthy", [])


def test_an_error_burst_on_one_replica_leaves_the_other_healthy() -> None:
    graph = build_topology(
        answers(
            **{
                "service.requests": {("a",): 10.0, ("b",): 10.0},
                "disruptions": {("b", "error_burst"): 1.0},
            }
        ),
        window_seconds=60,
        timestamp="t",
        source="x",
    )
    nodes = nodes_of(graph)
    assert nodes["simulator@a"].status == "healthy"
    assert nodes["simulator@b"].faults == ["error_burst"]
    assert nodes["simulator@b"].title == "simulator b"
    assert {e.id for e in graph.edges} >= {"generator->simulator@a", "simulator@b->ratelimiter"}


def test_no_traffic_is_zero_and_healthy() -> None:
    graph = build_topology({}, window_seconds=60, timestamp="t", source="x")
    assert [node.id for node in graph.nodes][1] == "simulator"
    for node in graph.nodes:
        assert (node.request_rate, node.error_rate, node.status) == (0.0, 0.0, "healthy")
        assert node.p99_latency_ms is None
    assert nodes_of(graph)["cache"].hit_ratio is None
    assert all(edge.request_rate == 0.0 for edge in graph.edges)
