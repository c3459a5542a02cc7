"""``GET /metrics`` for an app-owned registry, served on the path itself.

``prometheus_client.make_asgi_app()`` mounted at ``/metrics`` answers 307 to ``/metrics/``;
this route answers directly, in OpenMetrics (with exemplars) when the scraper asks for it.
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder


def metrics_router(registry: CollectorRegistry) -> APIRouter:
    router = APIRouter()

    @router.get("/metrics", include_in_schema=False)
    async def prometheus_metrics(request: Request) -> Response:
        encoder, content_type = choose_encoder(request.headers.get("accept", ""))
        return Response(encoder(registry), media_type=content_type)

    return router
