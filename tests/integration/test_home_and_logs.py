"""The port someone opens: ``/`` says what is there, ``/docs`` renders offline in a real
Chromium, and ``serve`` says in its log what jobs and config changes it received."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from failure_lab.home import home_page
from failure_lab.settings import Settings
from tests.support.chromium import open_offline
from tests.support.labs import running_lab

pytestmark = pytest.mark.timeout(120)


async def test_home_links_the_docs_the_feed_and_the_metrics() -> None:
    async with running_lab() as lab:
        page = await lab.http.get("/")
        assets = await lab.http.get("/docs-assets/swagger-ui-bundle.js")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    for href in ('href="/docs"', 'href="/metrics/json?window=1m"', 'href="/health"'):
        assert href in page.text
    assert "<code>/ws</code>" in page.text
    assert "Grafana" not in page.text  # no stack URLs configured
    assert assets.status_code == 200
    assert len(assets.content) > 500_000


def test_in_stack_mode_home_links_grafana_and_jaeger() -> None:
    settings = Settings(grafana_url="http://localhost:3000", jaeger_ui_url="http://localhost:16686")
    page = home_page(settings, "exporter")
    assert 'href="http://localhost:3000/dashboards"' in page
    assert 'href="http://localhost:16686/search?service=failure-lab-simulator"' in page


async def test_docs_render_offline_in_chromium(tmp_path: Path) -> None:
    async with running_lab() as lab:
        base = str(lab.http.base_url).rstrip("/")
        loaded = await open_offline(
            f"{base}/docs",
            tmp_path / "profile",
            {
                "title": "document.querySelector('.swagger-ui .info .title')?.textContent",
                "routes": "document.querySelectorAll('.opblock').length",
            },
            loopback=True,
        )
    # The proxy that cuts the network lets loopback through: only the lab itself answers.
    assert loaded.errors == []
    assert str(loaded.values["title"]).startswith("failure-lab simulator")
    assert loaded.values["routes"] > 20


async def test_serve_logs_each_job_and_config_change(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    async with running_lab() as lab:
        config = (await lab.http.get("/v1/config/failure")).json()
        await lab.http.put("/v1/config/failure", json=config | {"failure_rate": 0.2})
        await lab.http.put(
            "/v1/config/circuit-breaker",
            json={"enabled": True, "failure_threshold": 3, "open_seconds": 2},
        )
        job = await lab.http.post(
            "/v1/traffic/jobs", json={"scenario": "normal", "duration": 0.5, "max_rps": 10}
        )
        job_id = job.json()["job_id"]
        done = await lab.http.get(f"/v1/traffic/jobs/{job_id}/stream")
        assert "event: done" in done.text
    messages = [r.getMessage() for r in caplog.records if r.name.startswith("simulator")]
    assert any(m.startswith("failure config: injection off at 0.2") for m in messages)
    assert "circuit breaker config: on, opens after 3 consecutive failures for 2 s" in messages
    assert f"job {job_id} started: normal at 10 req/s for 0.5 s" in messages
    assert any(m.startswith(f"job {job_id} completed: 5 sent") for m in messages)
