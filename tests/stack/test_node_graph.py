"""The Overview's node graph and ``GET /v1/topology`` in stack mode, on two real replicas.

Two simulators (no embedded shim, as in the stack) each drive their own traffic against a
failing database; Prometheus runs the project's own config with both as targets of the
``simulator`` job, and the exporter reads it. The node graph panel's queries are run against
that Prometheus at one instant and turned into the frames Grafana would hand the panel
(:mod:`tests.stack.node_graph_frames`): Grafana itself cannot be built here (AGPL), so its table
format, ``merge`` and ``organize`` are written out from its sources, and the frames are held to
the field names the node graph reads. The same instant is asked of ``/v1/topology``: the panel
and the endpoint must draw the same graph with the same numbers.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import pytest_asyncio

from exporter.app import create_exporter_app
from failure_lab.settings import Settings
from simulator.app import create_app
from tests.stack.live import ProjectPrometheus, eventually
from tests.stack.node_graph_frames import Frame, apply, split, table_frames
from tests.stack.stackfiles import DASHBOARDS_DIR, PROVISIONING, load_dashboard, load_yaml, panels
from tests.support.configs import config_with
from tests.support.servers import free_port, serve_app

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="module")]

PAYLOAD: dict[str, Any] = {
    "rate_of_requests": 20,
    "number_of_requests": 1,
    "retries_enabled": True,
    "rate_limiting": 200,
    "rate_limiting_algo": "token_bucket",
    "cache_enabled": True,
    "cache_ttl": 1,
    "db_latency": 0,
}
FAULT = config_with(
    failure_injection_enabled=True,
    failure_rate=0.3,
    max_retries=2,
    db_latency_min_ms=1,
    db_latency_max_ms=3,
)
RATES = (20, 10)
"""Requests per second of each replica's own generator."""
WAIT = 25.0
NODE_FIELDS = {"id", "title", "subtitle", "mainstat", "secondarystat", "arc__errors", "arc__ok"}
EDGE_FIELDS = {"id", "source", "target", "mainstat", "secondarystat"}


@dataclass
class Replicas:
    prometheus: ProjectPrometheus
    exporter: httpx.AsyncClient
    simulators: list[httpx.AsyncClient]
    instances: list[str]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def replicas(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Replicas]:
    workdir = tmp_path_factory.mktemp("replicas")
    ports = [free_port(), free_port()]
    exporter_port = free_port()
    instances = [f"127.0.0.1:{port}" for port in ports]
    prometheus = ProjectPrometheus(
        workdir,
        {"simulator": instances, "exporter": f"127.0.0.1:{exporter_port}", "haproxy": None},
        rules=[],
    )
    exporter_app = create_exporter_app(
        Settings(
            port=exporter_port,
            prometheus_url=prometheus.url,
            jaeger_url=f"http://127.0.0.1:{free_port()}",
            simulator_url=f"http://{instances[0]}",
            backend_timeout_seconds=2.0,
        )
    )
    apps = [create_app(Settings(port=port), embedded_shim=False) for port in ports]
    async with (
        serve_app(apps[0], ports[0]) as first,
        serve_app(apps[1], ports[1]) as second,
        serve_app(exporter_app, exporter_port) as exporter_url,
        prometheus,
        httpx.AsyncClient(base_url=first, timeout=15) as one,
        httpx.AsyncClient(base_url=second, timeout=15) as two,
        httpx.AsyncClient(base_url=exporter_url, timeout=15) as exporter,
    ):
        await eventually(
            lambda: prometheus.query("up == 1"),
            lambda result: len(result) == 4,
            timeout=WAIT,
            what="both replicas, the exporter and Prometheus up",
        )
        jobs = []
        for client, rps in zip((one, two), RATES, strict=True):
            assert (await client.put("/v1/config/failure", json=FAULT.model_dump())).is_success
            response = await client.post(
                "/v1/traffic/generate",
                json={"mode": "sustained", "rps": rps, "duration": 120, "payload": PAYLOAD},
            )
            assert response.status_code == 202, response.text
            jobs.append((client, response.json()["job_id"]))
        await eventually(
            lambda: prometheus.query("sum(rate(failure_lab_retries_total[1m])) > 0"),
            bool,
            timeout=WAIT,
            what="retries in Prometheus",
        )
        await asyncio.sleep(3.0)  # a few more scrapes: every rate has moved
        try:
            yield Replicas(prometheus, exporter, [one, two], instances)
        finally:
            for client, job_id in jobs:
                await client.post("/v1/disruptions/clear-all")
                await client.post(f"/v1/traffic/jobs/{job_id}/stop")


def node_graph() -> dict[str, Any]:
    overview = load_dashboard(DASHBOARDS_DIR / "overview.json")
    (panel,) = [p for p in panels(overview) if p["type"] == "nodeGraph"]
    return panel


async def panel_frames(prometheus: ProjectPrometheus, at: float) -> tuple[Frame, Frame]:
    """The node graph's two frames at unix time ``at``, as Grafana would build them."""
    panel = node_graph()
    answers = {}
    for target in panel["targets"]:
        assert target["instant"] is True
        assert target["format"] == "table"
        data = await prometheus.api("query", query=target["expr"], time=f"{at:.3f}")
        assert data["resultType"] == "vector", target["refId"]
        answers[target["refId"]] = data["result"]
    for ref_id, result in answers.items():
        assert result, f"{ref_id} answered no series"
    return split(apply(panel["transformations"], table_frames(answers)))


def by_id(frame: Frame) -> dict[str, dict[str, Any]]:
    rows = {str(row["id"]): row for row in frame.rows}
    assert len(rows) == len(frame.rows), "ids are unique"
    return rows


async def test_the_panel_queries_make_the_frames_the_node_graph_reads(replicas: Replicas) -> None:
    nodes, edges = await panel_frames(replicas.prometheus, time.time())
    assert set(nodes.fields) >= NODE_FIELDS, nodes.fields
    assert "detail__p99_ms" in nodes.fields
    assert set(edges.fields) >= EDGE_FIELDS, edges.fields
    assert "Time" not in nodes.fields + edges.fields
    assert not [name for name in nodes.fields + edges.fields if name.startswith("Value")]
    replica_ids = {f"simulator@{instance}" for instance in replicas.instances}
    node_rows = by_id(nodes)
    assert set(node_rows) == {"generator", "ratelimiter", "cache", "database", "retries"} | {
        *replica_ids
    }
    for node_id, row in node_rows.items():
        assert all(row.get(name) is not None for name in NODE_FIELDS), row
        # The ring is the error rate: red and green parts that make a whole circle.
        assert row["arc__errors"] + row["arc__ok"] == pytest.approx(1.0), node_id
        assert row["arc__errors"] == row["secondarystat"]
    assert node_rows["cache"]["subtitle"] == node_rows["ratelimiter"]["subtitle"] == "in-process"
    assert node_rows["database"]["secondarystat"] > 0.1  # the injected failures
    edge_rows = by_id(edges)
    for edge_id, row in edge_rows.items():
        assert edge_id == f"{row['source']}->{row['target']}"
        assert {row["source"], row["target"]} <= set(node_rows)
    assert {(row["source"], row["target"]) for row in edge_rows.values()} >= {
        ("database", "retries"),
        ("retries", "database"),
        *(("generator", replica) for replica in replica_ids),
    }


async def test_node_links_lead_to_latency_panels_and_failed_traces(replicas: Replicas) -> None:
    panel = node_graph()
    nodes, _ = await panel_frames(replicas.prometheus, time.time())
    (override,) = [o for o in panel["fieldConfig"]["overrides"] if o["matcher"]["options"] == "id"]
    (links,) = [p["value"] for p in override["properties"] if p["id"] == "links"]
    to_panel, to_jaeger = links
    assert "viewPanel=${__data.fields.panel}" in to_panel["url"]
    ids = {p["id"]: p["title"] for p in panels(load_dashboard(DASHBOARDS_DIR / "overview.json"))}
    rows = by_id(nodes)
    for node_id, row in rows.items():
        assert int(str(row["panel"])) in ids, (node_id, row["panel"])
    assert ids[int(str(rows["database"]["panel"]))] == "Database latency"
    query = to_jaeger["internal"]["query"]
    assert (query["queryType"], query["tags"]) == ("search", "error=true")
    assert query["operation"] == "${__data.fields.operation}"
    assert rows["database"]["operation"] == "db.query"  # failed database attempts
    sources = load_yaml(PROVISIONING / "datasources" / "datasources.yml")["datasources"]
    assert to_jaeger["internal"]["datasourceUid"] in {s["uid"] for s in sources}


async def test_the_panel_and_the_topology_endpoint_agree(replicas: Replicas) -> None:
    at = round(time.time(), 3)
    nodes, edges = await panel_frames(replicas.prometheus, at)
    answer = await replicas.exporter.get("/v1/topology", params={"window": "1m", "at": str(at)})
    assert answer.status_code == 200, answer.text
    topology = answer.json()
    assert topology["source"] == "prometheus"
    node_rows, edge_rows = by_id(nodes), by_id(edges)
    for node in topology["nodes"]:
        row = node_rows[node["id"]]
        assert row["title"] == node["title"]
        assert row["mainstat"] == pytest.approx(node["request_rate"], abs=1e-4), node["id"]
        assert row["secondarystat"] == pytest.approx(node["error_rate"], abs=1e-6), node["id"]
        if node["p99_latency_ms"] is None:
            assert row.get("detail__p99_ms") is None, node["id"]
        else:
            assert row["detail__p99_ms"] == pytest.approx(node["p99_latency_ms"], abs=1e-3)
    for edge in topology["edges"]:
        # Grafana cannot draw an edge from a node to itself: the panel loops via "retries".
        row = edge_rows["database->retries" if edge["id"] == "database->database" else edge["id"]]
        assert row["mainstat"] == pytest.approx(edge["request_rate"], abs=1e-4), edge["id"]
        assert row["secondarystat"] == pytest.approx(edge["error_rate"], abs=1e-6), edge["id"]


async def test_each_replica_is_a_node_and_together_they_are_the_service(
    replicas: Replicas,
) -> None:
    at = f"{time.time():.3f}"
    params = {"window": "30s", "at": at}
    topology = (await replicas.exporter.get("/v1/topology", params=params)).json()
    metrics = (await replicas.exporter.get("/metrics/json", params=params)).json()
    services = {n["instance"]: n for n in topology["nodes"] if n["kind"] == "service"}
    assert set(services) == set(replicas.instances)
    first, second = (services[instance]["request_rate"] for instance in replicas.instances)
    assert first / second == pytest.approx(RATES[0] / RATES[1], rel=0.25)
    assert first + second == pytest.approx(metrics["request_rate"], abs=2e-4)
    edges = {e["id"]: e for e in topology["edges"]}
    for instance in replicas.instances:
        assert edges[f"generator->simulator@{instance}"]["request_rate"] > 0
        assert edges[f"simulator@{instance}->ratelimiter"]["request_rate"] > 0
    database = next(n for n in topology["nodes"] if n["kind"] == "database")
    assert database["faults"] == ["failure_injection"]
    assert database["status"] == "degraded"


async def test_a_database_outage_on_one_replica_is_down_within_two_polls(
    replicas: Replicas,
) -> None:
    """Last in the module: the outage stays until the fixture clears it."""
    outage = {"type": "db_outage", "severity": 1.0, "duration_seconds": 60}
    created = await replicas.simulators[1].post("/v1/disruptions", json=outage)
    assert created.status_code == 201, created.text
    statuses = []
    for _ in range(2):  # a poll every scrape interval and a half
        await asyncio.sleep(1.5)
        topology = (await replicas.exporter.get("/v1/topology", params={"window": "10s"})).json()
        database = next(n for n in topology["nodes"] if n["kind"] == "database")
        statuses.append((database["status"], database["reasons"]))
        if database["status"] == "down":
            break
    status, reasons = statuses[-1]
    assert status == "down", statuses
    assert "fault: db_outage" in reasons
