"""The open-model traffic engine.

Requests are sent at their intended times whatever the responses do, as wrk2 and k6's
constant-arrival-rate executor do, with a bound on requests in flight: a request that falls due
while the bound is reached is dropped and counted, never queued, so a slow service cannot slow
the offered load down (coordinated omission). Latency is measured from the intended send time
and, for comparison, from the actual send; the difference is the send lag, and sends later than
the threshold are counted as late. Monotonic ``perf_counter`` times are used for all
measurements; the wall clock only dates results.

Every request is one trace: it is sent under an empty OpenTelemetry context so the
instrumentation's client span is a root, whose trace id becomes the request id.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import time
from collections.abc import Callable, Iterable
from types import TracebackType
from typing import Self

from opentelemetry import context as otel_context
from opentelemetry.context import Context
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import Span

from failure_lab.control import JobSummary, TrafficResult
from simulator.generator.arrivals import Rate, schedule, sleep_until
from simulator.generator.metrics import GeneratorMetrics
from simulator.generator.planner import PlannedRequest, RequestPlanner, RequestSource
from simulator.generator.recording import Exchange, Recorder, ResultCallback, Sink, wall_offset
from simulator.generator.scenarios import OptionsSchedule
from simulator.generator.segments import Segment
from simulator.generator.senders import (
    Sender,
    SenderConfig,
    SenderFactory,
    TransportError,
    aiohttp_sender,
    error_text,
)
from simulator.generator.stats import LiveStats, RunSamples
from simulator.generator.tally import TrafficTally
from simulator.options import HEADER, PipelineOptions

__all__ = ["TrafficEngine"]

logger = logging.getLogger(__name__)

JOB_ID_ATTRIBUTE = "failure_lab.generator.job_id"
SEND_LAG_ATTRIBUTE = "failure_lab.generator.send_lag_ms"

_ROOT = Context()  # empty: a span started under it is the root of a new trace


class TrafficEngine:
    """Sends generated requests to ``base_url``; start it (or use ``async with``) before use."""

    def __init__(
        self,
        *,
        base_url: str,
        tracer_provider: TracerProvider,
        metrics: GeneratorMetrics,
        planner: RequestPlanner,
        max_in_flight: int,
        late_threshold_s: float,
        request_timeout_s: float = 30.0,
        drain_timeout_s: float = 5.0,
        max_samples: int = 100_000,
        sender_factory: SenderFactory = aiohttp_sender,
    ) -> None:
        if max_in_flight < 1 or max_samples < 1:
            raise ValueError("max_in_flight and max_samples must be >= 1")
        if not (late_threshold_s > 0 and request_timeout_s > 0 and drain_timeout_s >= 0):
            raise ValueError("late_threshold_s and request_timeout_s must be > 0")
        self._config = SenderConfig(
            base_url=base_url,
            tracer_provider=tracer_provider,
            max_in_flight=max_in_flight,
            request_timeout_s=request_timeout_s,
            span_hook=self._on_span,
        )
        self._metrics = metrics
        self._planner = planner
        self.tally = TrafficTally()
        """Statistics over everything this engine sent (``GET /v1/traffic/statistics``)."""
        self._recorder = Recorder(metrics, late_threshold_s, self.tally)
        self._drain_timeout_s = drain_timeout_s
        self._max_samples = max_samples
        self._sender_factory = sender_factory
        self._sender: Sender | None = None
        self._slots = asyncio.Semaphore(max_in_flight)
        self._in_flight = 0
        self._targets: dict[object, float] = {}
        self._current: contextvars.ContextVar[Exchange | None] = contextvars.ContextVar(
            f"failure_lab_generator_request_{id(self):x}", default=None
        )

    @property
    def max_in_flight(self) -> int:
        return self._config.max_in_flight

    @property
    def in_flight(self) -> int:
        return self._in_flight

    async def start(self) -> None:
        if self._sender is None:
            self._sender = self._sender_factory(self._config)

    async def aclose(self) -> None:
        sender, self._sender = self._sender, None
        if sender is not None:
            await sender.aclose()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def send(
        self,
        options: PipelineOptions,
        *,
        intended: float | None = None,
        job_id: str | None = None,
        request: PlannedRequest | None = None,
        live: LiveStats | None = None,
    ) -> TrafficResult:
        """Send one request (waiting for a free in-flight slot); never raises for its failure.

        ``intended`` is a ``time.perf_counter()`` instant; a future one is waited for.
        """
        planned = request if request is not None else self._planner.next()
        if intended is None:
            intended = time.perf_counter()
        else:
            await sleep_until(intended)
        sink = Sink(live)
        exchange = await self._queued(_headers(options), planned, intended, job_id, sink)
        return exchange.result()

    async def burst(
        self,
        options: PipelineOptions,
        count: int,
        job_id: str | None = None,
        *,
        live: LiveStats | None = None,
    ) -> list[TrafficResult]:
        """``count`` requests all intended now, sent as in-flight slots free up, in order."""
        if count < 1:
            raise ValueError("count must be >= 1")
        intended = time.perf_counter()
        headers = _headers(options)
        sink = Sink(live)
        planned = [self._planner.next() for _ in range(count)]
        exchanges = await asyncio.gather(
            *(self._queued(headers, request, intended, job_id, sink) for request in planned)
        )
        offset = wall_offset()  # one instant intended, one timestamp
        return [exchange.result(offset) for exchange in exchanges]

    async def run(
        self,
        options: OptionsSchedule,
        *,
        rate: Rate,
        duration: float,
        job_id: str | None = None,
        on_result: ResultCallback | None = None,
        live: LiveStats | None = None,
        requests: RequestSource | None = None,
        segment: Segment | None = None,
        start_at: float | None = None,
        samples: RunSamples | None = None,
    ) -> JobSummary:
        """Open-model run for ``duration`` s at ``rate`` req/s (a constant or f(elapsed s)).

        ``options`` may be a function of the elapsed seconds too, and ``requests`` a source
        of its own (default: the engine's rotation). With ``segment`` the run sends only that
        segment's arrivals (and requests) of the whole schedule, from the ``perf_counter``
        instant ``start_at`` (default: now); its summary is of what it sent, ``samples`` (if
        given) keeping them. Cancelling the run stops scheduling, lets requests in flight
        finish within the drain timeout (cancelling the rest) and re-raises; ``live`` has
        the counts so far.
        """
        sender = self._require_sender()
        plan = schedule(rate, duration)
        planned, offsets, share = plan.planned, plan.offsets, 1.0
        source = requests if requests is not None else self._planner
        if segment is not None:
            planned, offsets = segment.share(planned), segment.offsets(offsets)
            source, share = segment.requests(source), 1.0 / segment.count
        run_live = live if live is not None else LiveStats()
        if samples is None:
            samples = RunSamples(min(planned, self._max_samples))
        sink = Sink(run_live, samples, on_result)
        headers_at = _HeaderSchedule(options)
        tasks: set[asyncio.Task[Exchange]] = set()
        finished = self._finisher(tasks)
        key = object()
        start = time.perf_counter() if start_at is None else start_at
        self.hold_target(key, _rate_now(rate, 0.0) * share)
        try:
            for offset in offsets:
                intended = start + offset
                if intended > time.perf_counter():
                    if callable(rate):
                        now = time.perf_counter() - start
                        self.hold_target(key, _rate_now(rate, now) * share)
                    await sleep_until(intended)
                if self._slots.locked():
                    self._recorder.dropped(sink.live)
                    continue
                await self._slots.acquire()  # free slot: returns without suspending
                headers = headers_at(offset)
                task = asyncio.create_task(
                    self._exchange(sender, headers, source.next(), intended, job_id, sink)
                )
                tasks.add(task)
                task.add_done_callback(finished)
            last_send = time.perf_counter()
            self.hold_target(key, 0.0)
            if tasks:
                await asyncio.wait(set(tasks))
        except asyncio.CancelledError:
            await self._drain(tasks)
            raise
        finally:
            self.release_target(key)
        window = max(duration, last_send - start)
        return samples.summarise(
            run_live, planned=planned, elapsed=time.perf_counter() - start, send_window=window
        )

    @property
    def target_rps(self) -> float:
        """The rate the runs of this engine are asked for now, together."""
        return sum(self._targets.values())

    def hold_target(self, key: object, rate: float) -> None:
        """Count ``rate`` under ``key`` in the target-rate gauge (a run, or a job whose
        requests other processes send) until ``release_target(key)``."""
        self._targets[key] = rate
        self._metrics.target_rps.set(sum(self._targets.values()))

    def release_target(self, key: object) -> None:
        self._targets.pop(key, None)
        self._metrics.target_rps.set(sum(self._targets.values()))

    # -- internals ---------------------------------------------------------------------------

    def _require_sender(self) -> Sender:
        if self._sender is None:
            raise RuntimeError("TrafficEngine is not started; call start() or use 'async with'")
        return self._sender

    def _finisher(
        self, tasks: set[asyncio.Task[Exchange]]
    ) -> Callable[[asyncio.Task[Exchange]], None]:
        def finished(task: asyncio.Task[Exchange]) -> None:
            tasks.discard(task)
            self._slots.release()
            if not task.cancelled() and task.exception() is not None:
                logger.error("generated request failed unexpectedly", exc_info=task.exception())

        return finished

    async def _queued(
        self,
        headers: dict[str, str],
        planned: PlannedRequest,
        intended: float,
        job_id: str | None,
        sink: Sink,
    ) -> Exchange:
        sender = self._require_sender()
        async with self._slots:
            return await self._exchange(sender, headers, planned, intended, job_id, sink)

    async def _drain(self, tasks: set[asyncio.Task[Exchange]]) -> None:
        pending: Iterable[asyncio.Task[Exchange]] = set(tasks)
        if not pending:
            return
        try:
            _done, pending = await asyncio.wait(pending, timeout=self._drain_timeout_s)
        finally:
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending)

    def _on_span(self, span: Span) -> None:
        exchange = self._current.get()
        if exchange is None:
            return
        exchange.trace_id = span.get_span_context().trace_id
        if exchange.job_id is None:
            span.set_attribute(SEND_LAG_ATTRIBUTE, exchange.send_lag_ms)
        else:
            span.set_attributes(
                {JOB_ID_ATTRIBUTE: exchange.job_id, SEND_LAG_ATTRIBUTE: exchange.send_lag_ms}
            )

    async def _exchange(
        self,
        sender: Sender,
        headers: dict[str, str],
        planned: PlannedRequest,
        intended: float,
        job_id: str | None,
        sink: Sink,
    ) -> Exchange:
        actual = time.perf_counter()
        lag = self._recorder.sent(sink, intended, actual)
        exchange = Exchange(planned, job_id, intended, actual, lag * 1000)
        self._in_flight += 1
        self._metrics.in_flight.inc()
        cancelled: asyncio.CancelledError | None = None
        context_token = otel_context.attach(_ROOT)
        exchange_token = self._current.set(exchange)
        try:
            reply = await sender.request(planned, headers)
            exchange.http_status, exchange.retries = reply.status, reply.retries
        except TransportError as exc:
            exchange.error, exchange.error_kind = str(exc), exc.kind
        except asyncio.CancelledError as exc:
            exchange.error, exchange.error_kind, cancelled = "cancelled", "cancelled", exc
        except Exception as exc:
            exchange.error = error_text(exc, self._config.request_timeout_s)
        finally:
            exchange.ended = time.perf_counter()
            self._current.reset(exchange_token)
            otel_context.detach(context_token)
            self._in_flight -= 1
            self._metrics.in_flight.dec()
        self._recorder.finished(sink, exchange)
        if cancelled is not None:
            raise cancelled
        return exchange


def _headers(options: PipelineOptions) -> dict[str, str]:
    return {HEADER: options.encode()}


class _HeaderSchedule:
    """The options header at an elapsed time; re-encoded only when the options change."""

    def __init__(self, options: OptionsSchedule) -> None:
        self._schedule = options if callable(options) else None
        self._options = options if isinstance(options, PipelineOptions) else None
        self._headers = _headers(self._options) if self._options is not None else {}

    def __call__(self, elapsed: float) -> dict[str, str]:
        if self._schedule is None:
            return self._headers
        options = self._schedule(elapsed)
        if options != self._options:
            self._options, self._headers = options, _headers(options)
        return self._headers


def _rate_now(rate: Rate, elapsed: float) -> float:
    value = float(rate(elapsed)) if callable(rate) else float(rate)
    return max(0.0, value)
