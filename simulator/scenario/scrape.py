"""The target's own ``/metrics``, read as counters, for what ``/metrics/json`` does not carry.

``/metrics/json`` has the figures the checks judge (rate, errors, retries, p95/p99), the same
in both modes. The live view and the report also want the client's latency while a phase
runs, the cache's hit ratio and the share refused with 429, which the simulator counts in its
registry (``failure_lab_generator_latency_seconds``, ``failure_lab_cache_requests_total``,
``failure_lab_http_requests_total``). ``failure-lab serve`` exposes that registry on
``/metrics``; the stack's shim exposes its own instead, and then these figures are absent
(None), never guessed. Two scrapes give exact counts between them; a histogram's quantile is
interpolated in its bucket, as Prometheus's ``histogram_quantile`` does.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from prometheus_client.parser import text_string_to_metric_families

CLIENT_LATENCY = "failure_lab_generator_latency_seconds"
CACHE = "failure_lab_cache_requests_total"
REQUESTS = "failure_lab_http_requests_total"
LabelSet = frozenset[tuple[str, str]]


@dataclass(frozen=True, slots=True)
class Scrape:
    """One reading of the target's ``/metrics``: every sample by name and labels."""

    samples: Mapping[tuple[str, LabelSet], float]

    @classmethod
    def parse(cls, text: str) -> Scrape:
        samples: dict[tuple[str, LabelSet], float] = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                samples[(sample.name, frozenset(sample.labels.items()))] = float(sample.value)
        return cls(samples)

    @property
    def from_simulator(self) -> bool:
        """Whether this is the simulator's registry (the shim's has none of its series)."""
        return any(name == CACHE for name, _ in self.samples)

    def total(self, name: str, **labels: str) -> float:
        """The sum of ``name``'s samples whose labels include ``labels``."""
        wanted = set(labels.items())
        return sum(v for (n, ls), v in self.samples.items() if n == name and wanted <= ls)

    def buckets(self, name: str, **labels: str) -> list[tuple[float, float]]:
        """(upper bound, cumulative count) of a histogram, summed over other labels."""
        sums: dict[float, float] = {}
        wanted = set(labels.items())
        for (n, ls), value in self.samples.items():
            if n == f"{name}_bucket" and wanted <= ls:
                bound = float(dict(ls)["le"])
                sums[bound] = sums.get(bound, 0.0) + value
        return sorted(sums.items())


@dataclass(frozen=True, slots=True)
class Delta:
    """What happened between two scrapes of the simulator's registry."""

    before: Scrape
    after: Scrape

    def count(self, name: str, **labels: str) -> float:
        return self.after.total(name, **labels) - self.before.total(name, **labels)

    def quantile_ms(self, q: float, name: str, **labels: str) -> float | None:
        earlier = dict(self.before.buckets(name, **labels))
        buckets = [(b, c - earlier.get(b, 0.0)) for b, c in self.after.buckets(name, **labels)]
        value = histogram_quantile(q, buckets)
        return None if value is None else value * 1000.0

    def client_p99_ms(self, basis: str) -> float | None:
        """p99 of the generator's latency, ``intended`` (corrected) or ``actual`` send."""
        return self.quantile_ms(0.99, CLIENT_LATENCY, basis=basis)

    def cache_gets(self) -> tuple[float, float]:
        """(hits, all lookups: hits, misses and errors) of cache reads."""
        hits = self.count(CACHE, operation="get", result="hit")
        return hits, self.count(CACHE, operation="get")

    def refused(self) -> tuple[float, float]:
        """(requests answered 429, all requests) of the simulated API."""
        return self.count(REQUESTS, status="429"), self.count(REQUESTS)


def ratio(part: float, whole: float) -> float | None:
    return part / whole if whole > 0 else None


def histogram_quantile(q: float, buckets: list[tuple[float, float]]) -> float | None:
    """Prometheus's interpolation: the bucket where rank q*total falls, linearly within it."""
    if not buckets or buckets[-1][1] <= 0:
        return None
    total = buckets[-1][1]
    rank = q * total
    lower, below = 0.0, 0.0
    for bound, count in buckets:
        if count >= rank:
            if math.isinf(bound):
                return lower
            inside = count - below
            return lower + (bound - lower) * ((rank - below) / inside if inside > 0 else 1.0)
        lower, below = bound, count
    return lower
