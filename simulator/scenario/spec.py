"""What a scenario file may say, as strict pydantic models.

A scenario file is read by people and written by hand, so every field is checked before
anything is sent to the service: unknown fields and wrong types are refused (a typo never
falls back to a default), and rules that span fields (a disruption inside its phase, a check
on an existing phase, a failure config still valid once merged) are checked here too, so a
run never stops half-way on a 422 from the service.

Field types and bounds are the contract's own (failure_lab/control.py), imported rather than
repeated: the pipeline block is ``RequestPayload`` less its rate and count, the failure
config is a partial ``FailureConfig``, disruptions are ``DisruptionRequest`` plus a start
time. A rule broken across fields raises ``RuleError``, which carries the location of the
field it is about so the loader can name that field and its line.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Any, Final, Literal, Self

import annotated_types
from pydantic import (
    AllowInfNan,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)

from failure_lab.control import (
    CircuitBreakerConfig,
    DisruptionRequest,
    DisruptionType,
    EndpointKey,
    FailureConfig,
    RateLimitAlgorithm,
    RequestPayload,
    ScenarioJobRequest,
    ScenarioName,
    UserRoute,
)
from failure_lab.durations import parse_duration
from failure_lab.settings import Settings
from simulator.generator.planner import ENDPOINTS, ERROR
from simulator.options import PipelineOptions
from simulator.scenario.rules import WHOLE_RUN, RuleError, RuleErrors, name_problems, raise_all

NAME_PATTERN: Final = r"^[a-z0-9][a-z0-9_-]{0,62}$"
MAX_PHASES: Final = 20
MAX_DISRUPTIONS: Final = 20
MAX_CHECKS: Final = 50

Metric = Literal["error_rate", "p95_ms", "p99_ms", "retry_amplification", "achieved_rate_ratio"]
Comparison = Literal["below", "above"]

_FINITE: Final = AllowInfNan(False)
# Scenario names that need no max_rps: stress defaults to the server's cap.
_RATE_OPTIONAL: Final[frozenset[str]] = frozenset({"stress"})


class _SameBounds(annotated_types.GroupedMetadata):
    """The constraints (ge, le, min_length, ...) a contract model puts on one of its fields."""

    def __init__(self, model: type[BaseModel], field: str) -> None:
        self._constraints = tuple(model.model_fields[field].metadata)

    def __iter__(self) -> Iterator[object]:
        return iter(self._constraints)


def _seconds(value: object) -> object:
    return parse_duration(value) if isinstance(value, str) else value


def _all_endpoints(value: object) -> object:
    if value == WHOLE_RUN:
        return None
    if isinstance(value, str):
        raise ValueError(f'write "all" or a list of route keys: {", ".join(ENDPOINTS)}')
    return value


Duration = Annotated[float, BeforeValidator(_seconds), Field(gt=0), _FINITE]
Offset = Annotated[float, BeforeValidator(_seconds), Field(ge=0), _FINITE]
Name = Annotated[str, Field(pattern=NAME_PATTERN)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class PipelineSpec(_Strict):
    """Per-request pipeline options: ``RequestPayload`` less its rate and count, all optional.

    A field left out takes the value of the level above: the run's block for a phase, and
    ``PipelineOptions`` defaults (what a request without options gets) for the run.
    """

    retries_enabled: bool | None = None
    rate_limiting: (
        Annotated[float, _SameBounds(RequestPayload, "rate_limiting"), _FINITE] | None
    ) = None
    rate_limiting_algo: RateLimitAlgorithm | None = None
    cache_enabled: bool | None = None
    cache_ttl: Annotated[float, _SameBounds(RequestPayload, "cache_ttl"), _FINITE] | None = None
    db_latency: Annotated[float, _SameBounds(RequestPayload, "db_latency"), _FINITE] | None = None

    def given(self) -> dict[str, Any]:
        return self.model_dump(exclude_none=True)


class FailurePatch(_Strict):
    """Some fields of a ``FailureConfig``; merged over the level above, then checked whole."""

    failure_injection_enabled: bool | None = None
    failure_rate: Annotated[float, _SameBounds(FailureConfig, "failure_rate"), _FINITE] | None = (
        None
    )
    db_latency_min_ms: (
        Annotated[float, _SameBounds(FailureConfig, "db_latency_min_ms"), _FINITE] | None
    ) = None
    db_latency_max_ms: (
        Annotated[float, _SameBounds(FailureConfig, "db_latency_max_ms"), _FINITE] | None
    ) = None
    db_timeout_seconds: (
        Annotated[float, _SameBounds(FailureConfig, "db_timeout_seconds"), _FINITE] | None
    ) = None
    redis_timeout_seconds: (
        Annotated[float, _SameBounds(FailureConfig, "redis_timeout_seconds"), _FINITE] | None
    ) = None
    max_retries: Annotated[int, _SameBounds(FailureConfig, "max_retries")] | None = None

    def over(self, base: FailureConfig) -> FailureConfig:
        """``base`` with this patch's fields; raises ``ValueError`` if the result is invalid."""
        merged = {**base.model_dump(), **self.model_dump(exclude_none=True)}
        low, high = merged["db_latency_min_ms"], merged["db_latency_max_ms"]
        if low > high:
            raise ValueError(
                f"db_latency_min_ms ({low:g}) must not exceed db_latency_max_ms ({high:g}) "
                "once merged"
            )
        try:
            return FailureConfig.model_validate(merged)
        except ValidationError as exc:  # bounds are checked per field; kept as a safeguard
            raise ValueError(exc.errors()[0]["msg"]) from None


class ScheduledDisruption(_Strict):
    """A ``DisruptionRequest`` started ``at`` seconds into its phase."""

    at: Offset
    type: DisruptionType
    severity: Annotated[float, _SameBounds(DisruptionRequest, "severity"), _FINITE]
    duration: Duration
    endpoints: Annotated[list[UserRoute], _SameBounds(DisruptionRequest, "endpoints")] | None = None

    @property
    def ends_at(self) -> float:
        return self.at + self.duration

    def request(self) -> DisruptionRequest:
        """What to POST to ``/v1/disruptions`` when the phase reaches ``at``."""
        return DisruptionRequest(
            type=self.type,
            severity=self.severity,
            duration_seconds=self.duration,
            endpoints=self.endpoints,
        )


class Phase(_Strict):
    """One stretch of load: a scenario job with its own options, faults and disruptions."""

    name: Name
    scenario: ScenarioName
    duration: Duration
    max_rps: Annotated[float, Field(gt=0), _FINITE] | None = None
    endpoints: Annotated[
        Annotated[list[EndpointKey], Field(min_length=1)] | None, BeforeValidator(_all_endpoints)
    ] = None
    pipeline: PipelineSpec | None = None
    failure_config: FailurePatch | None = None
    circuit_breaker: CircuitBreakerConfig | None = None
    disruptions: Annotated[list[ScheduledDisruption], Field(max_length=MAX_DISRUPTIONS)] = Field(
        default_factory=list
    )

    @property
    def seconds(self) -> float:
        return self.duration

    @property
    def job_endpoints(self) -> Literal["all"] | list[EndpointKey]:
        """``endpoints`` as a scenario job takes it: ``"all"`` or the route keys."""
        return "all" if self.endpoints is None else list(self.endpoints)

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        errors: list[RuleError] = []
        if self.max_rps is None and self.scenario not in _RATE_OPTIONAL:
            errors.append(
                RuleError(
                    ("max_rps",),
                    f"required for scenario {self.scenario} (only stress defaults to the "
                    "server's cap)",
                )
            )
        if self.endpoints is not None:
            for index, endpoint in enumerate(self.endpoints):
                if endpoint in self.endpoints[:index]:
                    errors.append(RuleError(("endpoints", index), f"{endpoint!r} is listed twice"))
            if self.scenario == "error_injection" and set(self.endpoints) == {ERROR}:
                errors.append(
                    RuleError(
                        ("endpoints",),
                        "error_injection sends 70 % of its requests to endpoints other than "
                        f"{ERROR!r}; list at least one other",
                    )
                )
        for index, disruption in enumerate(self.disruptions):
            if disruption.at >= self.duration:
                errors.append(
                    RuleError(
                        ("disruptions", index, "at"),
                        f"starts at {disruption.at:g}s, not within the phase's {self.duration:g}s",
                    )
                )
            elif disruption.ends_at > self.duration:
                errors.append(
                    RuleError(
                        ("disruptions", index, "duration"),
                        f"ends at {disruption.ends_at:g}s, after the phase's {self.duration:g}s "
                        "(a disruption belongs to its phase: shorten it or split the phase)",
                    )
                )
        raise_all(errors)
        return self


class Check(_Strict):
    """One line of the verdict: a metric of a phase (or the whole run) against a threshold."""

    phase: str = WHOLE_RUN
    metric: Metric
    below: Annotated[float, _FINITE] | None = None
    above: Annotated[float, _FINITE] | None = None

    @property
    def comparison(self) -> Comparison:
        return "below" if self.below is not None else "above"

    @property
    def threshold(self) -> float:
        value = self.below if self.below is not None else self.above
        assert value is not None  # one of them is set: checked by _one_threshold
        return value

    @model_validator(mode="after")
    def _one_threshold(self) -> Self:
        if self.below is not None and self.above is not None:
            raise RuleErrors([RuleError(("above",), "give one of below / above, not both")])
        if self.below is None and self.above is None:
            raise RuleErrors([RuleError((), "give a threshold: below: NUMBER or above: NUMBER")])
        if self.threshold < 0:
            raise RuleErrors([RuleError((self.comparison,), "must be >= 0")])
        if self.metric == "error_rate" and self.threshold > 1:
            raise RuleErrors(
                [
                    RuleError(
                        (self.comparison,), "error_rate is a fraction from 0 to 1 (5 % is 0.05)"
                    )
                ]
            )
        return self


class Scenario(_Strict):
    """A whole scenario file."""

    name: Name
    description: str | None = None
    pipeline: PipelineSpec | None = None
    failure_config: FailurePatch | None = None
    circuit_breaker: CircuitBreakerConfig | None = None
    phases: Annotated[list[Phase], Field(min_length=1, max_length=MAX_PHASES)]
    checks: Annotated[list[Check], Field(max_length=MAX_CHECKS)] = Field(default_factory=list)

    @property
    def total_seconds(self) -> float:
        return sum(phase.seconds for phase in self.phases)

    def phase(self, name: str) -> Phase:
        for phase in self.phases:
            if phase.name == name:
                return phase
        raise KeyError(name)

    @property
    def run_failure_config(self) -> FailureConfig:
        """Applied when the run starts: the file's block over ``FailureConfig.defaults()``."""
        defaults = FailureConfig.defaults()
        return defaults if self.failure_config is None else self.failure_config.over(defaults)

    def failure_config_for(self, phase: Phase) -> FailureConfig:
        """Applied when ``phase`` starts: its block over the run's (the run's if it has none)."""
        run = self.run_failure_config
        return run if phase.failure_config is None else phase.failure_config.over(run)

    def circuit_breaker_for(self, phase: Phase) -> CircuitBreakerConfig:
        """Applied when ``phase`` starts: its own, else the run's, else a fresh server's."""
        if phase.circuit_breaker is not None:
            return phase.circuit_breaker
        if self.circuit_breaker is not None:
            return self.circuit_breaker
        fields = Settings.model_fields
        return CircuitBreakerConfig(
            enabled=fields["circuit_breaker_enabled"].default,
            failure_threshold=fields["circuit_breaker_failure_threshold"].default,
            open_seconds=fields["circuit_breaker_open_seconds"].default,
        )

    def pipeline_for(self, phase: Phase) -> PipelineOptions:
        """The options ``phase``'s requests carry: its block, over the run's, over defaults."""
        return PipelineOptions.from_payload(self.payload_for(phase))

    def payload_for(self, phase: Phase) -> RequestPayload:
        """``pipeline_for`` as a ``RequestPayload`` (rate = the phase's max_rps or 0, count 1,
        both unused by scenario jobs)."""
        defaults = PipelineOptions()
        fields: dict[str, Any] = {
            "retries_enabled": defaults.retries_enabled,
            "rate_limiting": defaults.rate_limit,
            "rate_limiting_algo": defaults.algorithm,
            "cache_enabled": defaults.cache_enabled,
            "cache_ttl": defaults.cache_ttl,
            "db_latency": defaults.db_latency_ms,
        }
        for level in (self.pipeline, phase.pipeline):
            if level is not None:
                fields.update(level.given())
        rate = phase.max_rps if phase.max_rps is not None else 0.0
        return RequestPayload(rate_of_requests=rate, number_of_requests=1, **fields)

    def job_for(self, phase: Phase, workers: int = 1) -> ScenarioJobRequest:
        """The scenario job that runs ``phase``, sent by ``workers`` processes."""
        return ScenarioJobRequest(
            scenario=phase.scenario,
            duration=phase.seconds,
            max_rps=phase.max_rps,
            endpoints=phase.job_endpoints,
            payload=self.payload_for(phase),
            name=phase.name,
            workers=workers,
        )

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        errors: list[RuleError] = []
        try:
            run: FailureConfig | None = self.run_failure_config
        except ValueError as exc:
            errors.append(RuleError(("failure_config",), str(exc)))
            run = None
        for index, phase in enumerate(self.phases):
            if phase.failure_config is not None and run is not None:
                try:
                    phase.failure_config.over(run)
                except ValueError as exc:
                    errors.append(RuleError(("phases", index, "failure_config"), str(exc)))
        errors += name_problems(
            [phase.name for phase in self.phases], [check.phase for check in self.checks]
        )
        raise_all(errors)
        return self
