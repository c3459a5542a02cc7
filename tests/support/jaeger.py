"""A real Jaeger of one test's own: the project's ``jaeger/config.yaml`` on free loopback ports.

Tests of the trace side compare against the real thing, so this runs the Jaeger v2 program
``make backends`` builds (the version ``.env`` pins for the stack) with the stack's own
configuration file, only its listening addresses moved to free loopback ports and its own
tracing turned off (it would otherwise write its query spans into the store it serves). It
can be killed and started again on the same ports, as a backend that crashes and comes back;
its memory store starts empty each time, as the stack's does. Starting and waiting are async:
the app under test is served by the same event loop and must keep answering meanwhile.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import httpx
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import ReadableSpan

from tests.support.backends import ROOT, backend_binary
from tests.support.process import LoggedProcess
from tests.support.servers import free_port

CONFIG = ROOT / "jaeger" / "config.yaml"
_START_ATTEMPTS = 3
_PORTS = ("otlp_grpc", "otlp_http", "query_http", "query_grpc", "health", "metrics")


class JaegerProcess:
    """``jaeger --config jaeger/config.yaml`` on 127.0.0.1 only, logging to ``workdir``."""

    def __init__(self, workdir: Path) -> None:
        self._binary = backend_binary("jaeger")
        self._process = LoggedProcess(workdir / "jaeger.log")
        self.ports = {name: free_port() for name in _PORTS}
        self._started_once = False

    @property
    def query_url(self) -> str:
        """api_v3 and the UI (the shim's ``FAILURE_LAB_JAEGER_URL``)."""
        return f"http://127.0.0.1:{self.ports['query_http']}"

    @property
    def otlp_url(self) -> str:
        """OTLP/HTTP receiver (``OTEL_EXPORTER_OTLP_ENDPOINT``); traces go to ``/v1/traces``."""
        return f"http://127.0.0.1:{self.ports['otlp_http']}"

    @property
    def running(self) -> bool:
        return self._process.running

    @property
    def pid(self) -> int:
        return self._process.pid

    def command(self) -> list[str]:
        p = self.ports
        prometheus = f"{{host: 127.0.0.1, port: {p['metrics']}}}"
        metrics = f"{{pull: {{exporter: {{prometheus: {prometheus}}}}}}}"
        return [
            str(self._binary),
            f"--config={CONFIG}",
            f"--set=receivers.otlp.protocols.grpc.endpoint=127.0.0.1:{p['otlp_grpc']}",
            f"--set=receivers.otlp.protocols.http.endpoint=127.0.0.1:{p['otlp_http']}",
            f"--set=extensions.jaeger_query.http.endpoint=127.0.0.1:{p['query_http']}",
            f"--set=extensions.jaeger_query.grpc.endpoint=127.0.0.1:{p['query_grpc']}",
            "--set=extensions.jaeger_query.enable_tracing=false",
            f"--set=extensions.healthcheckv2.http.endpoint=127.0.0.1:{p['health']}",
            f"--config=yaml:service::telemetry::metrics::readers: [{metrics}]",
        ]

    async def start(self, timeout: float = 30.0) -> None:
        """Start (or start again, on the same ports) and wait until healthy.

        The first start moves to other free ports if one was taken meanwhile.
        """
        if self.running:
            raise RuntimeError("jaeger is already running")
        attempts = 1 if self._started_once else _START_ATTEMPTS
        for _ in range(attempts):
            self._spawn()
            if await self._wait_ready(timeout):
                self._started_once = True
                return
            self.kill()
            if not self._started_once:
                self.ports = {name: free_port() for name in _PORTS}
        raise RuntimeError(f"jaeger did not become healthy:\n{self.log_tail()}")

    def _spawn(self) -> None:
        self._process.spawn(self.command())

    async def _wait_ready(self, timeout: float) -> bool:
        """Healthy (every pipeline component up) and answering api_v3."""
        deadline = time.monotonic() + timeout
        health = f"http://127.0.0.1:{self.ports['health']}/status"
        async with httpx.AsyncClient(timeout=1.0) as client:
            while time.monotonic() < deadline and self.running:
                try:
                    status = await client.get(health)
                    if status.status_code == 200 and status.json().get("healthy") is True:
                        services = await client.get(f"{self.query_url}/api/v3/services")
                        if services.status_code == 200:
                            return True
                except (httpx.HTTPError, ValueError):
                    pass
                await asyncio.sleep(0.05)
        return False

    def kill(self) -> None:
        """SIGKILL, as a crash: everything in the memory store is lost."""
        self._process.kill()

    def log_tail(self, chars: int = 3000) -> str:
        return self._process.log_tail(chars)

    async def send(
        self, spans: Sequence[ReadableSpan], request: ExportTraceServiceRequest | None = None
    ) -> None:
        """Export ``spans`` in one OTLP/HTTP request, encoded by the SDK's own encoder as
        its OTLP exporter does (or ``request``, an encoding of them a test changed), and wait
        until Jaeger serves every one of them."""
        message = request if request is not None else encode_spans(spans)
        async with httpx.AsyncClient(timeout=10.0) as client:
            answer = await client.post(
                f"{self.otlp_url}/v1/traces",
                content=message.SerializeToString(),
                headers={"Content-Type": "application/x-protobuf"},
            )
        if answer.status_code != 200:
            raise AssertionError(f"jaeger refused spans: HTTP {answer.status_code} {answer.text}")
        await self.wait_for(spans)

    async def wait_for(self, spans: Sequence[ReadableSpan], timeout: float = 15.0) -> None:
        """Until ``/api/v3/traces/{id}`` answers every span of ``spans`` (Jaeger stores what
        it receives a batch later, up to 200 ms). Raw reads: they leave the store as it is."""
        wanted: dict[int, set[int]] = {}
        for span in spans:
            assert span.context is not None
            wanted.setdefault(span.context.trace_id, set()).add(span.context.span_id)
        deadline = time.monotonic() + timeout
        async with httpx.AsyncClient(base_url=self.query_url, timeout=5.0) as client:
            for trace_id, span_ids in wanted.items():
                while not span_ids <= await _stored_span_ids(client, trace_id):
                    if time.monotonic() > deadline:
                        raise AssertionError(f"jaeger has not stored trace {trace_id:032x}")
                    await asyncio.sleep(0.05)

    async def answer(self, trace_id: int, *, raw: bool = True) -> dict[str, Any]:
        """Jaeger's api_v3 answer for one trace, as JSON: raw, or adjusted (as the UI reads
        it, which changes what Jaeger's memory store holds)."""
        params = {"raw_traces": "true"} if raw else {}
        async with httpx.AsyncClient(timeout=5.0) as client:
            answer = await client.get(
                f"{self.query_url}/api/v3/traces/{trace_id:032x}", params=params
            )
        answer.raise_for_status()
        body: dict[str, Any] = answer.json()
        return body

    def pause(self) -> None:
        """SIGSTOP: the process keeps its ports (connections are still accepted by the
        kernel) but answers nothing, as a hung backend; ``resume()`` continues it."""
        self._process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        self._process.send_signal(signal.SIGCONT)

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.kill()


def spans_of(answer: dict[str, Any]) -> list[dict[str, Any]]:
    """The span objects of an api_v3 answer, in order."""
    return [
        span
        for resource in answer.get("result", {}).get("resourceSpans", [])
        for scope in resource.get("scopeSpans", [])
        for span in scope.get("spans", [])
    ]


async def _stored_span_ids(client: httpx.AsyncClient, trace_id: int) -> set[int]:
    answer = await client.get(f"/api/v3/traces/{trace_id:032x}", params={"raw_traces": "true"})
    if answer.status_code != 200:
        return set()
    return {int(span["spanId"], 16) for span in spans_of(answer.json())}
