"""``failure-lab run`` against a target: Ctrl-C mid-run, and a target already busy.

The run is a real subprocess sent a real SIGINT; the target is a lab served by the test, so
the test can see that the service was put back as it was found.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from pathlib import Path

import pytest

from failure_lab.control import FailureConfig
from tests.support.labs import running_lab

pytestmark = pytest.mark.timeout(120)
CLI = str(Path(sys.executable).parent / "failure-lab")

LONG = """\
name: long
phases:
  - {name: warmup, scenario: normal, duration: 2, max_rps: 20}
  - name: outage
    scenario: normal
    duration: 30
    max_rps: 20
    failure_config: {failure_injection_enabled: true, failure_rate: 0.2}
    disruptions:
      - {at: 0, type: db_latency_spike, severity: 0.05, duration: 30}
checks:
  - {phase: warmup, metric: error_rate, below: 0.01}
  - {phase: outage, metric: error_rate, below: 0.5}
"""

SHORT = """\
name: short
phases:
  - {name: only, scenario: normal, duration: 1, max_rps: 10}
"""


async def test_ctrl_c_writes_the_finished_phases_and_restores_the_service(tmp_path: Path) -> None:
    scenario = tmp_path / "long.yaml"
    scenario.write_text(LONG)
    report = tmp_path / "long-report.json"
    async with running_lab() as lab:
        before = (await lab.http.get("/v1/config/failure")).json()
        process = await asyncio.create_subprocess_exec(
            CLI, "run", str(scenario), "--target", str(lab.http.base_url), "--report",
            str(report), "--settle", "0.5",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        assert process.stdout is not None
        seen: list[str] = []
        while not any(line.startswith("  disruption outage") for line in seen):
            line = await asyncio.wait_for(process.stdout.readline(), 30)
            assert line, "".join(seen)
            seen.append(line.decode())
        await asyncio.sleep(1.0)  # the outage phase is under way
        process.send_signal(signal.SIGINT)
        rest, _ = await asyncio.wait_for(process.communicate(), 60)
        output = "".join(seen) + rest.decode()
        assert process.returncode == 130, output
        assert (await lab.http.get("/v1/config/failure")).json() == before
        assert (await lab.http.get("/v1/disruptions")).json()["count"] == 0
        jobs = (await lab.http.get("/v1/traffic/jobs")).json()
        assert [job["status"] for job in jobs] == ["cancelled", "completed"]
    assert FailureConfig.model_validate(before) == FailureConfig.defaults()
    written = json.loads(report.read_text())
    assert (written["verdict"], written["interrupted"]) == ("interrupted", True)
    assert [phase["name"] for phase in written["phases"]] == ["warmup"]
    assert written["whole_run"] is None
    assert [check["phase"] for check in written["checks"]] == ["warmup"]
    assert report.with_suffix(".html").exists()
    assert "verdict: INTERRUPTED after 1 finished phase(s)" in output
    assert f"report: {report}" in output


async def test_a_busy_target_is_named_before_the_run(tmp_path: Path) -> None:
    scenario = tmp_path / "short.yaml"
    scenario.write_text(SHORT)
    async with running_lab() as lab:
        blocker = await lab.http.post(
            "/v1/traffic/jobs", json={"scenario": "normal", "duration": 30, "max_rps": 1}
        )
        disruption = await lab.http.post(
            "/v1/disruptions",
            json={"type": "cache_outage", "severity": 0.1, "duration_seconds": 30},
        )
        job_id = blocker.json()["job_id"]
        process = await asyncio.create_subprocess_exec(
            CLI, "run", str(scenario), "--target", str(lab.http.base_url).removeprefix("http://"),
            "--report", str(tmp_path / "r.json"), "--settle", "0.5",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        out, _ = await asyncio.wait_for(process.communicate(), 60)
        await lab.http.post(f"/v1/traffic/jobs/{job_id}/stop")
        await lab.http.delete(f"/v1/disruptions/{disruption.json()['disruption_id']}")
    text = out.decode()
    assert process.returncode == 0, text
    base = str(lab.http.base_url).rstrip("/")
    assert (
        f"warning {base} already runs 1 job(s) not of this run ({job_id[:8]} at 1 req/s): "
        "their requests count in the service's figures"
    ) in text
    assert f"warning {base} has 1 active disruption(s) not of this run (cache_outage)" in text
