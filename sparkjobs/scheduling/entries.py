"""What beat holds for each job: its schedule under Celery's `is_due(last_run_at)`
contract, the entry that carries the job, and where its slots resume after a start or a
takeover. Pure time maths with an injectable clock: testable without sleeping."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from celery.beat import ScheduleEntry
from celery.schedules import BaseSchedule, schedstate

from sparkjobs.jobs.define import Job, Schedule
from sparkjobs.jobs.slots import (
    describe,
    next_fire,
)

if TYPE_CHECKING:
    from sparkjobs.store.models import JobRecord


JOB_TASK = "sparkjobs.job"  # only a label: entries are fired through submit_job


Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


class JobSchedule(BaseSchedule):
    """A job's schedule under Celery's `is_due(last_run_at)` contract.

    `last_run_at` is the newest slot handled, so a slot is due once the clock
    passes the next slot after it.
    """

    def __init__(self, spec: Schedule, clock: Clock) -> None:
        super().__init__(nowfun=clock)
        self.spec = spec

    def is_due(self, last_run_at: datetime) -> schedstate:
        now = self.now()
        upcoming = next_fire(self.spec, last_run_at)
        if upcoming is None:
            return schedstate(False, 3600.0)  # never again; look once an hour (reloads)
        if upcoming > now:
            return schedstate(False, (upcoming - now).total_seconds())
        following = next_fire(self.spec, now)
        return schedstate(True, (following - now).total_seconds() if following else 3600.0)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, JobSchedule) and other.spec == self.spec

    def __hash__(self) -> int:
        return hash(self.spec)


class JobEntry(ScheduleEntry):
    """A scheduler entry that carries its job."""

    def __init__(self, *args: Any, job: Job | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.job = job

    def at(self, last_slot: datetime) -> JobEntry:
        """This entry with `last_slot` as the newest slot handled."""
        return JobEntry(
            name=self.name,
            task=self.task,
            last_run_at=last_slot,
            total_run_count=self.total_run_count + 1,
            schedule=self.schedule,
            kwargs=self.kwargs,
            app=self.app,
            job=self.job,
        )


def resume_from(
    job: Job, record: JobRecord | None, last_slot: datetime | None, now: datetime
) -> datetime:
    """Where a job's slots resume after a start or a takeover.

    After the newest slot SQL holds for it; but not before it was last resumed (the
    slots of a pause are not misfires), and from now if it is new or its schedule
    changed (the old slots belong to another schedule).
    """
    if record is None or record.schedule != describe(job.schedule):
        return now
    start = last_slot or record.last_seen
    if not record.paused and record.paused_changed_at is not None:
        start = max(start, record.paused_changed_at)
    return min(start, now)
