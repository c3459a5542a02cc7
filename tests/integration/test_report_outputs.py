"""What a run leaves: the model held against the real service, the JSON progress stream, the
HTML report in a real Chromium, the plain output of a pipe, ``report`` and ``compare``.

One short run of each scenario below, in a subprocess as a person would start it (the
embedded default), serves several tests.
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from simulator.scenario import predict
from tests.support.chromium import open_offline, screenshot
from tests.support.png import distinct_colours

pytestmark = pytest.mark.timeout(240)
CLI = str(Path(sys.executable).parent / "failure-lab")
ANSI = re.compile(r"\x1b\[")

MODEL = """\
name: model-check
pipeline:
  cache_enabled: false
phases:
  - name: outage
    scenario: normal
    duration: 8
    max_rps: 60
    disruptions:
      - {at: 0, type: db_outage, severity: 0.5, duration: 8}
  - name: limited
    scenario: normal
    duration: 6
    max_rps: 50
    pipeline: {rate_limiting: 20, rate_limiting_algo: token_bucket}
  - name: cached
    scenario: normal
    duration: 6
    max_rps: 50
    endpoints: ["GET /api/v1/users/{id}"]
    pipeline: {cache_enabled: true, cache_ttl: 300}
  - name: hang
    scenario: normal
    duration: 6
    max_rps: 20
    failure_config: {db_timeout_seconds: 0.3}
    circuit_breaker: {enabled: true, failure_threshold: 5, open_seconds: 2}
    disruptions:
      - {at: 0, type: db_latency_spike, severity: 1, duration: 6}
checks:
  - {phase: outage, metric: retry_amplification, above: 1.3}
"""

PAIR = """\
name: pair
pipeline: {cache_enabled: false}
circuit_breaker: {enabled: BREAKER, failure_threshold: 5, open_seconds: 5}
failure_config: {db_timeout_seconds: 0.2}
phases:
  - {name: warmup, scenario: normal, duration: 2, max_rps: 20}
  - name: hang
    scenario: normal
    duration: 3
    max_rps: 20
    disruptions:
      - {at: 0, type: db_latency_spike, severity: 1, duration: 3}
checks:
  - {phase: hang, metric: error_rate, above: 0.5}
"""


@dataclass(frozen=True)
class Run:
    code: int
    stdout: str
    stderr: str
    report: dict[str, Any]
    json_path: Path
    html_path: Path


def run(folder: Path, name: str, text: str, *extra: str) -> Run:
    folder.mkdir(parents=True, exist_ok=True)
    scenario = folder / f"{name}.yaml"
    scenario.write_text(text)
    report = folder / f"{name}-report.json"
    done = subprocess.run(
        [CLI, "run", str(scenario), "--report", str(report), *extra],
        capture_output=True, text=True, timeout=200, cwd=folder,
    )  # fmt: skip
    assert report.exists(), done.stdout + done.stderr
    loaded = json.loads(report.read_text())
    return Run(
        done.returncode, done.stdout, done.stderr, loaded, report, report.with_suffix(".html")
    )


@pytest.fixture(scope="module")
def model_run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    return run(tmp_path_factory.mktemp("model"), "model-check", MODEL, "--output", "json")


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[Run, Run]:
    folder = tmp_path_factory.mktemp("pair")
    on = run(folder / "on", "pair", PAIR.replace("BREAKER", "true"))
    off = run(folder / "off", "pair", PAIR.replace("BREAKER", "false"))
    return on, off


def predictions(report: dict[str, Any], phase: str) -> dict[str, dict[str, Any]]:
    found = next(p for p in report["phases"] if p["name"] == phase)
    return {p["figure"]: p for p in found["predictions"]}


def test_retries_match_the_model_within_the_statistical_error(model_run: Run) -> None:
    outage = next(p for p in model_run.report["phases"] if p["name"] == "outage")
    service = outage["service"]
    requests = service["request_rate"] * service["window_seconds"]
    assert requests > 400
    # Each attempt fails with p = 0.5, 3 retries: 1 + p + p^2 + p^3 attempts, p^4 failures.
    sigma = math.sqrt(predict.retries_variance(0.5, 3) / requests)
    assert abs(service["retry_amplification"] - 1.875) <= 3 * sigma + 0.01
    error_sigma = math.sqrt(0.0625 * 0.9375 / requests)
    assert abs(service["error_rate"] - 0.0625) <= 3 * error_sigma + 0.005
    found = predictions(model_run.report, "outage")
    assert found["retry_amplification"]["predicted"] == pytest.approx(1.875, abs=1e-6)
    assert found["retry_amplification"]["error_bar"] == pytest.approx(sigma, rel=0.01)
    assert found["error_rate"]["predicted"] == pytest.approx(0.0625, abs=1e-6)


def test_every_measured_prediction_agrees_with_the_service(model_run: Run) -> None:
    measured = {
        (phase["name"], p["figure"]): p
        for phase in model_run.report["phases"]
        for p in phase["predictions"]
        if p["measured"] is not None
    }
    assert {
        ("outage", "retry_amplification"), ("outage", "error_rate"),
        ("limited", "rate_limited_fraction"), ("limited", "error_rate"),
        ("cached", "cache_hit_ratio"), ("hang", "breaker_open_seconds"),
    } <= set(measured)  # fmt: skip
    off = {key: (p["predicted"], p["measured"], p["error_bar"])
           for key, p in measured.items() if not p["agrees"]}  # fmt: skip
    assert off == {}
    limited = measured[("limited", "rate_limited_fraction")]
    assert limited["predicted"] == pytest.approx(1 - (20 * 6 + 20) / (50 * 6), abs=0.01)
    assert measured[("hang", "breaker_open_seconds")]["predicted"] == pytest.approx(5.5, abs=0.1)


def test_json_output_is_one_event_per_line(model_run: Run) -> None:
    events = [json.loads(line) for line in model_run.stdout.splitlines()]
    kinds = [event["event"] for event in events]
    assert kinds[0] == "run_started"
    assert kinds[-1] == "result"
    assert kinds.count("phase_started") == kinds.count("phase_finished") == 4
    assert "progress" in kinds
    started = next(e for e in events if e["event"] == "phase_started")
    assert started["plan"][-1].startswith("at 0 s for 8 s: 50% of database attempts fail")
    progress = next(e for e in events if e["event"] == "progress")
    assert {"sent_rps", "target_rps", "error_rate", "retry_amplification", "service_p99_ms",
            "client_p99_ms", "dropped"} <= set(progress)  # fmt: skip
    assert events[-1]["reports"] == [str(model_run.json_path), str(model_run.html_path)]


async def test_the_html_report_opens_offline_in_chromium_with_its_charts(
    model_run: Run, tmp_path: Path
) -> None:
    page = model_run.html_path
    text = page.read_text()
    assert "<script src=" not in text  # everything inline: no CDN
    assert 4_000_000 < len(text) < 8_000_000  # plotly.js is most of it
    url = page.as_uri()
    loaded = await open_offline(
        url,
        tmp_path / "profile",
        {
            "plots": "document.querySelectorAll('.js-plotly-plot').length",
            "drawn": "document.querySelectorAll('.js-plotly-plot .main-svg').length",
            "traces": "document.querySelectorAll('code').length",
            "title": "document.querySelector('h1').textContent",
        },
    )
    assert loaded.errors == []
    assert loaded.values["title"] == "model-check"
    assert loaded.values["traces"] >= 4  # kept traces, as Jaeger's 32-hex ids
    assert loaded.values["plots"] == 2 + loaded.values["traces"]
    assert loaded.values["drawn"] >= loaded.values["plots"]
    shot = screenshot(url, tmp_path / "report.png", tmp_path / "profile-shot", (1000, 1400))
    assert distinct_colours(shot) > 50  # lines, shading, text: not a blank page


def test_report_rerenders_and_compare_shows_what_changed(
    pair: tuple[Run, Run], tmp_path: Path
) -> None:
    on, off = pair
    out = tmp_path / "again.html"
    again = subprocess.run([CLI, "report", str(on.json_path), "--html", str(out)],
                           capture_output=True, text=True, timeout=60)  # fmt: skip
    assert again.returncode == 0, again.stderr
    assert out.stat().st_size > 4_000_000
    assert again.stdout.rstrip().endswith(f"report: {out}")
    page = tmp_path / "compare.html"
    compared = subprocess.run(
        [CLI, "compare", str(on.json_path), str(off.json_path), "--html", str(page)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert compared.returncode == 0, compared.stderr
    lines = compared.stdout.splitlines()
    retries = next(line.split() for line in lines if line.split()[:2] == ["hang", "retries"])
    # Without the breaker every request makes 4 attempts; with it, about one.
    a, b = float(retries[2].rstrip("x")), float(retries[3].rstrip("x"))
    assert a < 2.0 < 3.0 < b
    assert retries[4].startswith("+")
    assert retries[-1].endswith("x)")
    assert "<div" in page.read_text()


def test_piped_output_is_plain_lines_ending_with_the_verdict(pair: tuple[Run, Run]) -> None:
    on, _ = pair
    assert on.code == 0, on.stdout + on.stderr
    assert not ANSI.search(on.stdout)
    lines = on.stdout.splitlines()
    assert "warmup (normal):" in lines
    assert "  load: 2 s, 20 req/s throughout, over the default mix" in lines
    assert any(line.startswith("  hang done: 60 sent") for line in lines)
    tail = lines[lines.index("checks") :]
    assert tail[1].startswith("  ✓ hang: error_rate")
    assert tail[2] == "verdict: PASS: the one check held"
    assert tail[3:5] == [f"report: {on.json_path}", f"report: {on.html_path}"]
    assert tail[5] == "next:"
    assert "failure-lab compare" in "\n".join(tail[6:])


STRESSED = """\
name: stressed
phases:
  - name: stress
    scenario: stress
    duration: 3
    max_rps: 200
    pipeline: {cache_enabled: false, db_latency: 100}
"""


def test_a_generator_that_cannot_keep_up_says_so_with_counts(tmp_path: Path) -> None:
    scenario = tmp_path / "stressed.yaml"
    scenario.write_text(STRESSED)
    report = tmp_path / "stressed-report.json"
    done = subprocess.run(
        [CLI, "run", str(scenario), "--report", str(report)],
        capture_output=True, text=True, timeout=120, cwd=tmp_path,
        env={**os.environ, "FAILURE_LAB_MAX_IN_FLIGHT": "4"},
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    written = json.loads(report.read_text())
    generator = written["phases"][0]["generator"]
    dropped, planned = generator["dropped"], generator["planned"]
    assert dropped > planned / 2  # 4 in flight of 100 ms each: at most ~40 of 200 req/s
    warning = (
        f"the generator dropped {dropped:,} of {planned:,} planned requests "
        f"({dropped / planned:.0%}) at its in-flight bound (FAILURE_LAB_MAX_IN_FLIGHT)"
    )
    assert warning in written["phases"][0]["warnings"][0]
    assert f"warning stress: {warning}" in done.stdout
    assert "  warning: the generator dropped" in done.stdout  # while it ran
    assert "The generator fell short of the asked rate in stress" in done.stdout
