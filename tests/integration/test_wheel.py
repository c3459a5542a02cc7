"""Install anywhere: the built wheel, in a fresh virtual environment, from another directory.

What a user of ``pip install failure-lab`` or ``uv tool install`` gets: the command, the
bundled scenarios, and a scenario run that passes, with nothing of the checkout on the path.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
UV = Path(sys.executable).with_name("uv")


def uv(*args: str, cwd: Path = ROOT) -> str:
    done = subprocess.run(
        [str(UV), *args], cwd=cwd, capture_output=True, text=True, timeout=600, check=False
    )
    assert done.returncode == 0, f"uv {' '.join(args)}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.mark.timeout(900)
def test_the_wheel_runs_a_bundled_scenario_from_anywhere(tmp_path: Path) -> None:
    assert UV.exists(), f"uv is not beside {sys.executable}: run `make .venv/.synced`"
    uv("build", "--wheel", "--out-dir", str(tmp_path / "dist"))
    [wheel] = (tmp_path / "dist").glob("failure_lab-*.whl")
    venv = tmp_path / "venv"
    uv("venv", "--python", sys.executable, str(venv))
    uv("pip", "install", "--python", str(venv / "bin" / "python"), str(wheel))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    command = str(venv / "bin" / "failure-lab")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}

    def failure_lab(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [command, *args],
            cwd=elsewhere,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )

    listed = failure_lab("scenarios")
    assert listed.returncode == 0, listed.stderr
    for name in ("demo", "smoke", "retry-storm"):
        assert name in listed.stdout
    where = failure_lab("scenarios", "--show", "smoke")
    assert where.stdout.startswith("# smoke:")

    ran = failure_lab("run", "smoke", "--report", "smoke.json")
    assert ran.returncode == 0, ran.stdout + ran.stderr
    report = json.loads((elsewhere / "smoke.json").read_text())
    assert report["verdict"] == "pass"
    assert report["scenario"] == "smoke"
    # The code that ran is the installed copy, not the checkout.
    located = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import simulator; print(simulator.__file__)"],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert str(venv) in located.stdout
