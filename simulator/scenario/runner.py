"""Runs a scenario file against a service over its public contract, and judges it.

The runner is a client like any other: it sets the failure config and circuit breaker
(``/v1/config/*``), runs each phase as a scenario job (``POST /v1/traffic/jobs``) and follows
it on the job's event stream, starts the phase's disruptions at their offsets
(``POST /v1/disruptions``), and afterwards reads each phase's figures from the metrics source
with ``/metrics/json?window=<phase>&at=<phase end>``. So the same run works against
``failure-lab serve`` and against the stack's shim, and its numbers are the dashboards'.

Every answer is parsed once, with the contract's own model (``Job``, ``Disruption``,
``MetricsData``, ...), so a target that answers something else fails the run where it
happened, and the job's summary reaches the report as the type the engine built. Meanwhile
the sampler keeps the run over time, the model's predictions are set beside each phase's
measurements, and a few traces of each phase are kept while the service is up.

Whatever happens, the runner leaves the service as it found it: the job it started is
stopped, its disruptions are cancelled, and the failure config and breaker are put back.
Interrupted (Ctrl-C), it does that first, then raises ``Interrupted`` with a report of the
phases that finished.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

import httpx

from failure_lab.contract import MetricsData
from failure_lab.control import (
    CircuitBreakerConfig,
    CircuitBreakerStatus,
    Disruption,
    FailureConfig,
    Job,
    JobSummary,
)
from failure_lab.durations import MIN_WINDOW_SECONDS
from failure_lab.topology import Topology
from simulator.scenario.client import (
    ContractClient,
    RunFailed,
    current_state,
    parsed,
    restore,
    transport_words,
)
from simulator.scenario.conclude import conclusion, generator_warnings
from simulator.scenario.conditions import ServerConstants
from simulator.scenario.expectations import expectations_for
from simulator.scenario.measure import bind, fetch_traces
from simulator.scenario.phase_topology import show_phase_topology
from simulator.scenario.plan import phase_plan
from simulator.scenario.report import (
    DisruptionRecord,
    PhaseReport,
    RunReport,
    ServiceFigures,
    WholeRun,
)
from simulator.scenario.sampler import Live, Sampler
from simulator.scenario.scrape import Delta, Scrape
from simulator.scenario.spec import Phase, Scenario, ScheduledDisruption
from simulator.scenario.verdict import PhaseFigures, evaluate

RETENTION_MARGIN_S = 5.0
WHOLE_RUN = "all"
SAMPLE_INTERVAL_S = 2.0
BREAKER_SAMPLE_INTERVAL_S = 1.0
PARTIAL_WAIT_S = 15.0


class Interrupted(Exception):
    """The run was interrupted; ``report`` holds the phases that finished."""

    def __init__(self, report: RunReport) -> None:
        super().__init__("interrupted")
        self.report = report


class Observer(Protocol):
    """Told what happens as it happens (a live view, or nothing)."""

    def phase_started(self, index: int, phase: Phase, job: Job, plan: list[str]) -> None: ...

    def job_update(self, index: int, phase: Phase, job: Job) -> None: ...

    def live(self, index: int, phase: Phase, figures: Live) -> None: ...

    def phase_finished(
        self, index: int, phase: Phase, summary: JobSummary, warnings: list[str]
    ) -> None: ...

    def note(self, text: str) -> None: ...

    def topology(self, phase: str, topology: Topology) -> None: ...


@dataclass(frozen=True)
class _Ran:
    """One phase as it ran: its completed job, that job's summary, the disruptions started
    in it, and the simulator's counters before and after it (None if not exposed)."""

    index: int
    phase: Phase
    job: Job
    summary: JobSummary
    started: datetime
    ended: datetime
    disruptions: list[DisruptionRecord]
    before: Scrape | None
    after: Scrape | None


class ScenarioRunner:
    def __init__(
        self,
        scenario: Scenario,
        client: ContractClient,
        observer: Observer,
        *,
        source: str,
        server: ServerConstants,
        settle_seconds: float = 2.0,
        max_window_seconds: float = 3600.0,
        workers: int = 1,
    ) -> None:
        """``workers``: the processes each phase's job is split over on the target."""
        self._scenario = scenario
        self._workers = workers
        self._client = client
        self._observer = observer
        self._source = source
        self._server = server
        self._settle = settle_seconds
        self._max_window = max_window_seconds
        self._job_id: str | None = None
        self._disruption_ids: list[str] = []
        self._expected = expectations_for(scenario, server)
        breaker = any(scenario.circuit_breaker_for(p).enabled for p in scenario.phases)
        interval = BREAKER_SAMPLE_INTERVAL_S if breaker else SAMPLE_INTERVAL_S
        self._sampler = Sampler(client, interval, breaker)
        self._reports: list[asyncio.Task[PhaseReport]] = []
        self._started = datetime.now(UTC)

    async def run(self) -> RunReport:
        """Every phase in order, then the figures and the verdict. Raises ``RunFailed``,
        or ``Interrupted`` when cancelled."""
        saved_config, saved_breaker = await current_state(self._client)
        self._started = datetime.now(UTC)
        self._sampler.started_wall = self._started.timestamp()
        sampling = asyncio.create_task(self._sampler.run(self._observer))
        ran: list[_Ran] = []
        restored = False
        try:
            for index, phase in enumerate(self._scenario.phases):
                ran.append(await self._phase(index, phase))
                # Read while the next phase runs: its window is then well inside the
                # metrics source's retention, however long the whole run.
                self._reports.append(asyncio.create_task(self._phase_report(ran[-1])))
            phases = list(await asyncio.gather(*self._reports))
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()
            sampling.cancel()
            await self._restore(saved_config, saved_breaker)
            restored = True  # first: the interrupted phase's job and faults stop now
            raise Interrupted(await self._partial()) from None
        finally:
            sampling.cancel()
            for report in self._reports:
                if not report.done():
                    report.cancel()
                elif not report.cancelled():
                    report.exception()  # retrieved: the first failure, if any, is raised above
            if not restored:
                await self._restore(saved_config, saved_breaker)
        whole = await self._service(ran[0].started, ran[-1].ended)
        return self._report(phases, whole)

    async def _restore(self, config: FailureConfig, breaker: CircuitBreakerConfig) -> None:
        await restore(self._client, self._job_id, self._disruption_ids, config, breaker)
        self._job_id = None

    def _report(self, phases: list[PhaseReport], whole: ServiceFigures | None) -> RunReport:
        figures = {
            report.name: _figures(report.service, report.achieved_rate_ratio) for report in phases
        }
        whole_run = None
        if whole is not None:
            planned = sum(report.generator.planned for report in phases)
            sent = sum(report.generator.sent for report in phases)
            whole_run = WholeRun(
                achieved_rate_ratio=sent / planned if planned else None, service=whole
            )
            figures[WHOLE_RUN] = _figures(whole, whole_run.achieved_rate_ratio)
        checks = evaluate(self._scenario, figures)
        if whole is None:  # interrupted: judge only what ran
            checks = [check for check in checks if check.phase in figures]
        verdict = "pass" if all(check.passed for check in checks) else "fail"
        return RunReport(
            scenario=self._scenario.name,
            description=self._scenario.description,
            file=self._source,
            target=self._client.target,
            started_at=self._started,
            ended_at=datetime.now(UTC),
            verdict=verdict if whole is not None else "interrupted",
            checks=checks,
            phases=phases,
            whole_run=whole_run,
            conclusion=conclusion(self._scenario, phases),
            samples=self._sampler.samples,
            interrupted=whole is None,
        )

    async def _partial(self) -> RunReport:
        """The report of the phases that finished before the interruption."""
        finished = [task for task in self._reports if not task.cancelled()]
        if finished:
            await asyncio.wait(finished, timeout=self._settle + PARTIAL_WAIT_S)
        phases = [
            task.result()
            for task in finished
            if task.done() and not task.cancelled() and task.exception() is None
        ]
        return self._report(phases, None)

    # -- phases ------------------------------------------------------------------------------

    async def _phase(self, index: int, phase: Phase) -> _Ran:
        scenario, call = self._scenario, self._client.call
        config = scenario.failure_config_for(phase)
        await call(FailureConfig, "PUT", "/v1/config/failure", config.model_dump(mode="json"))
        breaker = scenario.circuit_breaker_for(phase).model_dump(mode="json")
        await call(CircuitBreakerStatus, "PUT", "/v1/config/circuit-breaker", breaker)
        before = await self._client.scrape()
        job_body = scenario.job_for(phase, self._workers)
        body = job_body.model_dump(mode="json", exclude_defaults=True)  # workers: 1 unsaid
        job = await call(Job, "POST", "/v1/traffic/jobs", body)
        self._job_id = job.job_id
        began = time.monotonic()
        self._sampler.begin(index, phase, before)
        self._observer.phase_started(index, phase, job, phase_plan(scenario, phase, self._server))
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
            self._sampler.end()
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
        after = await self._client.scrape()
        warnings = generator_warnings(final.summary, final.rps)
        self._observer.phase_finished(index, phase, final.summary, warnings)
        summary, ended = final.summary, final.ended_at
        return _Ran(index, phase, final, summary, job.started_at, ended, disruptions, before, after)

    async def _disrupt(
        self,
        phase: Phase,
        started: list[DisruptionRecord],
        planned: ScheduledDisruption,
        due: float,
    ) -> None:
        await asyncio.sleep(max(0.0, due - time.monotonic()))
        request = planned.request().model_dump(mode="json", exclude_none=True)
        created = await self._client.call(Disruption, "POST", "/v1/disruptions", request)
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
            f"for {planned.duration:g} s started"
        )

    async def _follow(self, index: int, phase: Phase, job: Job) -> Job:
        """The job's final state, read from its event stream as it runs."""
        path = f"/v1/traffic/jobs/{job.job_id}/stream"
        try:
            async for kind, data in self._client.events(path):
                current = parsed(Job, data, f"GET {path}")
                if kind == "done":
                    return current
                self._sampler.job(current)
                self._observer.job_update(index, phase, current)
        except httpx.HTTPError as exc:
            raise RunFailed(
                f"during phase {phase.name}: {transport_words(exc, self._client.target)}"
            ) from None
        raise RunFailed(f"the event stream of job {job.job_id} ended without its final event")

    # -- figures -----------------------------------------------------------------------------

    async def _phase_report(self, record: _Ran) -> PhaseReport:
        job, phase = record.job, record.phase
        service = await self._service(record.started, record.ended)
        delta = None
        if record.before is not None and record.after is not None:
            delta = Delta(record.before, record.after)
        predictions = bind(
            self._expected[record.index],
            service,
            delta,
            self._sampler.open_seconds(phase.name),
            self._sampler.interval,
        )
        report = PhaseReport(
            name=phase.name,
            scenario=phase.scenario,
            job_id=job.job_id,
            status=job.status,
            started_at=record.started,
            ended_at=record.ended,
            duration_seconds=phase.seconds,
            rps=job.rps,
            generator=record.summary,
            service=service,
            disruptions=record.disruptions,
            plan=phase_plan(self._scenario, phase, self._server),
            predictions=predictions,
            warnings=generator_warnings(record.summary, job.rps, service.p99_ms),
            traces=await fetch_traces(self._client, phase.name, record.summary),
        )
        if delta is not None:
            hits, lookups = delta.cache_gets()
            refused, total = delta.refused()
            report.cache_hit_ratio = hits / lookups if lookups else None
            report.rate_limited_fraction = refused / total if total else None
        await show_phase_topology(
            self._client.http, self._observer, report
        )  # the graph, once a phase
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
        data = await self._client.call(MetricsData, "GET", "/metrics/json", params=params)
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
