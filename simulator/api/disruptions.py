"""Disruptions: create, list, read, cancel and clear time-boxed faults.

The store does the work and raises the project's errors (unknown id 404, too many active
409, Redis down 503); this module checks the bounds (duration above its cap: 422) and maps
HTTP onto it. Without Redis disruptions live in this process (each replica has its own, a
restart clears them); with Redis every replica shares them (simulator/redis_disruptions.py).
The routes' paths, answers and documented errors are declared in failure_lab.control_routes.
"""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter

from failure_lab.bounds import check_bounds
from failure_lab.control import Disruption, DisruptionList, DisruptionRequest, DisruptionsCleared
from failure_lab.control_routes import CONTROL, DisruptionId
from simulator.api.deps import RuntimeDep

router = APIRouter(tags=["disruptions"])


@router.api_route(**CONTROL["create_disruption"].route())
async def create_disruption(body: DisruptionRequest, runtime: RuntimeDep) -> Disruption:
    check_bounds(body, runtime.settings)
    return await runtime.disruptions.create(body)


@router.api_route(**CONTROL["list_disruptions"].route())
async def list_disruptions(runtime: RuntimeDep) -> DisruptionList:
    active = await runtime.disruptions.list_active()
    return DisruptionList(disruptions=active, count=len(active), timestamp=datetime.now(UTC))


@router.api_route(**CONTROL["clear_disruptions"].route())
async def clear_disruptions(runtime: RuntimeDep) -> DisruptionsCleared:
    cleared = await runtime.disruptions.clear()
    return DisruptionsCleared(
        cleared=len(cleared),
        message=f"cleared {len(cleared)} active disruptions",
        disruptions=cleared,
    )


@router.api_route(**CONTROL["get_disruption"].route())
async def get_disruption(disruption_id: DisruptionId, runtime: RuntimeDep) -> Disruption:
    return await runtime.disruptions.get(disruption_id.hex)


@router.api_route(**CONTROL["cancel_disruption"].route())
async def cancel_disruption(disruption_id: DisruptionId, runtime: RuntimeDep) -> Disruption:
    return await runtime.disruptions.cancel(disruption_id.hex)
