"""Dependencies point one way: the stack-mode shim loads nothing of the simulator.

Imported in a fresh interpreter, so modules other tests already loaded cannot hide an
import; the check reads ``sys.modules`` after the import, which is what a process that
runs only the shim would have paid for.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

FORBIDDEN = ("simulator", "aiohttp", "redis")


def loaded_after_import(module: str) -> list[str]:
    code = f"import json, sys; import {module}; print(json.dumps(sorted(sys.modules)))"
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    names: list[str] = json.loads(done.stdout)
    return names


@pytest.mark.parametrize("module", ["exporter.app", "failure_lab.http_errors"])
def test_the_shim_loads_no_simulator_aiohttp_or_redis(module: str) -> None:
    loaded = loaded_after_import(module)
    assert module in loaded
    offending = [name for name in loaded if name.split(".")[0] in FORBIDDEN]
    assert offending == []


def test_the_neutral_package_loads_neither_side() -> None:
    loaded = loaded_after_import(
        "failure_lab.settings, failure_lab.errors, failure_lab.exposition, failure_lab.contract"
    )
    assert [name for name in loaded if name.split(".")[0] in ("simulator", "exporter")] == []


def test_the_scenario_runner_reads_the_contract_without_the_exporter() -> None:
    """``failure-lab run`` is a client: the answers it parses come from the neutral package."""
    loaded = loaded_after_import("simulator.scenario.session")
    assert "failure_lab.contract" in loaded
    assert [name for name in loaded if name.split(".")[0] == "exporter"] == []


def test_the_check_sees_an_import_of_the_simulator() -> None:
    """The same check on the embedded composition root finds what it should."""
    loaded = loaded_after_import("simulator.app")
    assert {"simulator.pipeline", "aiohttp", "exporter.routes"} <= set(loaded)
