"""Prometheus, promtool, Jaeger, vegeta and kustomize as ``make backends`` builds them for the
tests.

The stack runs these programs at the versions ``.env`` pins for docker compose; tests that
need them take the same versions, built from their Go modules by ``scripts/backends.sh`` into
a cache folder outside the work tree, so the tests and the stack cannot drift apart. The
script is the one definition of the versions and of where each program is: this module asks
it rather than repeating its rules. A program that is not built fails the test with how to
build it; it never skips.
"""

from __future__ import annotations

import subprocess
from functools import cache
from pathlib import Path
from typing import Literal

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "backends.sh"

Program = Literal["prometheus", "promtool", "jaeger", "vegeta", "kustomize"]


def _script(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(SCRIPT), *args], capture_output=True, text=True, check=False, cwd=ROOT
    )


def backend_binary(name: Program) -> Path:
    """The built program ``name`` at the version pinned in ``.env``."""
    result = _script("path", name)
    if result.returncode != 0:
        message = result.stderr.strip().removeprefix("backends: ") or f"{name} is not built"
        if "make backends" not in message:
            message += "; run `make backends`"
        pytest.fail(message, pytrace=False)
    return Path(result.stdout.strip())


@cache
def _versions() -> tuple[tuple[str, str], ...]:
    result = _script("versions")
    if result.returncode != 0:
        pytest.fail(f"scripts/backends.sh versions: {result.stderr.strip()}", pytrace=False)
    pairs = (line.split("=", 1) for line in result.stdout.splitlines() if "=" in line)
    return tuple((key, value) for key, value in pairs)


def pinned_versions() -> dict[str, str]:
    """The versions ``.env`` pins: ``prometheus`` (3.13.1), ``prometheus_module`` (its Go
    module version, v0.313.1), ``jaeger`` (2.12.0), ``jaeger_module`` (v1.75.0) and
    ``vegeta`` (12.13.0) and ``kustomize`` (5.8.2)."""
    return dict(_versions())
