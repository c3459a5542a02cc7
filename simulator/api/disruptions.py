"""Disruptions (seed 002): create, list, read, cancel and clear time-boxed faults.

The registry does the work and raises the project's errors (unknown id 404, too many
active 409, duration above its cap 422); this module only maps HTTP onto it. Disruptions
live in this process: each replica has its own and a restart clears them.
"""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter, Request

from simulator.disruptions import DisruptionRegistry
from simulator.models import Disruption, DisruptionList, DisruptionRequest, DisruptionsCleared

router = APIRouter(prefix="/v1/disruptions", tags=["disruptions"])


def _registry(request: Request) -> DisruptionRegistry:
    registry: DisruptionRegistry = request.app.state.runtime.disruptions
    return registry


@router.post("", status_code=201, summary="Start a disruption; it reverts by itself")
async def create_disruption(body: DisruptionRequest, request: Request) -> Disruption:
    return _registry(request).create(body)


@router.get("", summary="The active disruptions, with time remaining and requests affected")
async def list_disruptions(request: Request) -> DisruptionList:
    active = _registry(request).list_active()
    return DisruptionList(disruptions=active, count=len(active), timestamp=datetime.now(UTC))


@router.post("/clear-all", summary="Cancel every active disruption")
async def clear_disruptions(request: Request) -> DisruptionsCleared:
    cleared = _registry(request).clear()
    return DisruptionsCleared(
        cleared=len(cleared),
        message=f"cleared {len(cleared)} active disruptions",
        disruptions=cleared,
    )


@router.get("/{disruption_id}", summary="One disruption, active or recently ended")
async def get_disruption(disruption_id: str, request: Request) -> Disruption:
    return _registry(request).get(disruption_id)


@router.delete("/{disruption_id}", summary="Cancel an active disruption")
async def cancel_disruption(disruption_id: str, request: Request) -> Disruption:
    return _registry(request).cancel(disruption_id)
