"""HTTP methods as RFC 9110 has them, which FastAPI's routing does not quite do.

FastAPI registers one route per decorated method, so Starlette's 405 names only the methods of
the first route whose path matched (a ``PUT`` to a GET/PUT path is fine, an ``OPTIONS`` to it
was answered ``Allow: GET``). :func:`allowed_methods` collects the methods of every route of
the path for the 405 answer (:mod:`failure_lab.http_errors`). And FastAPI routes do not answer
``HEAD``: :class:`HeadAsGet` answers it on every GET route as that GET without its body.
"""

from __future__ import annotations

from typing import Final

from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

METHODS: Final = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
"""The methods a route of either app may answer, in the order ``Allow`` lists them."""


def allowed_methods(routes: list[BaseRoute], scope: Scope) -> list[str]:
    """Every method some route of ``scope``'s path answers fully, HEAD with GET.

    Each method is asked of the routes' own ``matches`` (included routers nest their routes,
    so reading a route's ``methods`` would miss them)."""
    allowed = [
        method
        for method in METHODS
        if any(route.matches({**scope, "method": method})[0] is Match.FULL for route in routes)
    ]
    if "GET" in allowed and "HEAD" not in allowed:
        allowed.insert(allowed.index("GET") + 1, "HEAD")
    return allowed


class HeadAsGet:
    """``HEAD`` is served as ``GET``; the answer keeps its headers and loses its body."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "HEAD":
            await self.app(scope, receive, send)
            return

        async def without_body(message: Message) -> None:
            if message["type"] == "http.response.body":
                message = {**message, "body": b""}
            await send(message)

        await self.app({**scope, "method": "GET"}, receive, without_body)
