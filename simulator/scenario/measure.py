"""A finished phase's measurements beside the model's predictions, and its traces kept.

The model (``expectations.py``) predicts before the run; here each prediction meets what was
measured: the service's figures for retries and errors (the checks' figures), the counts
between two scrapes of the simulator's registry for the cache and the 429s, the sampled
breaker state for its time open. The error bar is the statistical error of a measurement
over that many requests (or reads) if the model is right: sqrt(variance per draw / draws).

Traces are fetched while the service is up, since an embedded target disappears with the run:
the slowest requests and the most recent failed ones of each phase, a few of each.
"""

from __future__ import annotations

import math

from pydantic import ValidationError

from failure_lab.contract import TraceResponse
from failure_lab.control import JobSummary
from simulator.scenario.client import ContractClient
from simulator.scenario.expectations import Expected
from simulator.scenario.report import Prediction, ServiceFigures, StoredTrace
from simulator.scenario.scrape import Delta, ratio

TRACES_PER_KIND = 2


def jaeger_id(request_id: str) -> str:
    """A request id (a UUID) as Jaeger writes its trace id: 32 hex digits, no dashes."""
    return request_id.replace("-", "").lower()


def bind(
    expected: list[Expected],
    service: ServiceFigures,
    delta: Delta | None,
    open_seconds: float | None,
    sample_interval: float,
) -> list[Prediction]:
    requests = service.request_rate * service.window_seconds
    measured: dict[str, tuple[float | None, float | None]] = {
        "retry_amplification": (service.retry_amplification, requests),
        "error_rate": (service.error_rate, requests),
        "breaker_open_seconds": (open_seconds, None),
    }
    if delta is not None:
        refused, total = delta.refused()
        hits, lookups = delta.cache_gets()
        measured["rate_limited_fraction"] = (ratio(refused, total), total)
        measured["cache_hit_ratio"] = (ratio(hits, lookups), lookups)
    bound: list[Prediction] = []
    for item in expected:
        value, draws = measured.get(item.figure, (None, None))
        if item.figure == "breaker_open_seconds":
            error_bar: float | None = sample_interval
        elif value is None or not draws:
            error_bar = None
        else:
            error_bar = math.sqrt(item.variance / draws)
        bound.append(
            Prediction.model_validate(
                {
                    "figure": item.figure,
                    "predicted": item.predicted,
                    "measured": value,
                    "draws": draws,
                    "error_bar": error_bar,
                    "formula": item.formula,
                    "assumptions": item.assumptions,
                    "caveat": item.caveat,
                }
            )
        )
    return bound


def worth_tracing(summary: JobSummary) -> list[tuple[str, str]]:
    """(request id, why): the slowest and the most recent failed requests, a few of each."""
    picked: dict[str, str] = {}
    for slow in summary.slowest[:TRACES_PER_KIND]:
        picked.setdefault(slow.request_id, "slowest")
    for request_id in reversed(summary.failed_request_ids[-TRACES_PER_KIND:]):
        picked.setdefault(request_id, "failed")
    return list(picked.items())


async def fetch_traces(
    client: ContractClient, phase: str, summary: JobSummary
) -> list[StoredTrace]:
    """The traces worth keeping that the target still has (best effort)."""
    kept: list[StoredTrace] = []
    for request_id, why in worth_tracing(summary):
        data = await client.json(f"/v1/trace/{request_id}")
        if data is None:
            continue
        try:
            trace = TraceResponse.model_validate(data)
        except ValidationError:
            continue
        kept.append(
            StoredTrace.model_validate(
                {
                    "request_id": request_id,
                    "trace_id": jaeger_id(request_id),
                    "phase": phase,
                    "why": why,
                    "trace": trace,
                }
            )
        )
    return kept
