"""Schemathesis against the stack-mode shim's read routes, its backends up and down.

Up: a real simulator, a real Prometheus scraping it, and the trace backend on a closed port
(no Jaeger runs here), so the trace routes answer the 503 the document declares. Down: every
backend on a closed port, so every read answers 503 naming its backend. The forwarded
control routes are fuzzed too: through to the real simulator when it is up, and answering
the 503 naming it that the document declares when it is down. What else is configured, and
why, is said in :mod:`tests.support.fuzzing`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

import pytest
import schemathesis

from exporter.app import create_exporter_app
from failure_lab.settings import Settings
from simulator.app import create_app
from tests.support.fuzzing import (
    FORWARDED,
    HEALTH,
    LOW_LOAD,
    RANDOM_IN_THREAD,
    READS,
    config,
    deliberate_5xx,
    follow_rules_schemas_cannot_state,
    only_deliberate_failures,
)
from tests.support.loop_thread import LoopThread
from tests.support.prometheus import PrometheusProcess
from tests.support.servers import free_port, serve_app

pytestmark = [
    pytest.mark.integration,
    pytest.mark.filterwarnings(RANDOM_IN_THREAD),
    pytest.mark.filterwarnings("error:Duplicate Operation ID:UserWarning"),
]


@pytest.fixture(scope="module")
def loop() -> Iterator[LoopThread]:
    with LoopThread() as thread:
        yield thread


@pytest.fixture(scope="module")
def calls(request: pytest.FixtureRequest) -> Iterator[Counter[str]]:
    tally: Counter[str] = Counter()
    yield tally
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(f"fuzz (shim): requests sent {dict(tally)}")


def _shim(loop: LoopThread, **backends: str) -> schemathesis.BaseSchema:
    port = free_port()
    app = create_exporter_app(
        Settings(port=port, backend_timeout_seconds=1.0, **LOW_LOAD, **backends)
    )
    url = loop.enter(serve_app(app, port))
    schema = schemathesis.openapi.from_url(
        f"{url}/openapi.json",
        config=config(
            operations=[deliberate_5xx(READS), deliberate_5xx(FORWARDED), deliberate_5xx(HEALTH)]
        ),
    )
    schema.hook("map_case")(follow_rules_schemas_cannot_state)
    return schema


@pytest.fixture(scope="module")
def backends_up(
    loop: LoopThread, tmp_path_factory: pytest.TempPathFactory
) -> schemathesis.BaseSchema:
    sim_port = free_port()
    simulator = create_app(Settings(port=sim_port, **LOW_LOAD), embedded_shim=False)
    sim_url = loop.enter(serve_app(simulator, sim_port))
    prometheus = loop.enter(
        PrometheusProcess(tmp_path_factory.mktemp("prometheus"), [f"127.0.0.1:{sim_port}"])
    )
    return _shim(
        loop,
        prometheus_url=prometheus.url,
        simulator_url=sim_url,
        jaeger_url=f"http://127.0.0.1:{free_port()}",
    )


@pytest.fixture(scope="module")
def backends_down(loop: LoopThread) -> schemathesis.BaseSchema:
    closed = {
        name: f"http://127.0.0.1:{free_port()}"
        for name in ("prometheus_url", "simulator_url", "jaeger_url")
    }
    return _shim(loop, **closed)


up_schema = schemathesis.pytest.from_fixture("backends_up")
down_schema = schemathesis.pytest.from_fixture("backends_down")


@up_schema.parametrize()
def test_shim_with_its_backends_up(case: schemathesis.Case, calls: Counter[str]) -> None:
    calls["backends up"] += 1
    response = case.call_and_validate(additional_checks=[only_deliberate_failures])
    if case.path == "/metrics/json" and response.status_code == 200:
        calls["answered by prometheus"] += 1


@down_schema.parametrize()
def test_shim_with_its_backends_down(case: schemathesis.Case, calls: Counter[str]) -> None:
    calls["backends down"] += 1
    response = case.call_and_validate(additional_checks=[only_deliberate_failures])
    if case.path == "/metrics/json" and response.status_code == 503:
        calls["prometheus down"] += 1


def test_both_backends_states_were_reached(calls: Counter[str]) -> None:
    """Runs after the fuzz tests above (pytest keeps a module's order)."""
    assert calls["answered by prometheus"] > 0
    assert calls["prometheus down"] > 0
