"""``GET /v1/traffic/statistics``: cumulative totals of this process's traffic generator.

``/v1/traffic/status`` follows one generation and ``/metrics`` gives rates; this answers
"how much was sent, and what happened to it" since the process started, read
from the engine's tally. The handler is ``async`` on purpose: it runs on the event loop
that updates the tally, so the snapshot is consistent without locks.
"""

from __future__ import annotations

from fastapi import APIRouter

from failure_lab.control import TrafficStatistics
from failure_lab.control_routes import CONTROL
from simulator.api.deps import RuntimeDep

router = APIRouter(tags=["control"])


@router.api_route(**CONTROL["traffic_statistics"].route())
async def traffic_statistics(runtime: RuntimeDep) -> TrafficStatistics:
    return runtime.engine.tally.statistics(circuit_breaker_trips=runtime.breaker.trips)
