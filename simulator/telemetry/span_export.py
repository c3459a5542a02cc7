"""Spans to the OTLP collector in batches, with every wait bounded and every loss counted.

The SDK's ``BatchSpanProcessor`` flushes at shutdown by exporting everything queued, one
batch after another, each waiting for the exporter; its ``force_flush`` ignores its timeout.
Against a collector that refuses or hangs, each batch costs the exporter's whole timeout and
the process took from 19 s to minutes to stop. This processor is the same queue and thread
with the bounds explicit:

- each export call is bounded by the exporter's own timeout (``span_export_timeout_seconds``,
  retries included);
- ``finish(timeout)`` exports what it can within ``timeout`` and drops the rest: what is still
  queued, and a batch whose export has not returned by then (the thread is a daemon, so an
  export stuck on a socket does not hold the process); then it shuts the exporter down, which
  ends its retry waits;
- a span ended while the queue is full, or after ``finish``, is dropped.

Every span is accounted for once: exported, failed to export (the collector refused it or
did not answer in time), or dropped (``queue_full``, ``shutdown``). Losses go to the
``failure_lab_tracing_spans_dropped_total`` counter by reason as they happen, and ``finish``
returns the totals for the shutdown log line.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

log = logging.getLogger(__name__)

Dropped = Callable[[str, int], None]
"""Told ``(reason, count)`` for spans that never reached the collector."""


@dataclass(frozen=True, slots=True)
class ExportReport:
    """What became of every span this processor was given."""

    exported: int
    export_failed: int
    queue_full: int
    shutdown: int

    @property
    def lost(self) -> int:
        return self.export_failed + self.queue_full + self.shutdown


class BoundedBatchProcessor(SpanProcessor):
    """Batches of at most ``batch_size`` sampled spans, exported on one thread at least every
    ``delay_s``; at most ``queue_size`` spans wait."""

    def __init__(
        self,
        exporter: SpanExporter,
        dropped: Dropped,
        *,
        queue_size: int,
        batch_size: int,
        delay_s: float,
    ) -> None:
        self._exporter = exporter
        self._dropped = dropped
        self._capacity = queue_size
        self._batch_size = batch_size
        self._delay = delay_s
        self._queue: deque[ReadableSpan] = deque()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._drained = threading.Event()
        self._drained.set()
        self._sending: list[ReadableSpan] = []
        self._closing = False
        self._stopped = False
        self._counts = {"exported": 0, "export_failed": 0, "queue_full": 0, "shutdown": 0}
        self._thread = threading.Thread(target=self._work, name="span-export", daemon=True)
        self._thread.start()

    # SpanProcessor

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        return None

    def on_end(self, span: ReadableSpan) -> None:
        if span.context is None or not span.context.trace_flags.sampled:
            return
        with self._lock:
            if self._closing:
                reason = "shutdown"
            elif len(self._queue) >= self._capacity:
                reason = "queue_full"
            else:
                self._queue.append(span)
                if self._drained.is_set():
                    self._drained.clear()
                if len(self._queue) >= self._batch_size:
                    self._wake.set()
                return
            self._counts[reason] += 1
        self._dropped(reason, 1)

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        """Export everything queued now; False when that took longer than the timeout."""
        if self._stopped:
            return False
        self._wake.set()
        return self._drained.wait(timeout_millis / 1000)

    def shutdown(self) -> None:
        """``finish`` with the SDK's default of 30 s, unless it was finished already."""
        if not self._stopped:
            self.finish(30.0)

    # The bounded end

    def finish(self, timeout: float) -> ExportReport:
        """Export what can be within ``timeout`` seconds, drop the rest; stop for good."""
        with self._lock:
            self._closing = True
        self._wake.set()
        self._drained.wait(max(0.0, timeout))
        with self._lock:
            self._stopped = True
            left = len(self._queue) + len(self._sending)
            self._queue.clear()
            self._sending = []  # an export still under way no longer counts
            self._counts["shutdown"] += left
        if left:
            self._dropped("shutdown", left)
        self._wake.set()
        try:
            self._exporter.shutdown()  # ends its retry waits and closes its connections
        except Exception:
            log.exception("the span exporter failed to shut down")
        return self.report()

    def report(self) -> ExportReport:
        with self._lock:
            return ExportReport(**self._counts)

    # The export thread

    def _work(self) -> None:
        while not self._stopped:
            self._wake.wait(self._delay)
            self._wake.clear()
            while (batch := self._take()) is not None:
                self._send(batch)
            with self._lock:
                if not self._queue and not self._sending:
                    self._drained.set()

    def _take(self) -> list[ReadableSpan] | None:
        with self._lock:
            if self._stopped or not self._queue:
                return None
            count = min(self._batch_size, len(self._queue))
            self._sending = [self._queue.popleft() for _ in range(count)]
            return self._sending

    def _send(self, batch: list[ReadableSpan]) -> None:
        started = time.monotonic()
        try:
            result = self._exporter.export(batch)
        except Exception:
            log.exception("exporting %d spans raised", len(batch))
            result = SpanExportResult.FAILURE
        with self._lock:
            if self._sending is not batch:
                return  # finish() gave up on it and counted it dropped
            self._sending = []
            outcome = "exported" if result is SpanExportResult.SUCCESS else "export_failed"
            self._counts[outcome] += len(batch)
        if outcome == "export_failed":
            self._dropped("export_failed", len(batch))
            log.warning(
                "%d spans not exported: the collector failed within %.1f s",
                len(batch),
                time.monotonic() - started,
            )
