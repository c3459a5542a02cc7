"""``failure-lab demo``: the embedded server, a scripted fault, and a live terminal view.

The script is a client of the same contract users call (``PUT /v1/config/failure``,
``POST /v1/traffic/generate``, ``/metrics/json``, ``/v1/requests/recent``), so what the
view shows is what any client would see. Steady traffic runs for the whole demo; a third
of the way in the database starts failing and slows down, two thirds in it recovers.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass
from typing import Any

import httpx
from rich.console import Console, Group
from rich.live import Live
from rich.panel import Panel
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from exporter.sampling import SampleRing
from simulator.app import create_app
from simulator.server import server_for
from simulator.settings import Settings

HEALTHY: dict[str, Any] = {
    "failure_injection_enabled": False,
    "failure_rate": 0.0,
    "db_latency_min_ms": 5,
    "db_latency_max_ms": 20,
    "db_timeout_seconds": 0.25,
    "redis_timeout_seconds": 0.05,
    "max_retries": 3,
}
FAULT: dict[str, Any] = {
    **HEALTHY,
    "failure_injection_enabled": True,
    "failure_rate": 0.3,
    "db_latency_min_ms": 40,
    "db_latency_max_ms": 320,
}
PAYLOAD: dict[str, Any] = {
    "rate_of_requests": 50,
    "number_of_requests": 1,
    "retries_enabled": True,
    "rate_limiting": 0,
    "rate_limiting_algo": "token_bucket",
    "cache_enabled": True,
    "cache_ttl": 2,
    "db_latency": 0,
}
VIEW_WINDOW = "5s"


@dataclass(frozen=True)
class Phase:
    name: str
    starts_at: float
    config: dict[str, Any]
    story: str


@dataclass
class PhaseFigures:
    requests: float = 0.0
    error_rate: float = 0.0
    p99: float = 0.0


def phases(seconds: float) -> list[Phase]:
    third = seconds / 3
    return [
        Phase("steady", 0.0, HEALTHY, "healthy database, 5-20 ms"),
        Phase("fault", third, FAULT, "30% of queries fail, 40-320 ms, 250 ms timeout"),
        Phase("recovery", 2 * third, HEALTHY, "database healthy again"),
    ]


def _view(
    phase: Phase,
    progress: Progress,
    status: dict[str, Any],
    figures: dict[str, Any],
    hit_ratio: float | None,
) -> Group:
    table = Table.grid(padding=(0, 3))
    table.add_column(style="bold")
    table.add_column(justify="right")
    target = status.get("target_rps") or 0.0
    achieved = status.get("achieved_rps") or 0.0
    table.add_row("phase", f"[cyan]{phase.name}[/]: {phase.story}")
    table.add_row("rate (target / achieved)", f"{target:.0f} / {achieved:.1f} req/s")
    table.add_row(
        "sent / failed / late",
        f"{status.get('count', 0)} / {status.get('failed', 0)} / {status.get('late_sends', 0)}",
    )
    error_rate = figures.get("error_rate", 0.0)
    colour = "red" if error_rate > 0.05 else "green"
    table.add_row(f"error rate ({VIEW_WINDOW})", f"[{colour}]{error_rate:.1%}[/]")
    table.add_row(
        f"p95 / p99 ({VIEW_WINDOW})",
        f"{figures.get('p95_latency', 0):.1f} / {figures.get('p99_latency', 0):.1f} ms",
    )
    table.add_row(f"retries ({VIEW_WINDOW})", f"{figures.get('retry_count', 0):.0f}")
    table.add_row("cache hit ratio", "-" if hit_ratio is None else f"{hit_ratio:.0%}")
    return Group(Panel(table, title="failure-lab demo", border_style="blue"), progress)


def _hit_ratio(ring: SampleRing) -> float | None:
    by_result = ring.rate(
        "failure_lab_cache_requests_total", 5.0, {"operation": "get"}, by=("result",)
    )
    total = sum(by_result.values())
    return by_result.get(("hit",), 0.0) / total if total > 0 else None


async def run_demo(settings: Settings, seconds: float, rps: float, console: Console) -> int:
    app = create_app(settings)
    server = server_for(
        app, settings.host, settings.port, settings.shutdown_grace_seconds, log_level="warning"
    )
    serving = asyncio.create_task(server.serve())
    while not server.started:
        if serving.done():
            serving.result()
            return 1
        await asyncio.sleep(0.02)
    base = f"http://127.0.0.1:{settings.port}"
    plan = phases(seconds)
    per_phase: dict[str, PhaseFigures] = {}
    try:
        async with httpx.AsyncClient(base_url=base, timeout=30) as http:
            await _checked(http.put("/v1/config/failure", json=HEALTHY))
            await _checked(
                http.post(
                    "/v1/traffic/generate",
                    json={
                        "mode": "sustained",
                        "rps": rps,
                        "duration": seconds,
                        "payload": {**PAYLOAD, "rate_of_requests": rps},
                    },
                )
            )
            ring: SampleRing = app.state.exporter_shim.ring
            progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                TimeRemainingColumn(),
                console=console,
            )
            task = progress.add_task("demo", total=seconds)
            started = time.monotonic()
            current = plan[0]
            with Live(console=console, refresh_per_second=4, transient=False) as live:
                while (elapsed := time.monotonic() - started) < seconds + 0.5:
                    due = [p for p in plan if p.starts_at <= elapsed][-1]
                    if due is not current:
                        per_phase[current.name] = await _phase_figures(http, current, elapsed)
                        await _checked(http.put("/v1/config/failure", json=due.config))
                        current = due
                    status = (await http.get("/v1/traffic/status")).json()
                    figures = (
                        await http.get("/metrics/json", params={"window": VIEW_WINDOW})
                    ).json()
                    progress.update(
                        task, completed=min(elapsed, seconds), description=f"{current.name:>8}"
                    )
                    live.update(_view(current, progress, status, figures, _hit_ratio(ring)))
                    await asyncio.sleep(0.25)
            per_phase[current.name] = await _phase_figures(http, current, seconds)
            await _summary(http, console, per_phase)
    finally:
        server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await serving
    return 0


async def _checked(call: Any) -> httpx.Response:
    response: httpx.Response = await call
    response.raise_for_status()
    return response


async def _phase_figures(http: httpx.AsyncClient, phase: Phase, now: float) -> PhaseFigures:
    window = max(2.0, now - phase.starts_at)
    data = (await http.get("/metrics/json", params={"window": f"{window:.0f}s"})).json()
    return PhaseFigures(
        requests=data["request_rate"] * window,
        error_rate=data["error_rate"],
        p99=data["p99_latency"],
    )


async def _summary(
    http: httpx.AsyncClient, console: Console, per_phase: dict[str, PhaseFigures]
) -> None:
    table = Table(title="per phase (from /metrics/json)")
    for column in ("phase", "requests", "error rate", "p99 ms"):
        table.add_column(column, justify="right")
    for name, figures in per_phase.items():
        table.add_row(
            name, f"{figures.requests:.0f}", f"{figures.error_rate:.1%}", f"{figures.p99:.1f}"
        )
    console.print(table)
    recent = (await http.get("/v1/requests/recent", params={"limit": 1000})).json()
    slowest = sorted(recent, key=lambda r: r["latency_ms"], reverse=True)[:5]
    failed = [r for r in recent if r["status"] >= 500][:5]
    for title, rows in (("slowest requests", slowest), ("failed requests", failed)):
        listing = Table(title=title)
        listing.add_column("request_id", no_wrap=True, min_width=36)
        for column in ("status", "latency ms", "retries", "endpoint"):
            listing.add_column(column, no_wrap=True)
        for row in rows:
            listing.add_row(
                row["request_id"],
                str(row["status"]),
                f"{row['latency_ms']:.1f}",
                str(row["retry_count"]),
                f"{row['method']} {row['endpoint']}",
            )
        console.print(listing)
    if failed or slowest:
        chosen = (failed or slowest)[0]
        body = (await http.get(f"/v1/trace/{chosen['request_id']}")).json()
        events = Table(title=f"trace of {chosen['request_id']} (GET /v1/trace/{{request_id}})")
        for column in ("time", "event", "details"):
            events.add_column(column)
        for event in body["trace"]["events"]:
            details = {k: v for k, v in event["metadata"].items() if k not in ("span_id",)}
            events.add_row(
                event["timestamp_wall"][11:23],
                event["event_type"],
                ", ".join(f"{k}={v}" for k, v in details.items()),
            )
        console.print(events)
        console.print(
            f"{body['event_count']} events, {len(body['failure_points'])} failure "
            f"points, {len(body['retry_attempts'])} retry attempts"
        )
