"""Backends the shim reads: one interface per kind, implementations side by side.

``MetricsSource``: ``prometheus.PrometheusSource`` (HTTP API) and ``embedded.EmbeddedMetricsSource``
(the process's own registry). ``TraceSource``: ``jaeger.JaegerSource`` (api_v3) and
``embedded.EmbeddedTraceSource`` (an in-process span store). Chosen once from settings.
"""
