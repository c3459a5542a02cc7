"""``promtool test rules`` on unit-test documents that tests write themselves.

Tests of the embedded PromQL engine put their expected answers in a promtool unit test and let
the real evaluator judge them. The promtool is the pinned one ``make backends`` builds (the
Prometheus of the stack, see :mod:`tests.support.backends`). Without ``fuzzy_compare`` it
compares expected and actual samples with ``cmp.Equal``: no tolerance, so a pass means equal
floats, to the last bit.
"""

from __future__ import annotations

import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from tests.support.backends import backend_binary

Check = tuple[str, int, float | None]
"""A PromQL expression, the evaluation time in milliseconds and its one value (labels ``{}``),
or None for no series."""


def run_rule_tests(path: Path, document: Mapping[str, Any]) -> subprocess.CompletedProcess[str]:
    """Write ``document`` to ``path`` and run ``promtool test rules`` on it."""
    path.write_text(yaml.safe_dump(dict(document), sort_keys=False))
    command = [str(backend_binary("promtool")), "test", "rules", str(path)]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)


def expression_document(
    series: Mapping[str, str], checks: Sequence[Check], interval: str = "1s"
) -> dict[str, Any]:
    """One test group: ``series`` (series text to promtool's values notation, one value per
    ``interval`` from 0 s) and one ``promql_expr_test`` per check."""
    tests = [
        {
            "expr": expr,
            "eval_time": f"{at_ms}ms",
            "exp_samples": [] if value is None else [{"labels": "{}", "value": value}],
        }
        for expr, at_ms, value in checks
    ]
    input_series = [{"series": text, "values": values} for text, values in series.items()]
    return {
        "rule_files": [],
        "evaluation_interval": interval,
        "tests": [{"interval": interval, "input_series": input_series, "promql_expr_test": tests}],
    }


def assert_promtool_agrees(
    path: Path, series: Mapping[str, str], checks: Sequence[Check], interval: str = "1s"
) -> None:
    """Fail unless promtool evaluates every check to exactly its value."""
    outcome = run_rule_tests(path, expression_document(series, checks, interval))
    report = outcome.stdout + outcome.stderr
    assert outcome.returncode == 0, report
    assert "SUCCESS" in outcome.stdout, report
