"""``failure-lab demo`` runs to its summary: phases, slowest and failed requests, a trace."""

from __future__ import annotations

import io
import re

from rich.console import Console

from simulator.demo import phases, run_demo
from simulator.settings import Settings
from tests.support.servers import free_port


def test_phases_split_the_run_in_thirds() -> None:
    plan = phases(60)
    assert [(p.name, p.starts_at) for p in plan] == [
        ("steady", 0.0),
        ("fault", 20.0),
        ("recovery", 40.0),
    ]
    assert plan[1].config["failure_injection_enabled"] is True
    assert plan[2].config == plan[0].config


async def test_a_short_demo_prints_its_summary() -> None:
    out = io.StringIO()
    console = Console(file=out, width=160, force_terminal=False)
    code = await run_demo(Settings(port=free_port()), seconds=6, rps=40, console=console)
    text = out.getvalue()
    assert code == 0
    assert "per phase (from /metrics/json)" in text
    rows = {m.group(1): m for m in re.finditer(r"(steady|fault|recovery)\s*│\s*(\d+)", text)}
    assert set(rows) == {"steady", "fault", "recovery"}
    assert "slowest requests" in text
    assert "failed requests" in text
    assert re.search(r"trace of [0-9a-f-]{36}", text)
    assert "retry attempts" in text
