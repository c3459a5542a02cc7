"""``GET /v1/topology``: the service as a graph, over the window ``/metrics/json`` takes.

Kept beside ``routes.py`` rather than in it: the route reads the same source through the same
runtime, with the same ``window`` and ``at`` (their grammar and bounds are ``routes.py``'s own
checks, reused), and adds only the graph, built by :mod:`exporter.topology`.
"""

from __future__ import annotations

import time

from fastapi import APIRouter

from exporter.routes import BACKEND_DOWN, AtParam, RuntimeDep, WindowParam, _evaluated
from exporter.runtime import ExporterRuntime
from exporter.topology import build_topology
from exporter.translate import iso
from failure_lab.topology import Topology

router = APIRouter(tags=["read"])


async def topology_at(runtime: ExporterRuntime, window_seconds: float, at: float) -> Topology:
    """The topology of the window that ends at unix time ``at``."""
    answers = await runtime.topology(window_seconds, at)
    return build_topology(
        answers,
        window_seconds=window_seconds,
        timestamp=iso(round(at * 1000) * 1_000_000),
        source=runtime.metrics.name,
    )


@router.get(
    "/v1/topology",
    responses=BACKEND_DOWN,
    summary="The service as a graph: nodes and edges with rates, errors, p99 and status",
)
async def topology(runtime: RuntimeDep, window: WindowParam = None, at: AtParam = None) -> Topology:
    seconds, when = _evaluated(runtime, window, at)
    # Evaluated at an explicit instant, rounded to PromQL's milliseconds, and said in the
    # answer: asking again with ``at`` set to its timestamp gives the same figures.
    return await topology_at(runtime, seconds, round(time.time() if when is None else when, 3))
