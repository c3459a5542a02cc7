"""``MetricsSource`` on a Prometheus server's HTTP API (stack mode).

The figures of :mod:`exporter.figures` are rendered as PromQL and sent as instant queries,
concurrently and all at the same evaluation time, so one answer is one consistent picture.
Each public method is one backend call inside :func:`exporter.boundary.backend_call`: one
timeout over all its queries, transport failures mapped there. What only this backend can
say wrong is mapped here: an error answer (``{"status":"error","errorType":...,"error":...}``,
HTTP 400, 422 or 503) or a body that is not JSON is ``SourceUnavailable``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any, Final

import httpx

from exporter.boundary import backend_call
from exporter.errors import SourceUnavailable
from exporter.figures import (
    LATENCY,
    RED,
    Figure,
    Values,
    grouping,
    latency_summaries,
    red_figures,
    render,
)
from exporter.sources.base import FigureGroups, Groups, LatencySummary, RedFigures
from exporter.topology_figures import TOPOLOGY

BACKEND: Final = "prometheus"
_SHOWN_BODY: Final = 200
"""Characters of an unexpected body quoted in an error message."""


class PrometheusSource:
    name = BACKEND

    def __init__(
        self,
        base_url: str,
        *,
        timeout: float = 2.0,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        """``timeout`` bounds every call (seconds). A ``client`` given here is used as is
        and left open by :meth:`aclose`."""
        if not timeout > 0:
            raise ValueError("timeout must be positive")
        self._base = base_url.rstrip("/")
        self._timeout = timeout
        self._owns_client = client is None
        self._client = client if client is not None else httpx.AsyncClient(timeout=None)

    def _call(self) -> AbstractAsyncContextManager[None]:
        return backend_call(BACKEND, self._base, self._timeout)

    async def red(self, window_seconds: float, at: float | None = None) -> RedFigures:
        async with self._call():
            return red_figures(await self._figures(RED, window_seconds, at))

    async def latency(
        self, window_seconds: float, at: float | None = None
    ) -> dict[str, LatencySummary]:
        async with self._call():
            return latency_summaries(await self._figures(LATENCY, window_seconds, at))

    async def topology(self, window_seconds: float, at: float | None = None) -> FigureGroups:
        async with self._call():
            at = time.time() if at is None else at
            answers = await asyncio.gather(
                *(self._groups(figure, window_seconds, at) for figure in TOPOLOGY),
                return_exceptions=True,
            )
            groups: FigureGroups = {}
            for figure, answer in zip(TOPOLOGY, answers, strict=True):
                if isinstance(answer, BaseException):
                    raise answer
                groups[figure.key] = answer
            return groups

    async def check(self) -> None:
        async with self._call():
            await self._get("/api/v1/status/buildinfo", {})

    async def query(self, promql: str, at: float | None = None) -> float | None:
        """One instant query answering a single number: None when it selects no series."""
        async with self._call():
            return await self._query(promql, time.time() if at is None else at)

    async def aclose(self) -> None:
        if self._owns_client:
            await self._client.aclose()

    async def _figures(
        self, figures: Sequence[Figure], window_seconds: float, at: float | None = None
    ) -> Values:
        """Every figure at one evaluation time (default now); all queries run to the end
        (or the bound) before the first failure, if any, is raised."""
        queries = [render(figure.expr, window_seconds) for figure in figures]
        at = time.time() if at is None else at
        answers = await asyncio.gather(
            *(self._query(q, at) for q in queries), return_exceptions=True
        )
        values: dict[str, float | None] = {}
        for figure, answer in zip(figures, answers, strict=True):
            if isinstance(answer, BaseException):
                raise answer
            values[figure.key] = answer
        return values

    async def _query(self, promql: str, at: float) -> float | None:
        params = {"query": promql, "time": f"{at:.3f}", "timeout": f"{self._timeout:g}"}
        data = await self._get("/api/v1/query", params)
        return _single_value(data, promql)

    async def _groups(self, figure: Figure, window_seconds: float, at: float) -> Groups:
        """One figure's answer by the labels it keeps, from an instant query at ``at``."""
        promql = render(figure.expr, window_seconds)
        params = {"query": promql, "time": f"{at:.3f}", "timeout": f"{self._timeout:g}"}
        data = await self._get("/api/v1/query", params)
        return _by_group(data, promql, grouping(figure.expr))

    async def _get(self, path: str, params: dict[str, str]) -> Any:
        """The ``data`` of a successful answer from ``path``."""
        url = self._base + path
        response = await self._client.get(url, params=params)
        try:
            body = response.json()
        except ValueError:
            raise SourceUnavailable(
                BACKEND,
                f"HTTP {response.status_code} from {url} is not JSON: "
                f"{response.text[:_SHOWN_BODY]!r}",
            ) from None
        if isinstance(body, dict) and body.get("status") == "error":
            raise SourceUnavailable(
                BACKEND, f"{body.get('errorType', 'unknown')}: {body.get('error', '')}"
            )
        if not (isinstance(body, dict) and body.get("status") == "success"):
            raise SourceUnavailable(
                BACKEND,
                f"unexpected answer, HTTP {response.status_code} from {url}: "
                f"{response.text[:_SHOWN_BODY]!r}",
            )
        return body.get("data")


def _by_group(data: Any, promql: str, labels: Sequence[str]) -> Groups:
    """The series of an instant vector, keyed by the values of ``labels`` ("" when absent)."""
    if not isinstance(data, dict) or data.get("resultType") != "vector":
        raise SourceUnavailable(BACKEND, f"expected a vector from {promql!r}, got {data!r:.100}")
    groups: Groups = {}
    for series in data.get("result") or []:
        try:
            metric = series["metric"]
            key = tuple(str(metric.get(label, "")) for label in labels)
            groups[key] = float(series["value"][1])
        except (TypeError, ValueError, IndexError, KeyError, AttributeError):
            raise SourceUnavailable(BACKEND, f"malformed series {series!r:.100}") from None
    return groups


def _single_value(data: Any, promql: str) -> float | None:
    """The value of an instant query's answer with at most one series (``NaN``, ``+Inf``
    included); None for an empty vector."""
    if not isinstance(data, dict):
        raise SourceUnavailable(BACKEND, f"answer to {promql!r} has no data")
    kind = data.get("resultType")
    result = data.get("result")
    sample: Any
    if kind == "vector" and isinstance(result, list):
        if not result:
            return None
        if len(result) > 1:
            raise SourceUnavailable(
                BACKEND, f"expected at most one series from {promql!r}, got {len(result)}"
            )
        sample = result[0].get("value") if isinstance(result[0], dict) else None
    elif kind == "scalar":
        sample = result
    else:
        raise SourceUnavailable(BACKEND, f"unexpected result type {kind!r} for {promql!r}")
    try:
        return float(sample[1])
    except (TypeError, ValueError, IndexError, KeyError):
        raise SourceUnavailable(BACKEND, f"malformed sample {sample!r} for {promql!r}") from None
