"""A job's traffic as plain data, from which every process builds the same plan.

A scenario plan holds functions (the rate shape, the options schedule) and a request source
with its random state, none of which crosses a process boundary. What they are built from
does: the scenario's name and numbers, the options, the endpoints and a seed. A worker
process rebuilds the plan from this spec, and because the seed is the same, its requests are
the same, position for position, as the job's own plan in the parent (see ``segments.py``).
A sustained job is the ``normal`` shape: its constant rate over the default rotation.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from failure_lab.control import ScenarioName
from simulator.generator.scenarios import ScenarioPlan, plan_scenario
from simulator.options import PipelineOptions


@dataclass(frozen=True, slots=True)
class JobSpec:
    scenario: ScenarioName
    duration: float
    max_rps: float
    options: PipelineOptions
    endpoints: tuple[str, ...] | None
    users: int
    seed: int
    latency_growth_ms: float = 0.0
    latency_ceiling_ms: float = math.inf

    @classmethod
    def sustained(
        cls, options: PipelineOptions, rps: float, duration: float, *, users: int, seed: int
    ) -> JobSpec:
        """A sustained job: ``rps`` for ``duration`` s over the default rotation."""
        return cls("normal", duration, rps, options, None, users, seed)

    def plan(self) -> ScenarioPlan:
        """The plan, with its requests drawn from ``random.Random(seed)``.

        Raises ``ValueError`` as ``plan_scenario`` does for a combination that cannot run.
        """
        return plan_scenario(
            self.scenario,
            duration=self.duration,
            max_rps=self.max_rps,
            endpoints=self.endpoints,
            options=self.options,
            users=self.users,
            rng=random.Random(self.seed),
            latency_growth_ms=self.latency_growth_ms,
            latency_ceiling_ms=self.latency_ceiling_ms,
        )
