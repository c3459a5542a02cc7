"""``/`` and ``/docs`` of both apps: where to go from the port someone just opened.

A person who opens ``http://localhost:8000`` gets a page naming what is there (the API
documentation, the live feed, the metrics, health) and, in stack mode, Grafana's dashboards
and Jaeger at the URLs a browser on the host reaches them by (``FAILURE_LAB_GRAFANA_URL``,
``FAILURE_LAB_JAEGER_UI_URL``). ``/docs`` and ``/redoc`` work offline: their JavaScript and
CSS come from the ``fastapi-offline`` package (Swagger UI 5, which renders the OpenAPI 3.1
that FastAPI writes), served here instead of from a CDN.
"""

from __future__ import annotations

import html
from importlib import resources
from typing import Final, Literal

from fastapi import FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

from failure_lab.settings import Settings

ASSETS: Final = "/docs-assets"
Role = Literal["serve", "simulator", "exporter"]
TITLES: Final[dict[Role, str]] = {
    "serve": "failure-lab serve: the simulated service and the whole contract",
    "simulator": "failure-lab simulator: the simulated service of the stack",
    "exporter": "failure-lab exporter: the stack's contract on Prometheus and Jaeger",
}


def _link(href: str, text: str, why: str) -> str:
    return f'<li><a href="{html.escape(href)}">{html.escape(text)}</a>: {html.escape(why)}</li>'


def home_page(settings: Settings, role: Role) -> str:
    """The page at ``/``."""
    items = [
        _link("/docs", "API documentation", "every route, with a form to try it (/redoc too)"),
        _link("/openapi.json", "OpenAPI document", "the same, for tools"),
        _link("/metrics", "/metrics", "Prometheus exposition of this process's registry"),
    ]
    if role != "simulator":
        items += [
            _link("/metrics/json?window=1m", "/metrics/json?window=1m",
                  "the service's rate, errors, retries and p95/p99 over the last minute"),
            _link("/v1/requests/recent?limit=20", "recent requests",
                  "each one's id is its trace: /v1/trace/{request_id}"),
            _link("/health", "/health", "each backend as this process sees it"),
            "<li>the live feed: a WebSocket at <code>/ws</code> (metrics every second, each "
            "request, each trace; described in docs/api.md)</li>",
        ]  # fmt: skip
    if settings.grafana_url:
        items.append(_link(f"{settings.grafana_url.rstrip('/')}/dashboards", "Grafana",
                           "the dashboards, folder failure-lab"))  # fmt: skip
    if settings.jaeger_ui_url:
        search = f"{settings.jaeger_ui_url.rstrip('/')}/search?service={settings.service_name}"
        items.append(_link(search, "Jaeger", f"traces of service {settings.service_name}"))
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>failure-lab</title>'
        "<style>body{font-family:system-ui,sans-serif;max-width:50em;margin:2em auto;"
        "padding:0 1em;line-height:1.5}</style></head><body>"
        f"<h1>failure-lab</h1><p>{html.escape(TITLES[role])}.</p><ul>{''.join(items)}</ul>"
        "<p>Run an experiment against it: <code>failure-lab run demo --target "
        "http://HOST:PORT</code> (<code>failure-lab scenarios</code> lists them).</p>"
        "</body></html>"
    )


def install_home(app: FastAPI, settings: Settings, role: Role) -> None:
    """``/``, and ``/docs`` and ``/redoc`` served offline; the app is built with
    ``docs_url=None, redoc_url=None``."""
    static = resources.files("fastapi_offline") / "static"
    app.mount(ASSETS, StaticFiles(directory=str(static)), name="docs-assets")
    page = home_page(settings, role)
    openapi = app.openapi_url or "/openapi.json"

    @app.get("/", include_in_schema=False)
    async def home() -> HTMLResponse:
        return HTMLResponse(page)

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=openapi,
            title=f"{app.title}: API documentation",
            swagger_js_url=f"{ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{ASSETS}/favicon.png",
        )

    @app.get("/redoc", include_in_schema=False)
    async def redoc() -> HTMLResponse:
        return get_redoc_html(
            openapi_url=openapi,
            title=f"{app.title}: API reference",
            redoc_js_url=f"{ASSETS}/redoc.standalone.js",
            redoc_favicon_url=f"{ASSETS}/favicon.png",
            with_google_fonts=False,
        )
