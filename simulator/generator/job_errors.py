"""Why a job cannot start, or cannot be found: the job manager's refusals, as error kinds.

Kept apart from the manager so the manager reads as running jobs; a refusal names the
setting that moves it, and ``failure_lab/http_errors.py`` turns each kind into its answer.
"""

from __future__ import annotations

from failure_lab.errors import Conflict, NotFound


class TooManyJobs(Conflict):
    """``max_active_jobs`` jobs are already running."""

    def __init__(self, limit: int) -> None:
        super().__init__(
            f"{limit} job(s) already running (the limit, setting "
            "FAILURE_LAB_MAX_ACTIVE_JOBS); stop one first"
        )
        self.limit = limit


class RateCapReached(Conflict):
    """Running jobs together would go past the server's rate cap."""

    def __init__(self, asked: float, running: dict[str, float], cap: float) -> None:
        jobs = ", ".join(f"{job_id} at {rps:g}" for job_id, rps in running.items())
        super().__init__(
            f"a job at {asked:g} req/s next to the running job(s) ({jobs} req/s) would exceed "
            f"the cap of {cap:g} req/s for all jobs together (setting FAILURE_LAB_MAX_RPS); "
            "stop one or ask for less"
        )


class QueueFull(Conflict):
    """Single runs and bursts running now already hold the bound on queued requests."""

    def __init__(self, asked: int, queued: int, limit: int) -> None:
        super().__init__(
            f"{asked} more request(s) next to the {queued} that running single runs and bursts "
            f"still hold would exceed the bound of {limit} (setting "
            "FAILURE_LAB_MAX_QUEUED_REQUESTS); wait for them to finish"
        )


class JobNotFound(NotFound):
    """No job with that id (never existed, or forgotten among old finished jobs)."""

    def __init__(self, job_id: str) -> None:
        super().__init__(f"no job {job_id!r} (unknown, or finished long enough ago to be dropped)")
        self.job_id = job_id
