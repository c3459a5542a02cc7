"""Runs a scenario file against a service over its public contract, and judges it.

The runner is a client like any other: it sets the failure config and circuit breaker
(``/v1/config/*``), runs each phase as a scenario job (``POST /v1/traffic/jobs``) and follows
it on the job's event stream, starts the phase's disruptions at their offsets
(``POST /v1/disruptions``), and afterwards reads each phase's figures from the metrics source
with ``/metrics/json?window=<phase>&at=<phase end>``. So the same run works against
``failure-lab serve`` and against the stack's shim, and its numbers are the dashboards'.

Every answer is parsed once, with the contract's own model (``Job``, ``Disruption``,
``MetricsData``, ...), so a target that answers something else fails the run where it
happened, and the job's summary reaches the report as the type the engine built.

Whatever happens, the runner leaves the service as it found it: the job it started is
stopped, its disruptions are cancelled, and the failure config and breaker are put back.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol, TypeVar

import httpx
from pydantic import BaseModel, ValidationError

from failure_lab.contract import ErrorAnswer, MetricsData
from failure_lab.control import (
    CircuitBreakerConfig,
    CircuitBreakerStatus,
    Disruption,
    FailureConfig,
    Job,
    JobSummary,
    ScenarioJobRequest,
)
from failure_lab.durations import MIN_WINDOW_SECONDS
from failure_lab.topology import Topology
from simulator.scenario.phase_topology import show_phase_topology
from simulator.scenario.report import (
    DisruptionRecord,
    PhaseReport,
    RunReport,
    ServiceFigures,
    WholeRun,
)
from simulator.scenario.spec import Phase, Scenario, ScheduledDisruption
from simulator.scenario.verdict import PhaseFigures, evaluate

RETENTION_MARGIN_S = 5.0
STREAM_READ_TIMEOUT_S = 60.0
WHOLE_RUN = "all"

Answer = TypeVar("Answer", bound=BaseModel)


class RunFailed(Exception):
    """The run could not be carried out: the target is down, or refused a step."""


class Observer(Protocol):
    """Told what happens as it happens (a live view, or nothing)."""

    def phase_started(self, index: int, phase: Phase, job: Job) -> None: ...

    def job_update(self, index: int, phase: Phase, job: Job) -> None: ...

    def phase_finished(self, index: int, phase: Phase, summary: JobSummary) -> None: ...

    def note(self, text: str) -> None: ...

    def topology(self, phase: str, topology: Topology) -> None: ...


@dataclass(frozen=True)
class _Ran:
    """One phase as it ran: its completed job, that job's summary and the disruptions
    started in it."""

    phase: Phase
    job: Job
    summary: JobSummary
    started: datetime
    ended: datetime
    disruptions: list[DisruptionRecord]


class ScenarioRunner:
    def __init__(
        self,
        scenario: Scenario,
        http: httpx.AsyncClient,
        observer: Observer,
        *,
        source: str,
        target: str,
        settle_seconds: float = 2.0,
        max_window_seconds: float = 3600.0,
    ) -> None:
        self._scenario = scenario
        self._http = http
        self._observer = observer
        self._source = source
        self._target = target
        self._settle = settle_seconds
        self._max_window = max_window_seconds
        self._job_id: str | None = None
        self._disruption_ids: list[str] = []

    async def run(self) -> RunReport:
        """Every phase in order, then the figures and the verdict. Raises ``RunFailed``."""
        saved_config, saved_breaker = await self._current_state()
        started = datetime.now(UTC)
        reports: list[asyncio.Task[PhaseReport]] = []
        ran: list[_Ran] = []
        try:
            for index, phase in enumerate(self._scenario.phases):
                ran.append(await self._phase(index, phase))
                # Read while the next phase runs: its window is then well inside the
                # metrics source's retention, however long the whole run.
                reports.append(asyncio.create_task(self._phase_report(ran[-1])))
            phases = list(await asyncio.gather(*reports))
        finally:
            for task in reports:
                if not task.done():
                    task.cancel()
                elif not task.cancelled():
                    task.exception()  # retrieved: the first failure, if any, is raised above
            await self._restore(saved_config, saved_breaker)
        ended = datetime.now(UTC)
        whole = await self._service(ran[0].started, ran[-1].ended)
        planned = sum(report.generator.planned for report in phases)
        sent = sum(report.generator.sent for report in phases)
        whole_run = WholeRun(achieved_rate_ratio=sent / planned if planned else None, service=whole)
        figures = {
            report.name: _figures(report.service, report.achieved_rate_ratio) for report in phases
        }
        figures[WHOLE_RUN] = _figures(whole, whole_run.achieved_rate_ratio)
        checks = evaluate(self._scenario, figures)
        return RunReport(
            scenario=self._scenario.name,
            description=self._scenario.description,
            file=self._source,
            target=self._target,
            started_at=started,
            ended_at=ended,
            verdict="pass" if all(check.passed for check in checks) else "fail",
            checks=checks,
            phases=phases,
            whole_run=whole_run,
        )

    # -- phases ------------------------------------------------------------------------------

    async def _phase(self, index: int, phase: Phase) -> _Ran:
        scenario = self._scenario
        config = scenario.failure_config_for(phase)
        await self._call(FailureConfig, "PUT", "/v1/config/failure", config.model_dump(mode="json"))
        breaker = scenario.circuit_breaker_for(phase).model_dump(mode="json")
        await self._call(CircuitBreakerStatus, "PUT", "/v1/config/circuit-breaker", breaker)
        request = ScenarioJobRequest(
            scenario=phase.scenario,
            duration=phase.seconds,
            max_rps=phase.max_rps,
            endpoints=phase.job_endpoints,
            payload=scenario.payload_for(phase),
            name=phase.name,
        )
        body = request.model_dump(mode="json", exclude_none=True)
        job = await self._call(Job, "POST", "/v1/traffic/jobs", body)
        self._job_id = job.job_id
        began = time.monotonic()
        self._observer.phase_started(index, phase, job)
        disruptions: list[DisruptionRecord] = []
        schedule = [
            asyncio.create_task(self._disrupt(phase, disruptions, planned, began + planned.at))
            for planned in phase.disruptions
        ]
        follow = asyncio.create_task(self._follow(index, phase, job))
        tasks: set[asyncio.Task[Any]] = {follow, *schedule}
        try:
            while tasks:
                done, tasks = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    task.result()  # a refused disruption or a lost stream ends the run now
        finally:
            for task in tasks:
                task.cancel()
            if tasks:
                await asyncio.wait(tasks)
        final = follow.result()
        self._job_id = None
        if final.status != "completed":
            raise RunFailed(f"phase {phase.name}: job {final.job_id} ended {final.status}")
        if final.summary is None or final.ended_at is None:
            raise RunFailed(f"phase {phase.name}: job {final.job_id} completed without a summary")
        self._observer.phase_finished(index, phase, final.summary)
        return _Ran(phase, final, final.summary, job.started_at, final.ended_at, disruptions)

    async def _disrupt(
        self,
        phase: Phase,
        started: list[DisruptionRecord],
        planned: ScheduledDisruption,
        due: float,
    ) -> None:
        await asyncio.sleep(max(0.0, due - time.monotonic()))
        request = planned.request().model_dump(mode="json", exclude_none=True)
        created = await self._call(Disruption, "POST", "/v1/disruptions", request)
        self._disruption_ids.append(created.disruption_id)
        started.append(
            DisruptionRecord(
                disruption_id=created.disruption_id,
                type=planned.type,
                severity=planned.severity,
                at_seconds=planned.at,
                duration_seconds=planned.duration,
                started_at=created.created_at,
            )
        )
        self._observer.note(
            f"{phase.name}: {planned.type} (severity {planned.severity:g}) "
            f"for {planned.duration:g}s"
        )

    async def _follow(self, index: int, phase: Phase, job: Job) -> Job:
        """The job's final state, read from its event stream as it runs."""
        path = f"/v1/traffic/jobs/{job.job_id}/stream"
        try:
            async for kind, data in _events(self._http, path):
                current = _parsed(Job, data, f"GET {path}")
                if kind == "done":
                    return current
                self._observer.job_update(index, phase, current)
        except httpx.HTTPError as exc:
            raise RunFailed(
                f"{self._target} went away during phase {phase.name}: {exc!r}"
            ) from None
        raise RunFailed(f"the event stream of job {job.job_id} ended without its final event")

    # -- figures -----------------------------------------------------------------------------

    async def _phase_report(self, record: _Ran) -> PhaseReport:
        job = record.job
        report = PhaseReport(
            name=record.phase.name,
            scenario=record.phase.scenario,
            job_id=job.job_id,
            status=job.status,
            started_at=record.started,
            ended_at=record.ended,
            duration_seconds=record.phase.seconds,
            rps=job.rps,
            generator=record.summary,
            service=await self._service(record.started, record.ended),
            disruptions=record.disruptions,
        )
        await show_phase_topology(self._http, self._observer, report)  # the graph, once a phase
        return report

    async def _service(self, start: datetime, end: datetime) -> ServiceFigures:
        # The metrics source has sampled (or scraped) the last requests before ``end`` once
        # it has had one more interval after it.
        await asyncio.sleep(max(0.0, end.timestamp() + self._settle - time.time()))
        # The whole window must lie within the source's retention when it is asked.
        newest = self._max_window - (time.time() - end.timestamp()) - RETENTION_MARGIN_S
        window = max(MIN_WINDOW_SECONDS, min(newest, (end - start).total_seconds()))
        at = end.timestamp()
        params = {"window": f"{window:.3f}", "at": f"{at:.3f}"}
        data = await self._call(MetricsData, "GET", "/metrics/json", params=params)
        requests = data.request_rate * window
        has_requests = requests > 0
        return ServiceFigures(
            window_seconds=window,
            window_end=end,
            request_rate=data.request_rate,
            error_rate=data.error_rate if has_requests else None,
            retry_count=data.retry_count,
            retry_amplification=(requests + data.retry_count) / requests if has_requests else None,
            p95_ms=data.p95_latency if has_requests else None,
            p99_ms=data.p99_latency if has_requests else None,
        )

    # -- the service's state -----------------------------------------------------------------

    async def _current_state(self) -> tuple[FailureConfig, CircuitBreakerConfig]:
        config = await self._call(FailureConfig, "GET", "/v1/config/failure")
        breaker = await self._call(CircuitBreakerStatus, "GET", "/v1/config/circuit-breaker")
        return config, breaker.config()

    async def _restore(self, config: FailureConfig, breaker: CircuitBreakerConfig) -> None:
        """Best effort, every step tried: the service as it was before the run."""
        steps: list[tuple[str, str, Any]] = []
        if self._job_id is not None:
            steps.append(("POST", f"/v1/traffic/jobs/{self._job_id}/stop", None))
        steps += [("DELETE", f"/v1/disruptions/{d}", None) for d in self._disruption_ids]
        steps.append(("PUT", "/v1/config/failure", config.model_dump(mode="json")))
        steps.append(("PUT", "/v1/config/circuit-breaker", breaker.model_dump(mode="json")))
        for method, path, body in steps:
            with contextlib.suppress(httpx.HTTPError):
                await self._http.request(method, path, json=body)
        self._job_id = None

    async def _call(
        self,
        answer: type[Answer],
        method: str,
        path: str,
        body: Any = None,
        *,
        params: dict[str, str] | None = None,
    ) -> Answer:
        """The call's answer as the contract's model ``answer``; ``RunFailed`` otherwise."""
        try:
            response = await self._http.request(method, path, json=body, params=params)
        except httpx.HTTPError as exc:
            raise RunFailed(f"{method} {self._target}{path}: {exc!r}") from None
        if response.status_code >= 400:
            try:
                detail: object = ErrorAnswer.model_validate_json(response.content).detail
            except ValidationError:
                detail = response.text
            raise RunFailed(f"{method} {path} answered {response.status_code}: {detail}")
        return _parsed(answer, response.content, f"{method} {path}")


def _parsed(answer: type[Answer], data: str | bytes, call: str) -> Answer:
    try:
        return answer.model_validate_json(data)
    except ValidationError as exc:
        raise RunFailed(f"{call}: not a {answer.__name__} answer: {exc}") from None


async def _events(http: httpx.AsyncClient, path: str) -> AsyncIterator[tuple[str, str]]:
    """(event, data) pairs of a Server-Sent Events stream until the server ends it."""
    timeout = httpx.Timeout(10.0, read=STREAM_READ_TIMEOUT_S)
    async with http.stream("GET", path, timeout=timeout) as stream:
        if stream.status_code != 200:
            await stream.aread()
            raise RunFailed(f"GET {path} answered {stream.status_code}: {stream.text}")
        kind = "message"
        async for line in stream.aiter_lines():
            if line.startswith("event:"):
                kind = line.removeprefix("event:").strip()
            elif line.startswith("data:"):
                yield kind, line.removeprefix("data:").strip()
            elif not line:
                kind = "message"


def _figures(service: ServiceFigures, achieved: float | None) -> PhaseFigures:
    return PhaseFigures(
        error_rate=service.error_rate,
        p95_ms=service.p95_ms,
        p99_ms=service.p99_ms,
        retry_amplification=service.retry_amplification,
        achieved_rate_ratio=achieved,
    )


def exit_status(report: RunReport) -> int:
    """0 when every check passed, 1 when one failed."""
    return 0 if report.verdict == "pass" else 1


__all__ = ["Observer", "RunFailed", "ScenarioRunner", "exit_status"]
