"""The transport under the engine: one small protocol, aiohttp behind it.

The engine owns scheduling, timing and accounting; a sender only turns a planned request into
an HTTP exchange and reports the status and the service's retry count, or raises
``TransportError`` with a short text and its kind (timeout, connection, other), decided here
from the exception itself, where its type is still known. Keeping it this thin lets a
benchmark run another client under the very same scheduler. The aiohttp sender traces with
the aiohttp-client instrumentation's trace config on its own session (never the global
instrumentor), with the tracer provider it is given; ``span_hook`` sees each client span as
soon as it is created.
The instrumentation's OpenTelemetry duration histograms go to a no-op meter provider, as the
app's server-side instrumentation does: the generator's metrics are its Prometheus series, and
a global meter provider set by anyone else must not start recording two histograms a request.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Literal, Protocol

import aiohttp
from opentelemetry.instrumentation.aiohttp_client import create_trace_config
from opentelemetry.metrics import NoOpMeterProvider
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import Span

from simulator.generator.planner import PlannedRequest
from simulator.options import RETRIES_HEADER

_ERROR_TEXT_LIMIT = 200

SpanHook = Callable[[Span], None]

TransportErrorKind = Literal["timeout", "connection", "cancelled", "other"]
"""Why no response arrived; ``cancelled`` is set by the engine, which does the cancelling."""


class TransportError(Exception):
    """No response arrived (connection error, timeout); the message is short and printable."""

    def __init__(self, message: str, kind: TransportErrorKind = "other") -> None:
        super().__init__(message)
        self.kind: TransportErrorKind = kind


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    retries: int


@dataclass(frozen=True, slots=True)
class SenderConfig:
    base_url: str
    tracer_provider: TracerProvider
    max_in_flight: int
    request_timeout_s: float
    span_hook: SpanHook


class Sender(Protocol):
    async def request(self, planned: PlannedRequest, headers: Mapping[str, str]) -> Reply: ...

    async def aclose(self) -> None: ...


SenderFactory = Callable[[SenderConfig], Sender]


def parse_retries(value: str | None) -> int:
    """The service's retry count header; absent or malformed counts as 0."""
    if not value:
        return 0
    try:
        return max(0, int(value))
    except ValueError:
        return 0


def transport_error_kind(exc: BaseException) -> TransportErrorKind:
    """Classify an exception of the HTTP client by its type, never by its message.

    ``TimeoutError`` comes first: it is an ``OSError``, and aiohttp's own timeouts
    (``ServerTimeoutError``, ``ConnectionTimeoutError``) are both ``TimeoutError`` and
    ``ClientConnectionError``. Refused, reset and dropped connections are
    ``ClientConnectionError`` or ``OSError``; anything else (a malformed response, a bad
    URL) is ``other``.
    """
    if isinstance(exc, TimeoutError):
        return "timeout"
    if isinstance(exc, aiohttp.ClientConnectionError | OSError):
        return "connection"
    return "other"


def error_text(exc: BaseException, timeout_s: float) -> str:
    if isinstance(exc, TimeoutError):
        return f"timeout after {timeout_s:g}s"
    detail = str(exc).strip()
    text = f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__
    return text[:_ERROR_TEXT_LIMIT]


class AiohttpSender:
    """One ``aiohttp.ClientSession`` with a connection pool sized to the in-flight bound."""

    def __init__(self, config: SenderConfig) -> None:
        self._base_url = config.base_url.rstrip("/")
        self._timeout_s = config.request_timeout_s
        hook = config.span_hook

        def request_hook(span: Span, _params: aiohttp.TraceRequestStartParams) -> None:
            hook(span)

        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(
                limit=config.max_in_flight, limit_per_host=config.max_in_flight
            ),
            timeout=aiohttp.ClientTimeout(total=config.request_timeout_s),
            trace_configs=[
                create_trace_config(
                    tracer_provider=config.tracer_provider,
                    meter_provider=NoOpMeterProvider(),
                    request_hook=request_hook,
                )
            ],
            raise_for_status=False,
        )

    async def request(self, planned: PlannedRequest, headers: Mapping[str, str]) -> Reply:
        try:
            async with self._session.request(
                planned.method,
                self._base_url + planned.path,
                json=planned.json,
                headers=dict(headers),
            ) as response:
                await response.read()
                return Reply(response.status, parse_retries(response.headers.get(RETRIES_HEADER)))
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise TransportError(
                error_text(exc, self._timeout_s), transport_error_kind(exc)
            ) from exc

    async def aclose(self) -> None:
        await self._session.close()
        # Let the transports' connection_lost callbacks run before the loop may close.
        await asyncio.sleep(0)


def aiohttp_sender(config: SenderConfig) -> Sender:
    return AiohttpSender(config)
