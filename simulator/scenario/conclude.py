"""The end of a run in words: what the fault did against the steady phase, how the service
recovered, whether the model agreed, and where the generator itself fell short.

A table of numbers leaves the reading to the reader, and a newcomer reads it wrong (a p99
credited to the smaller of two faults, a cache outage that looks better than its baseline
because the client's figures were the generator's own lag). These sentences are computed
from the report's figures only, so they can be checked like any figure.
"""

from __future__ import annotations

from collections.abc import Sequence

from failure_lab.control import JobSummary
from simulator.scenario.report import PhaseReport, Prediction
from simulator.scenario.spec import Scenario

LAG_SHARE = 0.25
LAG_FLOOR_MS = 10.0
LATE_SHARE = 0.05
ACHIEVED_FLOOR = 0.99


def pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def ms(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.0f} ms" if value >= 100 else f"{value:.1f} ms"


def times(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def generator_warnings(g: JobSummary, rps: float, service_p99_ms: float | None = None) -> list[str]:
    """What the generator failed to do in a phase at ``rps``, with the counts."""
    found: list[str] = []
    if g.dropped:
        found.append(
            f"the generator dropped {g.dropped:,} of {g.planned:,} planned requests "
            f"({g.dropped / g.planned:.0%}) at its in-flight bound (FAILURE_LAB_MAX_IN_FLIGHT): "
            f"it sent {g.achieved_rps:,.0f} of {rps:,.0f} req/s"
        )
    elif g.planned and g.sent / g.planned < ACHIEVED_FLOOR:
        found.append(
            f"the generator sent {g.sent:,} of {g.planned:,} planned requests "
            f"({g.achieved_rps:,.0f} of {rps:,.0f} req/s)"
        )
    lag_p99 = g.send_lag_ms.p99 or 0.0
    if g.sent and g.late_sends > LATE_SHARE * g.sent and lag_p99 >= LAG_FLOOR_MS:
        found.append(
            f"{g.late_sends:,} of {g.sent:,} requests were sent late "
            f"(send lag p99 {ms(g.send_lag_ms.p99)})"
        )
    lag, client = g.send_lag_ms.p99, g.latency_ms.p99
    if lag is not None and client and lag >= LAG_FLOOR_MS and lag >= LAG_SHARE * client:
        service = "" if service_p99_ms is None else f" ({ms(service_p99_ms)})"
        found.append(
            f"client p99 {ms(client)} is mostly the generator's own send lag ({ms(lag)}): "
            f"its process was too busy to keep the schedule; the service's p99{service} is the "
            "figure to trust"
        )
    return found


def fault_phases(scenario: Scenario) -> list[bool]:
    """Per phase: does it run under a fault (a disruption, or a failure config or breaker
    other than the first phase's)?"""
    first = scenario.phases[0]
    config, breaker = scenario.failure_config_for(first), scenario.circuit_breaker_for(first)
    return [
        bool(phase.disruptions)
        or scenario.failure_config_for(phase) != config
        or scenario.circuit_breaker_for(phase) != breaker
        for phase in scenario.phases
    ]


def _against(fault: PhaseReport, base: PhaseReport) -> str:
    f, b = fault.service, base.service
    words = (
        f"In {fault.name}, {pct(f.error_rate)} of requests failed "
        f"(against {pct(b.error_rate)} in {base.name})"
    )
    if f.p99_ms is not None and b.p99_ms:
        words += f", p99 went from {ms(b.p99_ms)} to {ms(f.p99_ms)} ({f.p99_ms / b.p99_ms:.1f}x)"
    if f.retry_amplification is not None:
        words += f" and the database did {times(f.retry_amplification)} the work per request"
        predicted = _predicted(fault.predictions, "retry_amplification")
        if predicted is not None:
            words += f" (the model: {times(predicted)})"
    return words + "."


def _recovered(phase: PhaseReport, base: PhaseReport) -> str:
    r, b = phase.service, base.service
    errors_back = (r.error_rate or 0.0) <= max(0.01, 2 * (b.error_rate or 0.0))
    latency_back = r.p99_ms is None or b.p99_ms is None or r.p99_ms <= 1.5 * b.p99_ms + 5.0
    if errors_back and latency_back:
        return (
            f"In {phase.name} the service was back to {base.name}'s figures: "
            f"{pct(r.error_rate)} errors, p99 {ms(r.p99_ms)}."
        )
    return (
        f"In {phase.name} the service had not recovered: {pct(r.error_rate)} errors "
        f"(against {pct(b.error_rate)}), p99 {ms(r.p99_ms)} (against {ms(b.p99_ms)})."
    )


def _predicted(predictions: Sequence[Prediction], figure: str) -> float | None:
    return next((p.predicted for p in predictions if p.figure == figure), None)


def _model(phases: Sequence[PhaseReport]) -> str | None:
    judged = [(ph.name, p) for ph in phases for p in ph.predictions if p.agrees is not None]
    if not judged:
        return None
    off = [(name, p) for name, p in judged if not p.agrees]
    if not off:
        if len(judged) == 1:
            return "The model's prediction agrees with the measurement."
        return f"All {len(judged)} predictions of the model agree with the measurements."
    listed = "; ".join(
        f"{name} {p.figure} {p.measured:.3g} against {p.predicted:.3g}" for name, p in off[:3]
    )
    caveats = list(dict.fromkeys(p.caveat for _, p in off if p.caveat))
    why = (
        f": {caveats[0]}"
        if len(caveats) == 1 and len(off) == 1
        else ": something the model leaves out was at play (its assumptions are in the report)"
    )
    count = f"{len(off)} of {len(judged)} predictions are off by more than 3 error bars"
    return f"{count} ({listed}){why}."


def conclusion(scenario: Scenario, phases: Sequence[PhaseReport]) -> list[str]:
    """The run in a few sentences, from the figures of the phases that ran."""
    if not phases:
        return []
    faulty = fault_phases(scenario)[: len(phases)]
    base = phases[0]
    said: list[str] = []
    after_fault = False
    for phase, fault in zip(phases, faulty, strict=True):
        if fault and phase is not base:
            said.append(_against(phase, base))
            after_fault = True
        elif after_fault:
            said.append(_recovered(phase, base))
            after_fault = False
    if faulty[0]:
        s = base.service
        said.insert(
            0,
            f"In {base.name}, under a fault from its start, {pct(s.error_rate)} of requests "
            f"failed and p99 was {ms(s.p99_ms)}.",
        )
    if not said:
        s = base.service
        said.append(
            f"No phase ran under a fault: {pct(s.error_rate)} errors, p99 {ms(s.p99_ms)} "
            f"in {base.name}."
        )
    model = _model(phases)
    if model is not None:
        said.append(model)
    behind = [
        phase.name
        for phase in phases
        if phase.generator.dropped
        or (phase.achieved_rate_ratio is not None and phase.achieved_rate_ratio < ACHIEVED_FLOOR)
    ]
    if behind:
        said.append(
            f"The generator fell short of the asked rate in {', '.join(behind)} (see the "
            "warnings): those figures describe a lighter load than the file asks for."
        )
    return said
