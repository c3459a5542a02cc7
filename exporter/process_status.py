"""What ``/v1/status`` says about the process serving it: memory, GC, event-loop lag, files.

The same figures Prometheus scrapes from ``/metrics`` (prometheus-client's process and GC
collectors, registered by both apps, and ``failure_lab_event_loop_lag_seconds``), read here
from the same places so the two never disagree: resident memory and open file descriptors
from ``/proc`` through the process collector (None where there is no ``/proc``), collections
per GC generation from ``gc.get_stats()``, the loop lag from the process's sampler.
"""

from __future__ import annotations

import gc
from typing import Final

from prometheus_client.process_collector import ProcessCollector
from pydantic import BaseModel, Field

from failure_lab.loop_lag import LoopLag

MEBIBYTE: Final = 1024 * 1024
_PROCESS: Final = ProcessCollector(registry=None)


class EventLoopLag(BaseModel):
    p99_ms: float | None = Field(description="99th percentile of the lag over the window.")
    max_ms: float | None
    samples: int = Field(description="Measurements in the window.")
    window_seconds: float
    interval_seconds: float = Field(description="How long the measuring task sleeps.")


class ProcessFigures(BaseModel):
    memory_usage_mb: float | None = Field(description="Resident memory, MiB.")
    open_file_descriptors: int | None
    gc_collections: dict[str, int] = Field(description="Collections so far, by GC generation.")
    event_loop_lag: EventLoopLag | None = Field(description="None while nothing measures it.")


def process_figures(loop_lag: LoopLag | None) -> ProcessFigures:
    """This process's figures now."""
    samples = {
        sample.name: sample.value for family in _PROCESS.collect() for sample in family.samples
    }
    resident = samples.get("process_resident_memory_bytes")
    descriptors = samples.get("process_open_fds")
    lag = loop_lag.summary() if loop_lag is not None else None
    return ProcessFigures(
        memory_usage_mb=None if resident is None else round(resident / MEBIBYTE, 3),
        open_file_descriptors=None if descriptors is None else int(descriptors),
        gc_collections={
            str(generation): int(stats["collections"])
            for generation, stats in enumerate(gc.get_stats())
        },
        event_loop_lag=None
        if lag is None
        else EventLoopLag(
            p99_ms=lag.p99_ms,
            max_ms=lag.max_ms,
            samples=lag.samples,
            window_seconds=lag.window_seconds,
            interval_seconds=lag.interval_seconds,
        ),
    )
