"""A scenario's verdict: its checks evaluated on measured figures, and nothing else.

Kept apart from the runner (which measures) so the rules of a verdict can be tested on
figures alone: ``below`` and ``above`` are strict, and a check without data fails, since
a verdict that passes on absent data would pass on a run that measured nothing.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from pydantic import BaseModel

from simulator.scenario.spec import Check, Comparison, Metric, Scenario


@dataclass(frozen=True, slots=True)
class PhaseFigures:
    """The figures of one phase (or of the whole run); None means no data."""

    error_rate: float | None = None
    p95_ms: float | None = None
    p99_ms: float | None = None
    retry_amplification: float | None = None
    achieved_rate_ratio: float | None = None

    def value(self, metric: Metric) -> float | None:
        observed: float | None = getattr(self, metric)
        return None if observed is None or math.isnan(observed) else observed


class CheckResult(BaseModel):
    """One check as evaluated; ``phase`` is ``"all"`` for the whole run."""

    phase: str
    metric: Metric
    comparison: Comparison
    threshold: float
    observed: float | None
    passed: bool
    message: str


_SIGN = {"below": "<", "above": ">"}
_NOT_SIGN = {"below": ">=", "above": "<="}


def number(value: float, digits: int = 4) -> str:
    """``value`` in ``digits`` significant digits (whole numbers from 10 000 up)."""
    return f"{value:.0f}" if abs(value) >= 10**digits else f"{value:.{digits}g}"


def _shown(observed: float, threshold: float) -> tuple[str, str]:
    """Both numbers, with as many digits as it takes for unequal values to look unequal."""
    for digits in (4, 8, 17):
        pair = number(observed, digits), number(threshold, digits)
        if pair[0] != pair[1] or observed == threshold:
            return pair
    return pair


def evaluate_check(check: Check, figures: PhaseFigures | None) -> CheckResult:
    observed = None if figures is None else figures.value(check.metric)
    comparison, threshold = check.comparison, check.threshold
    wanted = f"{_SIGN[comparison]} {number(threshold)}"
    if observed is None:
        passed = False
        message = f"{check.phase}: {check.metric}: no data (wanted {wanted}): fail"
    else:
        passed = observed < threshold if comparison == "below" else observed > threshold
        seen, limit = _shown(observed, threshold)
        if passed:
            message = f"{check.phase}: {check.metric} {seen} {_SIGN[comparison]} {limit}: pass"
        else:
            message = (
                f"{check.phase}: {check.metric} {seen} {_NOT_SIGN[comparison]} {limit} "
                f"(wanted {wanted}): fail"
            )
    return CheckResult(
        phase=check.phase,
        metric=check.metric,
        comparison=comparison,
        threshold=threshold,
        observed=observed,
        passed=passed,
        message=message,
    )


def evaluate(scenario: Scenario, figures: Mapping[str, PhaseFigures]) -> list[CheckResult]:
    """Every check of ``scenario``, in file order; ``figures["all"]`` is the whole run.

    A phase missing from ``figures`` counts as a phase without data.
    """
    return [evaluate_check(check, figures.get(check.phase)) for check in scenario.checks]


def passed(results: list[CheckResult]) -> bool:
    """The verdict: every check passed (a scenario without checks passes)."""
    return all(result.passed for result in results)
