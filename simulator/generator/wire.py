"""What a job's process and its worker processes say to each other, and how it is framed.

The parent writes a ``WorkerTask`` to a worker's stdin, then ``Start`` (one instant for all
workers, once every one is ``Ready``) or ``Stop``; the worker writes ``Ready``, a
``Progress`` every ``PROGRESS_INTERVAL_S``, and one last ``Finished`` (or ``Failed``) to its
own pipe. Each message is a pickle behind a 4-byte length: both ends are this program, in
processes one user started, over pipes no one else holds. Progress carries running totals,
not increments, so the parent takes the difference from the last one it applied.

Instants are ``time.perf_counter()`` values, which every process on the machine shares on
Linux (``CLOCK_MONOTONIC``): a worker's send times and the agreed start compare as they are.
"""

from __future__ import annotations

import asyncio
import pickle
import struct
from dataclasses import dataclass, field
from typing import Final

from failure_lab.settings import Settings
from simulator.generator.job_spec import JobSpec
from simulator.generator.metrics import MetricCounts
from simulator.generator.segments import Segment
from simulator.generator.stats import LiveCounts, SamplesPart
from simulator.generator.tally import TallyCounts
from simulator.telemetry.relay import ShippedSpan

PROGRESS_INTERVAL_S: Final = 0.25
_LENGTH: Final = struct.Struct(">I")


@dataclass(frozen=True, slots=True)
class WorkerTask:
    settings: Settings
    base_url: str
    spec: JobSpec
    segment: Segment
    job_id: str | None
    relay_spans: bool
    """Ship finished spans back (the parent keeps spans in-process)."""


@dataclass(frozen=True, slots=True)
class Start:
    at: float
    """The ``perf_counter`` instant of the schedule's offset 0."""


@dataclass(frozen=True, slots=True)
class Stop:
    """Stop scheduling, let requests in flight finish within the drain timeout, report."""


@dataclass(frozen=True, slots=True)
class Ready:
    pid: int


@dataclass(frozen=True, slots=True)
class Progress:
    live: LiveCounts
    current_rps: float
    in_flight: int
    target_rps: float
    tally: TallyCounts
    metrics: MetricCounts
    spans: list[ShippedSpan] = field(default_factory=list)
    """Spans finished since the last progress (only when asked to relay them)."""


@dataclass(frozen=True, slots=True)
class Finished:
    samples: SamplesPart | None
    """The run's samples; None when it was stopped."""
    ended: float
    cpu_seconds: float
    """CPU time the worker process used from the start instant on (its threads too)."""


@dataclass(frozen=True, slots=True)
class Failed:
    message: str


def frame(message: object) -> bytes:
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    return _LENGTH.pack(len(data)) + data


async def read_message(reader: asyncio.StreamReader) -> object:
    """The next message; ``EOFError`` when the other end closed its pipe."""
    try:
        head = await reader.readexactly(_LENGTH.size)
        (length,) = _LENGTH.unpack(head)
        return pickle.loads(await reader.readexactly(length))
    except asyncio.IncompleteReadError:
        raise EOFError("the pipe closed") from None
