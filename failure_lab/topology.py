"""The read contract's topology: the service as a graph of nodes and edges, with their figures.

``GET /v1/topology`` and the live feed's ``topology`` message answer a ``Topology``, and
``failure-lab run`` reads it back to draw each phase in the terminal, so the model lives here,
beside the contract's other answers, where the shim and the scenario runner both reach it.

The graph is the request path: traffic generator -> each replica of the simulator -> rate
limiter -> cache -> database, with the database's retries as an edge from the database to
itself. The status thresholds are part of the contract: a client may colour by them.
"""

from __future__ import annotations

from typing import Final, Literal

from pydantic import BaseModel, Field

NodeKind = Literal["generator", "service", "ratelimiter", "cache", "database"]
NodeStatus = Literal["healthy", "degraded", "down"]
BreakerState = Literal["off", "closed", "half_open", "open"]

DEGRADED_ERROR_RATE: Final = 0.01
"""A node whose error rate is above this share is at least degraded."""
DOWN_ERROR_RATE: Final = 0.5
"""A node whose error rate is above this share is down."""


class Thresholds(BaseModel):
    """The error rates above which a node is degraded, and down."""

    degraded_error_rate: float = DEGRADED_ERROR_RATE
    down_error_rate: float = DOWN_ERROR_RATE


class TopologyNode(BaseModel):
    id: str = Field(
        description="generator, simulator (simulator@<instance> per replica in "
        "stack mode), ratelimiter, cache, database"
    )
    kind: NodeKind
    title: str
    instance: str | None = Field(description="The replica's Prometheus instance label.")
    status: NodeStatus
    reasons: list[str] = Field(description="Why the status is not healthy, first reason first.")
    request_rate: float = Field(description="Operations per second the node handled.")
    error_rate: float = Field(description="Share of those that failed, 0..1 (0 without any).")
    p99_latency_ms: float | None = Field(description="None without observations, or no histogram.")
    hit_ratio: float | None = Field(description="Cache reads that hit, 0..1; cache node only.")
    faults: list[str] = Field(description="Active faults acting on the node.")
    breaker: BreakerState | None = Field(description="Database node only: the worst replica's.")
    backend: str | None = Field(description="redis or in-process: rate limiter and cache only.")


class TopologyEdge(BaseModel):
    id: str = Field(description="<source>-><target>")
    source: str
    target: str
    request_rate: float = Field(description="Calls per second from source to target.")
    error_rate: float = Field(description="Share of those calls that failed, 0..1.")
    retries_per_request: float | None = Field(
        description="Database retries per request the service answered; database edges only."
    )


class Topology(BaseModel):
    timestamp: str = Field(description="The window's end, ISO 8601 UTC.")
    window_seconds: float
    source: str = Field(description="The metrics source: prometheus or embedded.")
    thresholds: Thresholds
    nodes: list[TopologyNode]
    edges: list[TopologyEdge]
