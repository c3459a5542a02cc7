"""Backends the shim reads: one interface per kind, implementations side by side.

``MetricsSource``: ``prometheus.PrometheusSource`` (HTTP API) and
``embedded_metrics.EmbeddedMetricsSource`` (the process's own registry). ``TraceSource``:
``jaeger.JaegerSource`` (api_v3) and ``embedded_traces.EmbeddedTraceSource`` (an in-process
span store). Chosen once from settings.
"""
