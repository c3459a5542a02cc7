"""``failure-lab exporter`` (stack mode): control calls forwarded, reads from the backends.

A real simulator (without the embedded shim) and a real Prometheus scraping it; Jaeger is
not running here, so its URL points at a closed port: the shim must say so by name.
"""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from rich.console import Console

from exporter.app import MissingBackend, create_exporter_app
from failure_lab.settings import Settings
from simulator.app import create_app
from simulator.scenario.session import run_file
from tests.support.configs import config_with
from tests.support.labs import metrics_again
from tests.support.prometheus import PrometheusProcess
from tests.support.servers import free_port, serve_app

PAYLOAD: dict[str, Any] = {
    "rate_of_requests": 20,
    "number_of_requests": 3,
    "retries_enabled": True,
    "rate_limiting": 0,
    "rate_limiting_algo": "token_bucket",
    "cache_enabled": True,
    "cache_ttl": 5,
    "db_latency": 0,
}


@dataclass
class Stack:
    shim: httpx.AsyncClient
    simulator: httpx.AsyncClient
    prometheus: PrometheusProcess


@pytest.fixture
async def stack(tmp_path: Path) -> AsyncIterator[Stack]:
    sim_port, shim_port = free_port(), free_port()
    simulator = create_app(Settings(port=sim_port), embedded_shim=False)
    async with (
        serve_app(simulator, sim_port) as sim_url,
        PrometheusProcess(tmp_path, [f"127.0.0.1:{sim_port}"]) as prometheus,
    ):
        shim_app = create_exporter_app(
            Settings(
                port=shim_port,
                prometheus_url=prometheus.url,
                simulator_url=sim_url,
                jaeger_url=f"http://127.0.0.1:{free_port()}",
                backend_timeout_seconds=1.0,
            )
        )
        async with (
            serve_app(shim_app, shim_port) as shim_url,
            httpx.AsyncClient(base_url=shim_url, timeout=15) as shim,
            httpx.AsyncClient(base_url=sim_url, timeout=15) as direct,
        ):
            yield Stack(shim, direct, prometheus)


def test_exporter_refuses_to_start_without_its_backends() -> None:
    with pytest.raises(MissingBackend, match="FAILURE_LAB_JAEGER_URL"):
        create_exporter_app(Settings(prometheus_url="http://x", simulator_url="http://y"))


async def test_control_calls_are_forwarded_unchanged(stack: Stack) -> None:
    config = config_with(db_latency_min_ms=1, db_latency_max_ms=2).model_dump()
    response = await stack.shim.put("/v1/config/failure", json=config)
    assert response.status_code == 200
    assert (await stack.simulator.get("/v1/config/failure")).json() == config

    results = await stack.shim.post(
        "/v1/traffic/generate", json={"mode": "burst", "count": 4, "payload": PAYLOAD}
    )
    assert results.status_code == 200
    assert len(results.json()) == 4
    assert (await stack.shim.get("/v1/traffic/status")).json() == (
        await stack.simulator.get("/v1/traffic/status")
    ).json()

    bad = {"mode": "burst", "count": 10**6, "payload": PAYLOAD}
    via_shim = await stack.shim.post("/v1/traffic/generate", json=bad)
    direct = await stack.simulator.post("/v1/traffic/generate", json=bad)
    assert via_shim.status_code == direct.status_code == 422
    assert via_shim.json() == direct.json()
    missing = await stack.shim.get("/v1/traffic/jobs/nope")
    assert missing.status_code == 404
    assert missing.json() == (await stack.simulator.get("/v1/traffic/jobs/nope")).json()


async def test_a_job_stream_is_relayed_as_it_happens(stack: Stack) -> None:
    started = await stack.shim.post(
        "/v1/traffic/jobs", json={"scenario": "normal", "duration": 1.5, "max_rps": 20}
    )
    assert started.status_code == 201
    job_id = started.json()["job_id"]
    arrivals: list[tuple[float, str]] = []
    loop = asyncio.get_running_loop()
    async with stack.shim.stream("GET", f"/v1/traffic/jobs/{job_id}/stream") as stream:
        assert stream.status_code == 200
        assert stream.headers["content-type"].startswith("text/event-stream")
        async for line in stream.aiter_lines():
            if line.startswith("event: "):
                arrivals.append((loop.time(), line.removeprefix("event: ")))
    kinds = [kind for _, kind in arrivals]
    assert kinds[-1] == "done"
    assert kinds.count("done") == 1
    assert "status" in kinds
    # Relayed, not buffered: the first status came a second or more before the end.
    assert arrivals[-1][0] - arrivals[0][0] >= 1.0
    missing = await stack.shim.get("/v1/traffic/jobs/nope/stream")
    assert missing.status_code == 404
    assert "nope" in missing.json()["detail"]


STACK_SCENARIO = """\
name: stack-run
phases:
  - name: healthy
    scenario: normal
    duration: 4
    max_rps: 30
  - name: failing
    scenario: error_injection
    duration: 4
    max_rps: 30
checks:
  - {phase: healthy, metric: error_rate, below: 0.01}
  - {phase: failing, metric: error_rate, above: 0.05}
  - {metric: achieved_rate_ratio, above: 0.99}
"""


async def test_a_scenario_runs_through_the_shim_and_agrees_with_prometheus(
    stack: Stack, tmp_path: Path
) -> None:
    scenario = tmp_path / "stack.yaml"
    scenario.write_text(STACK_SCENARIO)
    # A stack's Prometheus has been scraping long before a run; this one has just started.
    await stack.prometheus.wait_for_samples('up{job="simulator"} == 1', timeout=20)
    out = io.StringIO()
    code = await run_file(
        scenario,
        target=str(stack.shim.base_url),
        report_path=tmp_path / "report.json",
        settle_seconds=2.5,  # this Prometheus scrapes every second
        console=Console(file=out, width=200),
    )
    assert code == 0, out.getvalue()
    report = json.loads((tmp_path / "report.json").read_text())
    healthy, failing = report["phases"]
    # The error endpoint answers 5xx to half its requests, and it gets 3 in 10 requests.
    assert failing["service"]["error_rate"] == pytest.approx(0.15, abs=0.07)
    assert healthy["service"]["error_rate"] == 0
    for phase in (healthy, failing):
        service = phase["service"]
        again = await metrics_again(stack.shim, service)
        assert again["request_rate"] == service["request_rate"]  # Prometheus, asked again
        assert again["error_rate"] == service["error_rate"]
        # Prometheus counted what the generator sent, within one scrape's extrapolation.
        counted = service["request_rate"] * service["window_seconds"]
        assert counted == pytest.approx(phase["generator"]["sent"], rel=0.3)


async def test_metrics_come_from_prometheus_and_jaeger_down_is_named(stack: Stack) -> None:
    config = config_with(db_latency_min_ms=1, db_latency_max_ms=2).model_dump()
    await stack.shim.put("/v1/config/failure", json=config)
    # A scrape before the traffic, so rate() has the zero it starts from.
    await stack.prometheus.wait_for_samples("failure_lab_http_requests_total", timeout=15)
    await stack.shim.post(
        "/v1/traffic/generate", json={"mode": "burst", "count": 30, "payload": PAYLOAD}
    )
    await stack.prometheus.wait_for_samples(
        "sum(failure_lab_http_requests_total) >= 30", timeout=15
    )
    await asyncio.sleep(1.5)
    data = (await stack.shim.get("/metrics/json", params={"window": "30s"})).json()
    assert data["request_rate"] > 0
    assert data["error_rate"] == 0

    for path in ("/v1/requests/recent", "/v1/trace/0af7651916cd43dd8448eb211c80319c"):
        response = await stack.shim.get(path)
        assert response.status_code == 503
        assert response.json()["detail"].startswith("jaeger unavailable")

    health = (await stack.shim.get("/health")).json()
    assert health["status"] == "degraded"
    assert health["checks"]["prometheus"]["status"] == "healthy"
    assert health["checks"]["simulator"]["status"] == "healthy"
    assert health["checks"]["jaeger"]["status"] == "unhealthy"
    status = (await stack.shim.get("/v1/status")).json()
    roles = {b["name"]: (b["role"], b["healthy"]) for b in status["backends"]}
    assert roles["prometheus"] == ("metrics", True)
    assert roles["jaeger"] == ("traces", False)


async def test_prometheus_down_is_503_naming_it_then_recovers(stack: Stack) -> None:
    stack.prometheus.kill()
    started = asyncio.get_running_loop().time()
    response = await stack.shim.get("/metrics/json")
    assert asyncio.get_running_loop().time() - started < 3
    assert response.status_code == 503
    assert response.json()["detail"].startswith("prometheus")
    await stack.prometheus.start()
    response = await stack.shim.get("/metrics/json")
    assert response.status_code == 200


async def test_simulator_down_is_503_naming_it(tmp_path: Path) -> None:
    shim_port = free_port()
    app = create_exporter_app(
        Settings(
            port=shim_port,
            prometheus_url=f"http://127.0.0.1:{free_port()}",
            jaeger_url=f"http://127.0.0.1:{free_port()}",
            simulator_url=f"http://127.0.0.1:{free_port()}",
        )
    )
    async with serve_app(app, shim_port) as url, httpx.AsyncClient(base_url=url) as shim:
        response = await shim.get("/v1/traffic/status")
        assert response.status_code == 503
        assert response.json()["detail"].startswith("simulator unavailable")
        health = (await shim.get("/health")).json()
        assert health["status"] == "unhealthy"


async def raw_request(base_url: str, method: str, raw_path: str) -> tuple[int, dict[str, Any]]:
    """Status and JSON body of a request whose path is sent byte for byte over a socket:
    HTTP clients remove dot-segments and re-encode paths, which would hide what is tested."""
    url = httpx.URL(base_url)
    reader, writer = await asyncio.open_connection(url.host, url.port)
    try:
        writer.write(
            f"{method} {raw_path} HTTP/1.1\r\nHost: {url.host}\r\nContent-Length: 0\r\n"
            "Connection: close\r\n\r\n".encode()
        )
        answer = await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    document: dict[str, Any] = json.loads(body)
    return status, document


@pytest.mark.parametrize(
    ("method", "raw_path"),
    [
        ("DELETE", "/v1/traffic/%11"),
        ("DELETE", "/v1/traffic/jobs/%11"),
        ("GET", "/v1/config/..%2F..%2Fmetrics"),
        ("GET", "/v1/disruptions/..%2F..%2Fopenapi.json"),
        ("GET", "/v1/traffic/../../api/v1/users"),
        ("GET", "/v1/traffic/jobs/.."),
        ("GET", "/v1/traffic/jobs/%2e%2e"),
        ("GET", "/v1/disruptions/..%5C..%5Cmetrics"),
        ("POST", "/v1/traffic/jobs/%00/stop"),
        ("GET", "/v1/config/failure/../../../metrics"),
    ],
)
async def test_the_forwarder_reaches_no_other_route(
    stack: Stack, method: str, raw_path: str
) -> None:
    served_before = (await stack.simulator.get("/v1/traffic/statistics")).json()
    metrics_before = (await stack.simulator.get("/metrics")).text
    status, answer = await raw_request(str(stack.shim.base_url), method, raw_path)
    assert status in (400, 404, 405), answer
    assert isinstance(answer["detail"], str)
    # Nothing reached the simulator's user API or its other routes.
    assert (await stack.simulator.get("/v1/traffic/statistics")).json() == served_before
    user_api = [
        line
        for line in (await stack.simulator.get("/metrics")).text.splitlines()
        if line.startswith("failure_lab_http_requests_total")
    ]
    assert user_api == [
        line
        for line in metrics_before.splitlines()
        if line.startswith("failure_lab_http_requests_total")
    ]


def _operations(document: dict[str, Any], prefixes: tuple[str, ...]) -> dict[str, Any]:
    """Each operation under ``prefixes``: what a client sends and gets, titles left out."""

    def untitled(node: Any) -> Any:
        if isinstance(node, dict):
            return {k: untitled(v) for k, v in node.items() if k not in ("title", "description")}
        if isinstance(node, list):
            return [untitled(item) for item in node]
        return node

    return {
        f"{method.upper()} {path}": untitled(
            {key: operation.get(key) for key in ("operationId", "parameters", "requestBody")}
            | {"responses": operation["responses"], "summary": operation.get("summary")}
        )
        for path, operations in document["paths"].items()
        if path.startswith(prefixes)
        for method, operation in operations.items()
    }


def _without_503(operations: dict[str, Any]) -> dict[str, Any]:
    return {
        name: {
            **operation,
            "responses": {k: v for k, v in operation["responses"].items() if k != "503"},
        }
        for name, operation in operations.items()
    }


def test_the_shim_documents_each_forwarded_route_as_the_simulator_does() -> None:
    nowhere = "http://127.0.0.1:9"
    shim = create_exporter_app(
        Settings(prometheus_url=nowhere, jaeger_url=nowhere, simulator_url=nowhere)
    ).openapi()
    simulator = create_app(Settings(), embedded_shim=False).openapi()
    prefixes = ("/v1/traffic", "/v1/config", "/v1/disruptions")
    forwarded = _operations(shim, prefixes)
    served = _operations(simulator, prefixes)
    # The shim adds one answer of its own to each: 503 when the simulator does not answer.
    for operation in forwarded.values():
        assert "503" in operation["responses"]
    assert _without_503(forwarded) == _without_503(served)
    for name, schema in simulator["components"]["schemas"].items():
        if name in shim["components"]["schemas"]:
            assert shim["components"]["schemas"][name] == schema, name
    assert len(forwarded) == 17
