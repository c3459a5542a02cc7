"""The stack scaled out, without Docker: three simulator replicas behind a real HAProxy.

What ``docker compose up --scale simulator=3`` builds, on loopback: three ``failure-lab
simulator`` processes (127.0.0.2-4, one port, like containers of one service) sharing one
real redis-server; dnsmasq answering ``simulator`` with their addresses, as Docker's DNS
does; HAProxy running ``haproxy/haproxy.cfg`` (what the test changes in it is listed in
``tests/support/haproxy.py``: the resolver's address and the three listen/lookup variables);
the shim (``failure-lab exporter``'s app) forwarding control calls to HAProxy; and Prometheus
with the committed ``prometheus/prometheus.yml``, static targets in place of its DNS lookup of
the replicas (``tests/stack/live.py``). The replicas' generator sends through HAProxy, as
``FAILURE_LAB_TARGET_URL=http://lb:8080`` makes it in the stack.

A background job (30 req/s, a token bucket of 20 req/s) runs through the whole module, started
through the shim. The tests then hold the stack to what docs/api.md says of replicas: user
requests reach every replica, control calls reach one, the failure config, the rate limit,
disruptions and the breaker's settings are shared through Redis, Prometheus scrapes every
replica and HAProxy, and every query of the per-replica dashboard answers. Last, a replica
is stopped and started again, and a fourth is added to DNS, as ``--scale`` does.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import re
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from prometheus_client.parser import text_string_to_metric_families

from exporter.app import create_exporter_app
from failure_lab.settings import Settings
from tests.stack.live import ProjectPrometheus, eventually
from tests.stack.stackfiles import REPLICAS_DASHBOARD, PromQuery, prometheus_queries
from tests.stack.test_compose import ENV_FILE, read_env_file
from tests.support.configs import config_with
from tests.support.haproxy import DnsServer, HAProxyProcess, haproxy_binary, haproxy_branch
from tests.support.replicas import SimulatorProcess, port_free_on, replica_address
from tests.support.servers import RedisProcess, free_port, serve_app

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="module")]

REPLICAS = 3
SLOTS = 10
"""Server slots of each backend's server-template in haproxy.cfg."""
WAIT = 25.0
PAYLOAD: dict[str, Any] = {
    "rate_of_requests": 30,
    "number_of_requests": 1,
    "retries_enabled": True,
    "rate_limiting": 20,
    "rate_limiting_algo": "token_bucket",
    "cache_enabled": True,
    "cache_ttl": 2,
    "db_latency": 0,
}
FAULT = config_with(
    failure_injection_enabled=True,
    failure_rate=0.2,
    max_retries=1,
    db_latency_min_ms=1,
    db_latency_max_ms=3,
)
# The shared limit under test: 60 req/s offered for 4 s against fixed windows of 10 per second.
LIMIT, OFFERED, SECONDS = 10, 60, 4
MAY_BE_ZERO = (re.compile(r"'Health check failures and connection errors'"),)


@dataclass
class Cluster:
    replicas: list[SimulatorProcess]
    environment: dict[str, str]
    workdir: Path
    dns: DnsServer
    haproxy: HAProxyProcess
    prometheus: ProjectPrometheus
    proxy: httpx.AsyncClient
    shim: httpx.AsyncClient
    job_id: str


def samples(text: str, name: str, **labels: str) -> float:
    """The sum of the samples ``name`` with ``labels`` in a text exposition."""
    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and labels.items() <= sample.labels.items():
                total += sample.value
    return total


async def metrics_of(replica: SimulatorProcess) -> str:
    async with httpx.AsyncClient(timeout=5) as client:
        response = await client.get(f"{replica.url}/metrics")
    response.raise_for_status()
    return response.text


async def counts(cluster: Cluster, name: str, **labels: str) -> list[float]:
    """``name`` summed over ``labels`` on each replica, read from its own /metrics."""
    texts = await asyncio.gather(*(metrics_of(replica) for replica in cluster.replicas))
    return [samples(text, name, **labels) for text in texts]


def haproxy_servers(cluster: Cluster, proxy: str, state: str) -> int:
    return round(
        samples(cluster.haproxy.metrics(), "haproxy_server_status", proxy=proxy, state=state)
    )


def replica_environment(redis_url: str, proxy_url: str, addresses: list[str]) -> dict[str, str]:
    """The compose file's simulator environment, on loopback; nothing inherited that sets
    the project's or OpenTelemetry's variables."""
    inherited = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("FAILURE_LAB_", "OTEL_"))
    }
    return {
        **inherited,
        "FAILURE_LAB_REDIS_URL": redis_url,
        "FAILURE_LAB_TARGET_URL": proxy_url,
        "FAILURE_LAB_CONTROL_RATE_LIMIT": "0",
        "FAILURE_LAB_ALLOWED_HOSTS": ",".join(["localhost", "127.0.0.1", *addresses]),
    }


@contextlib.contextmanager
def stopped_at_exit(*stoppers: Any) -> Iterator[None]:
    try:
        yield
    finally:
        for stopper in reversed(stoppers):
            with contextlib.suppress(Exception):
                stopper()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def cluster(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Cluster]:
    workdir = tmp_path_factory.mktemp("load-balancer")
    addresses = [replica_address(i) for i in range(REPLICAS + 1)]  # one more for the scale test
    port = port_free_on(addresses)
    redis = RedisProcess(workdir)
    dns = DnsServer(workdir, addresses[:REPLICAS])
    haproxy = HAProxyProcess(workdir, dns.address, port)
    environment = replica_environment(redis.url, haproxy.url, addresses)
    replicas = [
        SimulatorProcess(workdir, address, port, environment) for address in addresses[:REPLICAS]
    ]
    exporter_port = free_port()
    prometheus = ProjectPrometheus(
        workdir,
        {
            "simulator": [replica.instance for replica in replicas],
            "haproxy": haproxy.stats_address,
            "exporter": f"127.0.0.1:{exporter_port}",
        },
    )
    exporter_app = create_exporter_app(
        Settings(
            port=exporter_port,
            prometheus_url=prometheus.url,
            jaeger_url=f"http://127.0.0.1:{free_port()}",
            simulator_url=haproxy.url,
            backend_timeout_seconds=2.0,
        )
    )
    with stopped_at_exit(redis.kill, dns.stop, haproxy.stop, *(r.stop for r in replicas)):
        redis.start()
        dns.start()
        haproxy.check()
        for replica in replicas:
            replica.spawn()
        for replica in replicas:
            await asyncio.to_thread(replica.wait_ready)
        await asyncio.to_thread(haproxy.start)
        async with (
            serve_app(exporter_app, exporter_port) as shim_url,
            prometheus,
            httpx.AsyncClient(base_url=haproxy.url, timeout=15) as proxy,
            httpx.AsyncClient(base_url=shim_url, timeout=15) as shim,
        ):
            cluster = Cluster(
                replicas, environment, workdir, dns, haproxy, prometheus, proxy, shim, ""
            )
            for backend in ("users", "control"):
                await eventually(
                    lambda backend=backend: asyncio.to_thread(
                        haproxy_servers, cluster, backend, "UP"
                    ),
                    lambda up: up == REPLICAS,
                    timeout=WAIT,
                    what=f"{REPLICAS} replicas UP in HAProxy backend {backend}",
                )
            response = await shim.post(
                "/v1/traffic/generate",
                json={"mode": "sustained", "duration": 200, "payload": PAYLOAD},
            )
            assert response.status_code == 202, response.text
            cluster.job_id = response.json()["job_id"]
            try:
                yield cluster
            finally:
                await shim.post(f"/v1/traffic/jobs/{cluster.job_id}/stop")


async def test_haproxy_is_the_branch_the_image_pins() -> None:
    """The tests run Debian's HAProxy; the stack runs the image of .env: one branch."""
    image = read_env_file(ENV_FILE)["HAPROXY_IMAGE"]
    match = re.fullmatch(r"haproxy:(\d+\.\d+)\.\d+-alpine", image)
    assert match, image
    assert haproxy_branch(haproxy_binary()) == match.group(1)


async def test_haproxy_finds_every_replica_by_dns(cluster: Cluster) -> None:
    text = await asyncio.to_thread(cluster.haproxy.metrics)
    for backend in ("users", "control"):
        assert samples(text, "haproxy_backend_active_servers", proxy=backend) == REPLICAS
        assert samples(text, "haproxy_server_status", proxy=backend, state="UP") == REPLICAS
        # The other slots of the template wait, empty, for more replicas.
        assert samples(text, "haproxy_server_status", proxy=backend, state="MAINT") == (
            SLOTS - REPLICAS
        )


async def test_user_requests_reach_every_replica_evenly(cluster: Cluster) -> None:
    before = await counts(cluster, "failure_lab_http_requests_total")
    await eventually(
        lambda: counts(cluster, "failure_lab_http_requests_total"),
        lambda now: all(n - b >= 30 for n, b in zip(now, before, strict=True)),
        timeout=WAIT,
        what="30 more requests on every replica",
    )
    after = await counts(cluster, "failure_lab_http_requests_total")
    grown = [a - b for a, b in zip(after, before, strict=True)]
    # Round robin: each replica's share of the same stretch of traffic is a third, give or
    # take the requests in flight when the counters were read.
    for share in (g / sum(grown) for g in grown):
        assert 0.25 <= share <= 0.42, grown


async def test_control_calls_go_to_one_replica(cluster: Cluster) -> None:
    path = f"/v1/traffic/jobs/{cluster.job_id}"
    async with httpx.AsyncClient(timeout=5) as client:
        direct = [(await client.get(f"{r.url}{path}")).status_code for r in cluster.replicas]
    assert sorted(direct) == [200, *[404] * (REPLICAS - 1)], direct
    owner = direct.index(200)
    # Every call through HAProxy and through the shim finds the job: none lands elsewhere.
    for client in (cluster.proxy, cluster.shim):
        statuses = [(await client.get(path)).status_code for _ in range(12)]
        assert statuses == [200] * 12
    # Only the owner's generator sends, and only one slot of backend control answers.
    sent = await counts(cluster, "failure_lab_generator_requests_total", result="sent")
    assert [n > 0 for n in sent] == [i == owner for i in range(REPLICAS)], sent
    text = await asyncio.to_thread(cluster.haproxy.metrics)
    answered = {
        sample.labels["server"]
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "haproxy_server_http_responses_total"
        and sample.labels["proxy"] == "control"
        and sample.value > 0
    }
    assert len(answered) == 1, answered


async def test_a_failure_config_put_through_the_proxy_applies_to_every_replica(
    cluster: Cluster,
) -> None:
    response = await cluster.shim.put("/v1/config/failure", json=FAULT.model_dump())
    assert response.status_code == 200, response.text
    async with httpx.AsyncClient(timeout=5) as client:
        for replica in cluster.replicas:
            seen = (await client.get(f"{replica.url}/v1/config/failure")).json()
            assert seen == FAULT.model_dump(mode="json"), replica.instance
    # And each replica acts on it: injected database errors on all three.
    before = await counts(cluster, "failure_lab_db_errors_total")
    await eventually(
        lambda: counts(cluster, "failure_lab_db_errors_total"),
        lambda now: all(n > b for n, b in zip(now, before, strict=True)),
        timeout=WAIT,
        what="injected database errors on every replica",
    )
    rates = await counts(cluster, "failure_lab_failure_config", field="failure_rate")
    assert rates == [FAULT.failure_rate] * REPLICAS


async def test_a_disruption_started_through_the_shim_acts_on_every_replica(
    cluster: Cluster,
) -> None:
    outage = {"type": "db_outage", "severity": 1.0, "duration_seconds": 60}
    created = await cluster.shim.post("/v1/disruptions", json=outage)
    assert created.status_code == 201, created.text
    disruption_id = created.json()["disruption_id"]
    try:
        async with httpx.AsyncClient(timeout=5) as client:
            for replica in cluster.replicas:
                listed = (await client.get(f"{replica.url}/v1/disruptions")).json()
                assert [d["disruption_id"] for d in listed["disruptions"]] == [disruption_id]
        # The background job's requests reach every replica, and the outage fails them there.
        affected = "failure_lab_disruption_requests_affected_total"
        await eventually(
            lambda: counts(cluster, affected, type="db_outage"),
            lambda now: all(n > 0 for n in now),
            timeout=WAIT,
            what="requests affected by the outage on every replica",
        )
        await eventually(
            lambda: cluster.shim.get(f"/v1/disruptions/{disruption_id}"),
            lambda answer: answer.json()["requests_affected"] >= REPLICAS,
            timeout=WAIT,
            what="requests_affected summed over the replicas",
        )
    finally:
        cleared = await cluster.shim.post("/v1/disruptions/clear-all")
        assert cleared.status_code == 200, cleared.text
    assert cleared.json()["cleared"] == 1
    await eventually(
        lambda: counts(cluster, "failure_lab_disruptions_active", type="db_outage"),
        lambda now: now == [0.0] * REPLICAS,
        timeout=WAIT,
        what="the outage ended on every replica",
    )


async def test_breaker_settings_put_through_the_shim_apply_to_every_replica(
    cluster: Cluster,
) -> None:
    breaker = {"enabled": True, "failure_threshold": 1000, "open_seconds": 7}
    put = await cluster.shim.put("/v1/config/circuit-breaker", json=breaker)
    assert put.status_code == 200, put.text
    try:
        async with httpx.AsyncClient(timeout=5) as client:
            for replica in cluster.replicas:
                seen = (await client.get(f"{replica.url}/v1/config/circuit-breaker")).json()
                assert {k: seen[k] for k in breaker} == breaker, replica.instance
        await eventually(
            lambda: counts(cluster, "failure_lab_circuit_breaker_enabled"),
            lambda now: now == [1.0] * REPLICAS,
            timeout=WAIT,
            what="the breaker on in every replica",
        )
    finally:
        off = {**breaker, "enabled": False}
        assert (await cluster.shim.put("/v1/config/circuit-breaker", json=off)).is_success


async def test_one_rate_limit_holds_across_the_replicas(cluster: Cluster) -> None:
    """60 req/s for 4 s, spread over the replicas, against one fixed-window limit of 10 per
    second in Redis. The generator sends at exact offsets i/60 s (simulator/generator/
    arrivals.py), so the 4 s touch 4 or 5 one-second windows: 3 full ones, and two partial
    ones with at least 10 requests between them. The algorithm then admits exactly 10 in
    each full window and between 10 and 20 in the two partial ones: from 40 to 50 requests
    in all. Round robin gives these requests to at least two replicas (which ones depends on
    how they interleave with the background job's: at 60 and 30 req/s over three servers
    they may fall on two only), each of which gets more than 50: limits kept apart per
    replica would admit 40 to 50 on each, at least twice the shared limit."""
    algorithm = {"algorithm": "fixed_window"}
    name = "failure_lab_ratelimit_decisions_total"
    allowed_before = await counts(cluster, name, decision="allowed", **algorithm)
    limited_before = await counts(cluster, name, decision="limited", **algorithm)
    payload = {**PAYLOAD, "rate_limiting": LIMIT, "rate_limiting_algo": "fixed_window"}
    response = await cluster.proxy.post(
        "/v1/traffic/generate",
        json={"mode": "sustained", "rps": OFFERED, "duration": SECONDS, "payload": payload},
    )
    assert response.status_code == 202, response.text
    job = response.json()["job_id"]
    finished = await eventually(
        lambda: cluster.proxy.get(f"/v1/traffic/jobs/{job}"),
        lambda r: r.json()["status"] == "completed",
        timeout=WAIT,
        what="the rate-limited job to complete",
    )
    stats = finished.json()["stats"]
    assert stats["total"] == OFFERED * SECONDS, stats
    assert stats["dropped"] == 0, stats
    allowed_after = await counts(cluster, name, decision="allowed", **algorithm)
    limited_after = await counts(cluster, name, decision="limited", **algorithm)
    allowed = [a - b for a, b in zip(allowed_after, allowed_before, strict=True)]
    limited = [a - b for a, b in zip(limited_after, limited_before, strict=True)]
    assert sum(allowed) + sum(limited) == OFFERED * SECONDS, (allowed, limited)
    assert LIMIT * SECONDS <= sum(allowed) <= LIMIT * (SECONDS + 1), allowed
    # Spread: two replicas or more each decided more requests than the shared limit admits,
    # and each of those admitted some and refused some against the one limit.
    decided = [a + n for a, n in zip(allowed, limited, strict=True)]
    busy = [i for i, n in enumerate(decided) if n > LIMIT * (SECONDS + 1)]
    assert len(busy) >= 2, (allowed, limited)
    assert all(allowed[i] > 0 and limited[i] > 0 for i in busy), (allowed, limited)


async def test_prometheus_scrapes_every_replica_and_haproxy(cluster: Cluster) -> None:
    expected = {
        *(("simulator", replica.instance) for replica in cluster.replicas),
        ("haproxy", cluster.haproxy.stats_address),
        ("exporter", cluster.shim.base_url.netloc.decode()),
        ("prometheus", f"127.0.0.1:{cluster.prometheus.port}"),
    }
    up = await cluster.prometheus.query("up")
    assert {(s["metric"]["job"], s["metric"]["instance"]): s["value"][1] for s in up} == {
        key: "1" for key in expected
    }
    # Each replica's own series, and HAProxy's per server slot of backend users.
    per_replica = await eventually(
        lambda: cluster.prometheus.query(
            'sum by (instance) (failure_lab_http_requests_total{job="simulator"}) > 0'
        ),
        lambda result: len(result) == REPLICAS,
        timeout=WAIT,
        what="requests of every replica in Prometheus",
    )
    assert {s["metric"]["instance"] for s in per_replica} == {r.instance for r in cluster.replicas}
    servers = await eventually(
        lambda: cluster.prometheus.query(
            'sum by (server) (haproxy_server_http_responses_total{proxy="users"}) > 0'
        ),
        lambda result: len(result) == REPLICAS,
        timeout=WAIT,
        what="HAProxy's responses per server in Prometheus",
    )
    assert len(servers) == REPLICAS


REPLICA_QUERIES = prometheus_queries(REPLICAS_DASHBOARD)


@pytest.mark.parametrize("query", REPLICA_QUERIES, ids=lambda q: f"{q.dashboard} {q.where}")
async def test_replicas_dashboard_query_returns_data(cluster: Cluster, query: PromQuery) -> None:
    may_be_zero = any(pattern.search(query.where) for pattern in MAY_BE_ZERO)

    async def shown() -> list[float]:
        result = await cluster.prometheus.query(query.promql)
        return [float(series["value"][1]) for series in result]

    await eventually(
        shown,
        lambda found: any(math.isfinite(v) and (may_be_zero or v > 0) for v in found),
        timeout=WAIT,
        what=f"{query.dashboard} {query.where}: {query.promql}",
    )


async def test_the_by_instance_panels_show_every_replica(cluster: Cluster) -> None:
    for query in REPLICA_QUERIES:
        if "by (instance)" in query.expr or "by (instance, le)" in query.expr:
            if "generator" in query.expr:
                continue  # only the replica that runs the job sends
            result = await eventually(
                lambda query=query: cluster.prometheus.query(query.promql),
                lambda result: len(result) == REPLICAS,
                timeout=WAIT,
                what=f"a series per replica: {query.promql}",
            )
            assert {s["metric"]["instance"] for s in result} == {
                r.instance for r in cluster.replicas
            }


async def test_a_replica_that_stops_is_taken_out_and_comes_back(cluster: Cluster) -> None:
    gone = cluster.replicas[-1]
    await asyncio.to_thread(gone.stop)
    await eventually(
        lambda: asyncio.to_thread(haproxy_servers, cluster, "users", "UP"),
        lambda up: up == REPLICAS - 1,
        timeout=WAIT,
        what="the stopped replica taken out of backend users",
    )
    # The user API keeps answering: every request reaches a live replica (its own answer
    # carries x-request-id; HAProxy's own 503 would not).
    for _ in range(20):
        response = await cluster.proxy.get("/api/v1/users/1")
        assert "x-request-id" in response.headers, (response.status_code, response.text)
    gone.spawn()
    await asyncio.to_thread(gone.wait_ready)
    await eventually(
        lambda: asyncio.to_thread(haproxy_servers, cluster, "users", "UP"),
        lambda up: up == REPLICAS,
        timeout=WAIT,
        what="the restarted replica back in backend users",
    )


async def test_a_replica_added_to_dns_gets_user_requests(cluster: Cluster) -> None:
    """What ``--scale simulator=4`` does: one more process, one more A record."""
    address = replica_address(REPLICAS)
    port = cluster.replicas[0].port
    extra = SimulatorProcess(cluster.workdir, address, port, cluster.environment)
    extra.spawn()
    try:
        await asyncio.to_thread(extra.wait_ready)
        cluster.dns.set_addresses([*(r.address for r in cluster.replicas), address])
        await eventually(
            lambda: asyncio.to_thread(haproxy_servers, cluster, "users", "UP"),
            lambda up: up == REPLICAS + 1,
            timeout=WAIT,
            what="a fourth server UP in backend users",
        )
        await eventually(
            lambda: metrics_of(extra),
            lambda text: samples(text, "failure_lab_http_requests_total") > 0,
            timeout=WAIT,
            what="user requests on the new replica",
        )
    finally:
        cluster.dns.set_addresses([r.address for r in cluster.replicas])
        await asyncio.to_thread(extra.stop)
