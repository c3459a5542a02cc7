"""The shim's own Prometheus metrics: backend queries, the trace store, the live feed.

"Backend query load must not grow with the number of clients" is checked by reading
``failure_lab_exporter_backend_queries_total`` before and after clients connect.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class ExporterMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.backend_queries = Counter(
            "failure_lab_exporter_backend_queries",
            "Queries the shim made to a backend, by outcome (ok, error, timeout).",
            ["backend", "outcome"],
            registry=registry,
        )
        self.backend_duration = Histogram(
            "failure_lab_exporter_backend_query_duration_seconds",
            "Time backend queries took, failures included.",
            ["backend"],
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
            registry=registry,
        )
        self.trace_evictions = Counter(
            "failure_lab_exporter_trace_store_evictions",
            "Traces evicted from the embedded trace store (oldest first) to stay within capacity.",
            registry=registry,
        )
        self.trace_store_spans_refused = Counter(
            "failure_lab_exporter_trace_store_spans_refused",
            "Spans not stored because their trace already held the most spans a trace may "
            "(FAILURE_LAB_TRACE_STORE_MAX_SPANS_PER_TRACE).",
            registry=registry,
        )
        self.trace_store_traces = Gauge(
            "failure_lab_exporter_trace_store_traces",
            "Traces held by the embedded trace store.",
            registry=registry,
        )
        self.ws_clients = Gauge(
            "failure_lab_exporter_websocket_clients",
            "Live-feed WebSocket clients connected.",
            registry=registry,
        )
        self.ws_messages = Counter(
            "failure_lab_exporter_websocket_messages",
            "Live-feed messages produced (each serialized once, then fanned out).",
            ["type"],
            registry=registry,
        )
        self.ws_disconnects = Counter(
            "failure_lab_exporter_websocket_disconnects",
            "Live-feed clients that left, by reason (closed, slow, error, rejected, shutdown).",
            ["reason"],
            registry=registry,
        )
