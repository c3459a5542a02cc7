"""Disruptions: create, list, read, cancel and clear time-boxed faults.

The registry does the work and raises the project's errors (unknown id 404, too many
active 409); this module checks the bounds (duration above its cap: 422) and maps HTTP onto
it. Disruptions
live in this process: each replica has its own and a restart clears them.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Path

from failure_lab.bounds import check_bounds
from failure_lab.control import Disruption, DisruptionList, DisruptionRequest, DisruptionsCleared
from failure_lab.openapi import errors
from simulator.api.deps import RuntimeDep

router = APIRouter(prefix="/v1/disruptions", tags=["disruptions"])
BY_ID = {"disruption_id": "$response.body#/disruption_id"}
DisruptionId = Annotated[
    UUID,
    Path(description="32 hex digits (or the UUID with dashes); a path that is none is no route"),
]
"""Ids are UUIDs, and only a UUID is routed here: ``/clear-all`` is never taken for one."""


@router.post(
    "",
    status_code=201,
    responses={
        201: {
            "links": {
                "GetDisruption": {"operationId": "get_disruption", "parameters": BY_ID},
                "CancelDisruption": {"operationId": "cancel_disruption", "parameters": BY_ID},
            }
        },
        **errors((409, "FAILURE_LAB_MAX_ACTIVE_DISRUPTIONS are active")),
    },
    summary="Start a disruption; it reverts by itself",
)
async def create_disruption(body: DisruptionRequest, runtime: RuntimeDep) -> Disruption:
    check_bounds(body, runtime.settings)
    return runtime.disruptions.create(body)


@router.get("", summary="The active disruptions, with time remaining and requests affected")
async def list_disruptions(runtime: RuntimeDep) -> DisruptionList:
    active = runtime.disruptions.list_active()
    return DisruptionList(disruptions=active, count=len(active), timestamp=datetime.now(UTC))


@router.post("/clear-all", summary="Cancel every active disruption")
async def clear_disruptions(runtime: RuntimeDep) -> DisruptionsCleared:
    cleared = runtime.disruptions.clear()
    return DisruptionsCleared(
        cleared=len(cleared),
        message=f"cleared {len(cleared)} active disruptions",
        disruptions=cleared,
    )


@router.get(
    "/{disruption_id:uuid}",
    operation_id="get_disruption",
    responses=errors((404, "unknown, or ended long ago")),
    summary="One disruption, active or recently ended",
)
async def get_disruption(disruption_id: DisruptionId, runtime: RuntimeDep) -> Disruption:
    return runtime.disruptions.get(disruption_id.hex)


@router.delete(
    "/{disruption_id:uuid}",
    operation_id="cancel_disruption",
    responses=errors((404, "unknown, or ended long ago"), (409, "it has already ended")),
    summary="Cancel an active disruption",
)
async def cancel_disruption(disruption_id: DisruptionId, runtime: RuntimeDep) -> Disruption:
    return runtime.disruptions.cancel(disruption_id.hex)
