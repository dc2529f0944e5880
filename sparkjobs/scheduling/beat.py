"""The Beat scheduler: the jobs of `schedules_dir`, fired once per slot by one active beat.

A `celery.beat.Scheduler` whose entries (`entries`) are the loaded jobs. Celery's `tick` keeps
its heap and `is_due` contract; this class adds, per tick: the lock in Redis (a
standby ticks but fires nothing), a reload when a job file changes, and the paused
flags from SQL. Firing a slot is `submit_job` with `scheduled_for`, whose unique
slot key in SQL makes a second fire of the same slot a no-op; a slot that a policy
skips is recorded as a skipped run with the reason.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime, timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any

from celery.beat import ScheduleEntry, Scheduler
from redis.exceptions import RedisError
from sqlalchemy.exc import DBAPIError

from sparkjobs.broker.kombu_private import forget_schedule_heap
from sparkjobs.broker.leader import LeaderLock
from sparkjobs.errors import Unreachable
from sparkjobs.jobs.define import Job
from sparkjobs.jobs.files import fingerprint, load_jobs
from sparkjobs.jobs.slots import (
    Plan,
    describe,
    next_fire,
    overlap_skip_reason,
    plan_slots,
    schedule_tz,
)
from sparkjobs.scheduling.entries import (
    JOB_TASK,
    Clock,
    JobEntry,
    JobSchedule,
    resume_from,
    utc_now,
)

if TYPE_CHECKING:
    from sqlalchemy.orm import Session, sessionmaker

    from sparkjobs.broker.app import SparkjobsApp
    from sparkjobs.store.jobs import SeenJob

logger = logging.getLogger(__name__)

TICK_S = 1.0  # the longest beat sleeps: reloads and pauses apply within it
RETRY_S = 5.0  # after the store or broker failed a fire, try the slot again then


class SparkjobsScheduler(Scheduler):
    """Beat's scheduler for sparkjobs (run by `sparkjobs beat`)."""

    Entry = JobEntry
    max_interval = int(TICK_S)

    def __init__(
        self,
        app: SparkjobsApp,
        *args: Any,
        clock: Clock = utc_now,
        lock_ttl_s: float | None = None,
        **kwargs: Any,
    ) -> None:
        self.sparkjobs_app = app
        self.config = app.sparkjobs_config
        self.clock = clock
        # A killed active beat is replaced within the TTL plus one tick.
        self.lock_ttl_s = lock_ttl_s or self.config.beat.lock_ttl_s
        self.on_time = timedelta(seconds=self.config.beat.on_time_s)
        self.jobs: dict[str, Job] = {}
        self.active = False
        self._fingerprint: object = None
        self._paused: dict[str, bool] = {}
        self._pending: dict[str, Plan] = {}
        self._retry_at: dict[str, float] = {}
        self._synced: bool | None = False  # None: the last attempt failed (warned once)
        self._paused_read_at = 0.0
        super().__init__(app, *args, **kwargs)

    # --- what Celery calls ---------------------------------------------------

    def setup_schedule(self) -> None:
        # Only the job files: Celery's default entries (backend_cleanup) would go to
        # a queue for a result backend sparkjobs does not use.
        self.reload()

    def tick(self, *args: Any, **kwargs: Any) -> float:
        was_active, self.active = self.active, self.lock.hold()
        if self.active and not was_active:
            logger.info("beat: active scheduler now (lock %s, token %s)", self.lock.key,
                        self.lock.token)  # fmt: skip
        elif was_active and not self.active:
            logger.warning("beat: lost the scheduler lock; standing by, firing nothing")
        changed = self.reload()
        if not self.active:
            self._synced = False
            return TICK_S
        try:
            if changed or not self._synced:
                self._take_over()
                self._synced = True
            self._refresh_paused()
        except Exception as exc:  # the store is down: fire nothing, try again next tick
            if self._synced is not None:
                logger.warning("beat: the store did not answer (%s); retrying", exc)
            self._synced = None
            return TICK_S
        return min(float(super().tick(*args, **kwargs)), TICK_S)

    def is_due(self, entry: ScheduleEntry) -> tuple[bool, float]:
        retry_in = self._retry_at.get(str(entry.name), 0.0) - time.monotonic()
        if retry_in > 0:
            return False, retry_in
        due, next_check_s = entry.is_due()
        return bool(due), float(next_check_s)

    def reserve(self, entry: ScheduleEntry) -> Any:
        assert isinstance(entry, JobEntry)
        assert entry.job is not None
        name = str(entry.name)
        now = self.clock()
        paused = self._paused.get(name, False)
        plan = plan_slots(
            entry.job, entry.last_run_at or now, now, paused=paused, on_time=self.on_time
        )
        self._pending[name] = plan
        advanced = self.schedule[name] = entry.at(plan.last_slot)
        return advanced

    def apply_entry(self, entry: ScheduleEntry, producer: Any = None) -> None:
        assert isinstance(entry, JobEntry)
        assert entry.job is not None
        plan = self._pending.pop(str(entry.name))
        try:
            self._carry_out(entry.job, plan)
        except Exception as exc:
            if isinstance(exc, Unreachable | DBAPIError | RedisError | OSError):
                logger.warning("beat: could not fire %s (%s); trying again in %ss",
                               entry.name, str(exc).splitlines()[0], RETRY_S)  # fmt: skip
            else:  # a bug: keep the traceback
                logger.exception("beat: could not fire %s; trying again in %ss", entry.name,
                                 RETRY_S)  # fmt: skip
            # Back to the slot before: the same slots come round again, and the
            # slot keys in SQL make the ones already fired no-ops.
            self.schedule[str(entry.name)] = entry
            self._retry_at[str(entry.name)] = time.monotonic() + RETRY_S
            forget_schedule_heap(self)

    def close(self) -> None:
        try:
            super().close()
        finally:
            if "lock" in self.__dict__:
                self.lock.release()
                self.lock.client.close()

    @property
    def producer(self) -> Any:
        # Celery's tick hands its producer to apply_entry, opening a broker connection
        # of its own on first use (retried forever while Redis is down, the tick
        # blocked). Entries fire through submit_job, so there is none to open.
        return None

    @property
    def info(self) -> str:
        return f"jobs from {self.config.schedules_dir}; lock {self.lock.key}"

    # --- sparkjobs ---------------------------------------------------------------

    @cached_property
    def lock(self) -> LeaderLock:
        from sparkjobs.broker.client import key, redis_client

        # A client of its own, with a command timeout under the TTL (the app's has
        # none, for BLPOP): a Redis that stops answering without closing the
        # connection must not freeze the tick of the beat that thinks it is active.
        client = redis_client(self.config, timeout_s=min(2.0, self.lock_ttl_s / 2))
        return LeaderLock(
            client, key(self.config, "beat", "lock"), ttl_s=self.lock_ttl_s, role="beat"
        )

    @cached_property
    def sessions(self) -> sessionmaker[Session]:
        from sparkjobs.store.engine import open_store

        return open_store(self.config.database)

    def reload(self, *, force: bool = False) -> bool:
        """Load the job files again if any changed; True if they were loaded."""
        current = fingerprint(self.config.schedules_dir)
        if current == self._fingerprint and not force:
            return False
        self._fingerprint = current
        loaded = load_jobs(self.config)
        for problems in loaded.problems.values():
            for problem in problems:
                logger.error("beat: job not loaded: %s", problem)
        self.jobs = loaded.by_name()
        logger.info("beat: %d job(s) from %s", len(self.jobs), self.config.schedules_dir)
        return True

    def _take_over(self) -> None:
        """Rebuild every entry from SQL: the newest slot handled, pauses, the table."""
        from sparkjobs.store.jobs import job_records, last_slots, record_jobs

        now = self.clock()
        with self.sessions.begin() as session:
            records = job_records(session)
            slots = last_slots(session)
            entries: dict[str, ScheduleEntry] = {}
            for name, job in self.jobs.items():
                if job.schedule is None:
                    continue
                last = resume_from(job, records.get(name), slots.get(name), now)
                entries[name] = JobEntry(
                    name=name,
                    task=JOB_TASK,
                    last_run_at=last,
                    schedule=JobSchedule(job.schedule, self.clock),
                    kwargs={"job": name},
                    app=self.app,
                    job=job,
                )
            self.data = entries
            record_jobs(session, [self._seen(job, now) for job in self.jobs.values()], now=now)
        self._paused_read_at = 0.0
        self._pending.clear()
        forget_schedule_heap(self)

    def _refresh_paused(self) -> None:
        from sparkjobs.store.jobs import job_records

        if time.monotonic() - self._paused_read_at < TICK_S:
            return
        self._paused_read_at = time.monotonic()
        with self.sessions.begin() as session:
            records = job_records(session)
        self._paused = {
            name: records[name].paused if name in records else job.paused
            for name, job in self.jobs.items()
        }

    def _carry_out(self, job: Job, plan: Plan) -> None:
        from sparkjobs.runs.submit import active_run_exists, submit_job
        from sparkjobs.store.jobs import set_next_fire

        for decision in plan.decisions:
            reason = decision.reason
            if decision.fire:
                reason = overlap_skip_reason(job, active_run_exists(self.config, job.name))
            if reason is None:
                submitted = submit_job(
                    self.config,
                    job,
                    trigger="schedule",
                    scheduled_for=decision.slot,
                    app=self.sparkjobs_app,
                )
                if submitted.created:
                    logger.info("beat: fired %s for %s", job.name, decision.slot.isoformat())
            else:
                self._record_skip(job, decision.slot, reason)
        if plan.unlisted:
            logger.warning(
                "beat: %s missed %d older slot(s), not recorded", job.name, plan.unlisted
            )
        with self.sessions.begin() as session:
            set_next_fire(session, job.name, plan.next_slot)

    def _record_skip(self, job: Job, slot: datetime, reason: str) -> None:
        from sparkjobs.store.models import RunKind, Status, Trigger
        from sparkjobs.store.runs import create_run

        with self.sessions.begin() as session:
            run, created = create_run(
                session,
                job=job.name,
                kind=RunKind(job.kind),
                trigger=Trigger.SCHEDULE,
                params=dict(job.params),
                scheduled_for=slot,
                status=Status.SKIPPED,
            )
            if created:
                run.error = reason
                logger.info("beat: skipped %s for %s: %s", job.name, slot.isoformat(), reason)

    def _seen(self, job: Job, now: datetime) -> SeenJob:
        from sparkjobs.store.jobs import SeenJob

        entry = self.schedule.get(job.name)
        after = (entry.last_run_at if entry is not None else None) or now
        return SeenJob(
            name=job.name,
            schedule=describe(job.schedule),
            tz=schedule_tz(job.schedule),
            next_fire=next_fire(job.schedule, max(after, now)) if job.schedule else None,
            paused=job.paused,
            file=job.origin.file,
            line=job.origin.line,
        )
