"""Real backends for the unit tests of the trace side: a Jaeger, and traffic sent to it.

A module that asks for ``jaeger`` shares one Jaeger among its tests, which only read what
``traffic`` (the simulator's own spans, exported by its own OTLP exporter) put there; a test
that stops Jaeger or needs it empty asks for ``own_jaeger``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from tests.support.jaeger import JaegerProcess
from tests.support.labs import Traffic, failing_then_healthy


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def jaeger(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[JaegerProcess]:
    """One Jaeger for the tests that only read what the traffic fixture sent it."""
    async with JaegerProcess(tmp_path_factory.mktemp("jaeger")) as process:
        yield process


@pytest_asyncio.fixture
async def own_jaeger(tmp_path: Path) -> AsyncIterator[JaegerProcess]:
    """A Jaeger of the test's own, empty, which it may stop or fill as it likes."""
    async with JaegerProcess(tmp_path) as process:
        yield process


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def traffic(jaeger: JaegerProcess) -> Traffic:
    """Two requests failing every database attempt, then three succeeding, whose spans the
    app's own OTLP exporter sent to Jaeger."""
    traffic = await failing_then_healthy(jaeger.otlp_url)
    await jaeger.wait_for(traffic.spans)
    return traffic
