"""The traffic generator: an open-model load engine that drives the simulated service.

Requests leave at their intended times whatever the responses do (like wrk2 or k6's
constant-arrival-rate), so latency measured from the intended send time is free of
coordinated omission. Every generated request is one trace whose root is the client span.
"""

from simulator.generator.engine import TrafficEngine
from simulator.generator.jobs import JobManager, JobNotFound, TooManyJobs
from simulator.generator.metrics import GeneratorMetrics
from simulator.generator.planner import PlannedRequest, RequestPlanner
from simulator.generator.stats import LiveStats

__all__ = [
    "GeneratorMetrics",
    "JobManager",
    "JobNotFound",
    "LiveStats",
    "PlannedRequest",
    "RequestPlanner",
    "TooManyJobs",
    "TrafficEngine",
]
