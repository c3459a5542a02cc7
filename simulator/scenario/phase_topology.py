"""Each phase's topology, read after the phase like its figures and handed to the observer.

The runner calls :func:`show_phase_topology` once per phase report, with the window its
figures were read over (``/metrics/json?window=&at=``), so the drawing and the numbers in the
report describe the same seconds. Best effort: a target that has no ``/v1/topology``, or whose
metrics source fails this once, draws nothing and the run goes on.
"""

from __future__ import annotations

from typing import Protocol

import httpx
from pydantic import ValidationError

from failure_lab.topology import Topology
from simulator.scenario.report import PhaseReport


class TopologyObserver(Protocol):
    def topology(self, phase: str, topology: Topology) -> None: ...


async def show_phase_topology(
    http: httpx.AsyncClient, observer: TopologyObserver, report: PhaseReport
) -> None:
    """Ask for the phase's topology and give it to ``observer``."""
    service = report.service
    params = {
        "window": f"{service.window_seconds:.3f}",
        "at": f"{service.window_end.timestamp():.3f}",
    }
    try:
        answer = await http.get("/v1/topology", params=params)
        if answer.status_code != 200:
            return
        topology = Topology.model_validate_json(answer.content)
    except (httpx.HTTPError, ValidationError):
        return
    observer.topology(report.name, topology)
