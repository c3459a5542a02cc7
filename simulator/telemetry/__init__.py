"""Telemetry for failure-lab: Prometheus metrics in an app-owned registry, OpenTelemetry traces."""
