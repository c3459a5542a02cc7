"""The figures of ``/metrics/json`` and the latency summaries, defined once for every source.

Stack mode asks Prometheus and embedded mode evaluates on a :class:`SampleRing`; if each source
wrote its own formulas they would drift apart. So each figure is data: a small PromQL expression
(metric, matchers, function) that :func:`render` turns into query text for Prometheus and
:func:`evaluate` computes on a ring, and both sources turn the answers into figures with the
same rules for "no data" (:func:`red_figures`, :func:`latency_summaries`).

The ring matches labels by equality itself; other matchers (``=~`` for the error statuses) are
handed to it as a test of each series' labels, so the matching series are added in one sum as
in PromQL. Regexes are anchored at both ends, as in PromQL.

A sum or a quantile may keep labels (``by``, e.g. ``instance`` for one answer per replica), and
a gauge may be read as it stood at the window's end (:class:`Latest`); such a figure answers one
value per group (:func:`evaluate_groups`), keyed by the kept labels' values in order ("" for a
label a series lacks), as Prometheus's series carry them.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Final, Literal

from exporter.promql import divide, to_millis
from exporter.sampling import SampleRing, Where, scalar
from exporter.sources.base import Groups, LatencySummary, RedFigures

MatchOp = Literal["=", "!=", "=~", "!~"]
Values = Mapping[str, float | None]
"""Answers keyed by :attr:`Figure.key`: None when the expression selected no series."""

REQUESTS: Final = "failure_lab_http_requests_total"
RETRIES: Final = "failure_lab_retries_total"
REQUEST_DURATION: Final = "failure_lab_http_request_duration_seconds"
DB_DURATION: Final = "failure_lab_db_query_duration_seconds"
CACHE_DURATION: Final = "failure_lab_cache_operation_duration_seconds"
SERVICE_ERROR_STATUSES: Final = "5..|429"
"""Requests the service failed (5xx) or refused (429); other 4xx are the client's errors."""
MILLISECONDS: Final = 1000.0


@dataclass(frozen=True, slots=True)
class Matcher:
    """One label matcher, ``label op "value"``."""

    label: str
    op: MatchOp
    value: str

    def matches(self, value: str) -> bool:
        """Whether a series whose label is ``value`` ("" when absent) is selected."""
        match self.op:
            case "=":
                return value == self.value
            case "!=":
                return value != self.value
            case "=~":
                return re.fullmatch(self.value, value) is not None
            case "!~":
                return re.fullmatch(self.value, value) is None


@dataclass(frozen=True, slots=True)
class Selector:
    """``metric{matchers}``."""

    metric: str
    matchers: tuple[Matcher, ...] = ()


@dataclass(frozen=True, slots=True)
class SumOf:
    """``sum by (by) (function(selector[W]))``: ``rate`` per second or ``increase`` over the
    window; without ``by``, one sum of everything."""

    function: Literal["rate", "increase"]
    selector: Selector
    by: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Quantile:
    """``histogram_quantile(q, sum by (le) (rate(histogram_bucket{matchers}[W])))``.

    ``histogram`` is the name without ``_bucket``; matchers are equalities (the ring's
    ``histogram_quantile`` cannot add groups of buckets selected otherwise).
    """

    q: float
    histogram: str
    matchers: tuple[Matcher, ...] = ()
    by: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if any(matcher.op != "=" for matcher in self.matchers):
            raise ValueError("a quantile takes equality matchers only")
        if "le" in self.by:
            raise ValueError("a quantile groups by le itself")


@dataclass(frozen=True, slots=True)
class Latest:
    """``sum by (by) (selector)``: gauges as they stood at the window's end (the newest
    sample within Prometheus's five-minute lookback); equality matchers only."""

    selector: Selector
    by: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if any(matcher.op != "=" for matcher in self.selector.matchers):
            raise ValueError("a gauge is read with equality matchers only")


@dataclass(frozen=True, slots=True)
class Ratio:
    """``numerator / denominator``: IEEE division, as PromQL (x/0 is ±Inf, 0/0 NaN)."""

    numerator: Expr
    denominator: Expr


@dataclass(frozen=True, slots=True)
class Scaled:
    """``factor * expr``."""

    factor: float
    expr: Expr


Expr = SumOf | Quantile | Latest | Ratio | Scaled


def grouping(expr: Expr) -> tuple[str, ...]:
    """The labels an expression's answer keeps, in order (a ratio's are its numerator's)."""
    match expr:
        case SumOf(by=by) | Quantile(by=by) | Latest(by=by):
            return by
        case Ratio(numerator, _):
            return grouping(numerator)
        case Scaled(_, inner):
            return grouping(inner)


@dataclass(frozen=True, slots=True)
class Figure:
    """One number a source answers: ``key`` names it, ``expr`` says how it is computed."""

    key: str
    expr: Expr


@dataclass(frozen=True, slots=True)
class Stage:
    """A stage of the simulated request whose latency is summarised, and its histogram."""

    name: str
    histogram: str
    matchers: tuple[Matcher, ...] = ()


def _ms_quantile(q: float, histogram: str, matchers: tuple[Matcher, ...] = ()) -> Scaled:
    return Scaled(MILLISECONDS, Quantile(q, histogram, matchers))


_ALL_REQUESTS: Final = Selector(REQUESTS)

RED: Final = (
    Figure("request_rate", SumOf("rate", _ALL_REQUESTS)),
    Figure(
        "error_rate",
        Ratio(
            SumOf("rate", Selector(REQUESTS, (Matcher("status", "=~", SERVICE_ERROR_STATUSES),))),
            SumOf("rate", _ALL_REQUESTS),
        ),
    ),
    Figure("retry_count", SumOf("increase", Selector(RETRIES))),
    Figure("p95_latency_ms", _ms_quantile(0.95, REQUEST_DURATION)),
    Figure("p99_latency_ms", _ms_quantile(0.99, REQUEST_DURATION)),
)
"""The figures of ``RedFigures``, keyed by its field names."""

STAGES: Final = (
    Stage("request", REQUEST_DURATION),
    Stage("database", DB_DURATION),
    Stage("cache", CACHE_DURATION, (Matcher("operation", "=", "get"),)),
)


def stage_figures(stage: Stage) -> tuple[Figure, ...]:
    """avg, p50, p95, p99 (ms) and samples of one stage, keyed ``"<stage>.<field>"``."""
    count = Selector(f"{stage.histogram}_count", stage.matchers)
    total = Selector(f"{stage.histogram}_sum", stage.matchers)
    return (
        Figure(
            f"{stage.name}.avg",
            Scaled(MILLISECONDS, Ratio(SumOf("rate", total), SumOf("rate", count))),
        ),
        Figure(f"{stage.name}.p50", _ms_quantile(0.5, stage.histogram, stage.matchers)),
        Figure(f"{stage.name}.p95", _ms_quantile(0.95, stage.histogram, stage.matchers)),
        Figure(f"{stage.name}.p99", _ms_quantile(0.99, stage.histogram, stage.matchers)),
        Figure(f"{stage.name}.samples", SumOf("increase", count)),
    )


LATENCY: Final = tuple(figure for stage in STAGES for figure in stage_figures(stage))


# --- PromQL text -------------------------------------------------------------------------------


def window_millis(window_seconds: float) -> int:
    """The window in whole milliseconds, the resolution of PromQL durations (at least 1)."""
    if not math.isfinite(window_seconds):
        raise ValueError("window must be a finite number of seconds")
    millis = to_millis(window_seconds)
    if millis < 1:
        raise ValueError("window must be at least a millisecond")
    return millis


def promql_duration(window_seconds: float) -> str:
    """``60s`` for whole seconds, else ``1500ms``."""
    millis = window_millis(window_seconds)
    return f"{millis // 1000}s" if millis % 1000 == 0 else f"{millis}ms"


def render(expr: Expr, window_seconds: float) -> str:
    """The PromQL text of ``expr`` over a window of ``window_seconds``."""
    return _render(expr, promql_duration(window_seconds), nested=False)


def _render(expr: Expr, duration: str, *, nested: bool) -> str:
    match expr:
        case SumOf(function, selector, by):
            return f"{_sum(by)}({function}({_selector(selector)}[{duration}]))"
        case Quantile(q, histogram, matchers, by):
            buckets = _selector(Selector(f"{histogram}_bucket", matchers))
            grouping = ", ".join(("le", *by))
            return f"histogram_quantile({q!r}, sum by ({grouping}) (rate({buckets}[{duration}])))"
        case Latest(selector, by):
            return f"{_sum(by)}({_selector(selector)})"
        case Ratio(numerator, denominator):
            text = (
                f"{_render(numerator, duration, nested=True)} / "
                f"{_render(denominator, duration, nested=True)}"
            )
        case Scaled(factor, inner):
            text = f"{_number(factor)} * {_render(inner, duration, nested=True)}"
    return f"({text})" if nested else text


def _sum(by: tuple[str, ...]) -> str:
    return f"sum by ({', '.join(by)}) " if by else "sum"


def _selector(selector: Selector) -> str:
    if not selector.matchers:
        return selector.metric
    inner = ", ".join(
        f"{m.label}{m.op}{json.dumps(m.value, ensure_ascii=False)}" for m in selector.matchers
    )
    return f"{selector.metric}{{{inner}}}"


def _number(value: float) -> str:
    return str(int(value)) if value.is_integer() else repr(value)


# --- evaluation on a sample ring ---------------------------------------------------------------


def evaluate(
    expr: Expr, ring: SampleRing, window_seconds: float, at: float | None = None
) -> float | None:
    """``expr`` on ``ring`` at ``at`` (default: its newest snapshot); None for no series."""
    return scalar(evaluate_groups(expr, ring, window_seconds, at))


def evaluate_groups(
    expr: Expr, ring: SampleRing, window_seconds: float, at: float | None = None
) -> Groups:
    """``expr`` on ``ring`` at ``at``, one value per group of its ``by`` labels."""
    window = window_millis(window_seconds) / 1000
    return _evaluate(expr, ring, window, at)


def evaluate_all(
    figures: Iterable[Figure], ring: SampleRing, window_seconds: float, at: float | None = None
) -> dict[str, float | None]:
    """Every figure on ``ring`` at the same instant, keyed by :attr:`Figure.key`."""
    return {figure.key: evaluate(figure.expr, ring, window_seconds, at) for figure in figures}


def _evaluate(expr: Expr, ring: SampleRing, window: float, at: float | None) -> Groups:
    match expr:
        case SumOf(function, selector, by):
            return _sum_of(function, selector, by, ring, window, at)
        case Quantile(q, histogram, matchers, by):
            equal = {m.label: m.value for m in matchers}
            return ring.histogram_quantile(q, histogram, window, equal, by, at=at)
        case Latest(selector, by):
            equal = {m.label: m.value for m in selector.matchers}
            return ring.latest(selector.metric, equal, by, at=at)
        case Ratio(numerator, denominator):
            # One-to-one matching on the groups, as PromQL's ``/`` between vectors.
            top = _evaluate(numerator, ring, window, at)
            bottom = _evaluate(denominator, ring, window, at)
            return {key: divide(value, bottom[key]) for key, value in top.items() if key in bottom}
        case Scaled(factor, inner):
            scaled = _evaluate(inner, ring, window, at)
            return {key: factor * value for key, value in scaled.items()}


def _sum_of(
    function: Literal["rate", "increase"],
    selector: Selector,
    by: tuple[str, ...],
    ring: SampleRing,
    window: float,
    at: float | None,
) -> Groups:
    equal = {m.label: m.value for m in selector.matchers if m.op == "="}
    others = tuple(m for m in selector.matchers if m.op != "=")
    query = ring.rate if function == "rate" else ring.increase
    # One sum over every selected series, as PromQL adds them (not a sum of partial sums).
    return query(selector.metric, window, equal, by, at=at, where=_matching(others))


def _matching(matchers: tuple[Matcher, ...]) -> Where | None:
    """The test of a series' labels for the matchers the ring does not apply itself."""
    if not matchers:
        return None
    return lambda labels: all(m.matches(labels.get(m.label, "")) for m in matchers)


# --- answers to figures ------------------------------------------------------------------------


def red_figures(values: Values) -> RedFigures:
    """``RedFigures`` from the answers to :data:`RED`: rates and counts are 0 without data
    (no requests, no errors, no retries), latencies None (no request to measure)."""
    return RedFigures(
        request_rate=_or_zero(values["request_rate"]),
        error_rate=_or_zero(values["error_rate"]),
        retry_count=_or_zero(values["retry_count"]),
        p95_latency_ms=_finite(values["p95_latency_ms"]),
        p99_latency_ms=_finite(values["p99_latency_ms"]),
    )


def latency_summaries(values: Values) -> dict[str, LatencySummary]:
    """One summary per stage from the answers to :data:`LATENCY`."""
    return {
        stage.name: LatencySummary(
            avg=_finite(values[f"{stage.name}.avg"]),
            p50=_finite(values[f"{stage.name}.p50"]),
            p95=_finite(values[f"{stage.name}.p95"]),
            p99=_finite(values[f"{stage.name}.p99"]),
            samples=_or_zero(values[f"{stage.name}.samples"]),
        )
        for stage in STAGES
    }


def _or_zero(value: float | None) -> float:
    return 0.0 if value is None or math.isnan(value) else value


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None
