"""The bounded batch processor: every span exported, failed or dropped, and ``finish`` keeps
its timeout whatever the exporter does."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from simulator.telemetry.span_export import BoundedBatchProcessor, ExportReport


class Collector(SpanExporter):
    """Answers each export with ``result``; ``gate`` (when given) holds every export until
    it is set, as a collector that never answers would."""

    def __init__(
        self,
        result: SpanExportResult = SpanExportResult.SUCCESS,
        gate: threading.Event | None = None,
    ) -> None:
        self.result = result
        self.gate = gate
        self.batches: list[int] = []
        self.shut_down = False
        self.exporting = threading.Event()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.exporting.set()
        if self.gate is not None:
            self.gate.wait()
        self.batches.append(len(spans))
        return self.result

    def shutdown(self) -> None:
        self.shut_down = True


def processor_for(
    exporter: SpanExporter, dropped: list[tuple[str, int]], queue: int = 100
) -> tuple[BoundedBatchProcessor, TracerProvider]:
    processor = BoundedBatchProcessor(
        exporter,
        lambda reason, count: dropped.append((reason, count)),
        queue_size=queue,
        batch_size=10,
        delay_s=60.0,  # only a full batch, a flush or the end sends anything
    )
    provider = TracerProvider()
    provider.add_span_processor(processor)
    return processor, provider


def spans(provider: TracerProvider, count: int) -> None:
    tracer = provider.get_tracer("test")
    for i in range(count):
        tracer.start_span(f"span-{i}").end()


def test_every_span_is_exported_in_batches_on_a_flush() -> None:
    collector, dropped = Collector(), []
    processor, provider = processor_for(collector, dropped)
    spans(provider, 25)
    assert processor.force_flush(5_000)
    assert sum(collector.batches) == 25
    assert max(collector.batches) == 10
    report = processor.finish(1.0)
    assert report == ExportReport(exported=25, export_failed=0, queue_full=0, shutdown=0)
    assert collector.shut_down
    assert dropped == []


def test_a_full_queue_and_a_refusing_collector_are_counted() -> None:
    gate = threading.Event()
    collector, dropped = Collector(SpanExportResult.FAILURE, gate), []
    processor, provider = processor_for(collector, dropped, queue=15)
    spans(provider, 10)  # a full batch: taken by the export thread, which waits at the gate
    assert collector.exporting.wait(5)
    spans(provider, 20)  # 15 wait, 5 find the queue full
    gate.set()
    assert processor.force_flush(5_000)
    report = processor.finish(1.0)
    assert report.queue_full == 5
    assert report.export_failed == 25
    assert report.exported == 0
    assert ("queue_full", 1) in dropped
    assert sum(count for reason, count in dropped if reason == "export_failed") == 25


def test_finish_keeps_its_timeout_against_a_collector_that_never_answers() -> None:
    gate = threading.Event()
    collector, dropped = Collector(gate=gate), []
    processor, provider = processor_for(collector, dropped)
    spans(provider, 35)
    started = time.monotonic()
    report = processor.finish(0.5)
    took = time.monotonic() - started
    assert 0.5 <= took < 1.5
    assert report == ExportReport(exported=0, export_failed=0, queue_full=0, shutdown=35)
    assert dropped == [("shutdown", 35)]
    spans(provider, 3)  # after the end: dropped at once
    assert processor.report().shutdown == 38
    gate.set()  # the abandoned export returns late: it is not counted twice
    time.sleep(0.1)
    assert processor.report().exported == 0
    provider.shutdown()  # already finished: returns at once
