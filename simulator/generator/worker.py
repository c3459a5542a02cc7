"""One worker process of a split job: ``python -m simulator.generator.worker``.

The job's process starts it with pipes on stdin and stdout (``split.py``) and writes it a
``WorkerTask``: the settings, the job as data (``JobSpec``) and its segment. The worker
builds the same engine the job's process would (aiohttp, a tracer provider with the same
service name, exporting over OTLP itself when the ``OTEL_*`` variables say so), rebuilds the
plan from the spec, says ``Ready`` and waits for the common start instant. It then runs its
segment of the schedule, reports its running totals every ``PROGRESS_INTERVAL_S``, and ends
with its samples (``Finished``) or why it could not (``Failed``).

``Stop`` on stdin, or stdin closing (the job's process is gone), stops the run the way a
cancelled job stops: no more sends, requests in flight get the drain timeout (at most half
the shutdown grace, and flushing spans the other half, so the whole stop fits in it).
Ctrl-C is left to the job's process, which stops its workers itself. The protocol uses a
copy of the original stdout; stdout itself is pointed at stderr, so a stray print cannot
corrupt a message.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import random
import signal
import sys
import time
from typing import BinaryIO

import uvloop
from prometheus_client import CollectorRegistry, Counter

from simulator.generator.arrivals import schedule
from simulator.generator.engine import TrafficEngine
from simulator.generator.metrics import GeneratorMetrics
from simulator.generator.planner import RequestPlanner
from simulator.generator.stats import LiveStats, RunSamples
from simulator.generator.wire import (
    PROGRESS_INTERVAL_S,
    Failed,
    Finished,
    Progress,
    Ready,
    Start,
    WorkerTask,
    frame,
    read_message,
)
from simulator.telemetry.relay import SpanShipper
from simulator.telemetry.tracing import build_tracer_provider, otlp_configured, otlp_processor

DRAIN_TIMEOUT_S = 5.0

logger = logging.getLogger(__name__)


class _Pipes:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self._writer = writer

    async def send(self, message: object) -> None:
        self._writer.write(frame(message))
        await self._writer.drain()

    async def close(self, timeout: float) -> None:
        """Close the pipe once everything written has left, within ``timeout`` seconds.

        ``drain()`` alone returns once the buffer is under its high-water mark, and what is
        still in it when the process's loop ends is lost: that was the tail of the last and
        largest message (``Finished``, with the samples), and the job's process read a pipe
        that closed mid-message. With the mark at 0, ``drain()`` waits for an empty buffer.
        """
        with contextlib.suppress(OSError, TimeoutError):
            self._writer.transport.set_write_buffer_limits(high=0)
            async with asyncio.timeout(timeout):
                await self._writer.drain()
        self._writer.close()


async def _pipes(stdin: BinaryIO, out: BinaryIO) -> _Pipes:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=1 << 20)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), stdin)
    transport, protocol = await loop.connect_write_pipe(
        lambda: asyncio.streams.FlowControlMixin(loop), out
    )
    return _Pipes(reader, asyncio.StreamWriter(transport, protocol, None, loop))


class _Worker:
    """The engine of one segment, and what it reports."""

    def __init__(self, task: WorkerTask) -> None:
        settings = task.settings
        self.task = task
        self.provider = build_tracer_provider(settings)
        if settings.telemetry_enabled and otlp_configured():
            dropped = Counter("spans_dropped", "Spans dropped.", registry=CollectorRegistry())
            self.provider.add_span_processor(otlp_processor(settings, dropped))
        self.shipper = SpanShipper() if task.relay_spans else None
        if self.shipper is not None:
            self.provider.add_span_processor(self.shipper)
        self.metrics = GeneratorMetrics(CollectorRegistry())
        self.live = LiveStats()
        self.engine = TrafficEngine(
            base_url=task.base_url,
            tracer_provider=self.provider,
            metrics=self.metrics,
            planner=RequestPlanner(task.spec.users, random.Random(task.spec.seed)),
            max_in_flight=task.segment.bound(settings.max_in_flight),
            max_samples=settings.run_samples_max,
            late_threshold_s=settings.late_send_threshold_ms / 1000,
            drain_timeout_s=min(DRAIN_TIMEOUT_S, settings.shutdown_grace_seconds / 2),
        )

    def progress(self) -> Progress:
        return Progress(
            live=self.live.counts(),
            current_rps=self.live.current_rps(),
            in_flight=self.engine.in_flight,
            target_rps=self.engine.target_rps,
            tally=self.engine.tally.counts(),
            metrics=self.metrics.counts(),
            spans=self.shipper.take() if self.shipper is not None else [],
        )

    async def run(self, at: float) -> RunSamples:
        task = self.task
        plan = task.spec.plan()
        share = task.segment.share(schedule(plan.rate, plan.duration).planned)
        samples = RunSamples(min(share, task.settings.run_samples_max))
        await self.engine.run(
            plan.options,
            rate=plan.rate,
            duration=plan.duration,
            job_id=task.job_id,
            live=self.live,
            requests=plan.requests,
            segment=task.segment,
            start_at=at,
            samples=samples,
        )
        return samples


async def _report(worker: _Worker, pipes: _Pipes) -> None:
    while True:
        await asyncio.sleep(PROGRESS_INTERVAL_S)
        await pipes.send(worker.progress())


async def _until_stopped(pipes: _Pipes) -> None:
    """Returns at ``Stop``, or when the job's process closed the pipe."""
    with contextlib.suppress(EOFError):
        await read_message(pipes.reader)


async def _work(worker: _Worker, pipes: _Pipes) -> None:
    command = await read_message(pipes.reader)
    if not isinstance(command, Start):
        await pipes.send(Finished(None, time.perf_counter(), 0.0))
        return
    cpu = time.process_time()
    run = asyncio.create_task(worker.run(command.at))
    stop = asyncio.create_task(_until_stopped(pipes))
    reporter = asyncio.create_task(_report(worker, pipes))
    try:
        await asyncio.wait({run, stop}, return_when=asyncio.FIRST_COMPLETED)
        if not run.done():
            run.cancel()
        await asyncio.wait({run})
    finally:
        for task in (stop, reporter):
            task.cancel()
        await asyncio.wait({stop, reporter})
    samples = None if run.cancelled() else run.result()  # an exception is raised here
    await pipes.send(worker.progress())
    part = samples.part() if samples is not None else None
    await pipes.send(Finished(part, time.perf_counter(), time.process_time() - cpu))


async def serve(stdin: BinaryIO, out: BinaryIO) -> int:
    pipes = await _pipes(stdin, out)
    task = await read_message(pipes.reader)
    if not isinstance(task, WorkerTask):
        raise TypeError(f"expected a WorkerTask, got {type(task).__name__}")
    worker = _Worker(task)
    status = 0
    try:
        async with worker.engine:
            gc.collect()
            gc.freeze()  # as the server does after start-up: no long collections mid-run
            await pipes.send(Ready(os.getpid()))
            await _work(worker, pipes)
    except (BrokenPipeError, ConnectionResetError, EOFError):
        status = 1  # the job's process is gone: nobody to report to
    except Exception as exc:
        logger.exception("worker failed")
        with contextlib.suppress(OSError):
            await pipes.send(Failed(f"{type(exc).__name__}: {exc}"))
        status = 1
    finally:
        grace_ms = int(task.settings.shutdown_grace_seconds * 1000)
        worker.provider.force_flush(grace_ms // 2)  # the rest of the grace: draining
        worker.provider.shutdown()
        await pipes.close(timeout=grace_ms / 2000)
    return status


def main() -> None:
    out = os.fdopen(os.dup(1), "wb", buffering=0)
    os.dup2(2, 1)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s %(message)s")
    stdin = os.fdopen(0, "rb", buffering=0)
    sys.exit(uvloop.run(serve(stdin, out)))


if __name__ == "__main__":
    main()
