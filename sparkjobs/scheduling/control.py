"""The jobs of schedules_dir as people act on them: list, fire now, pause, resume.

The run page and the JSON API call these (the CLI's `jobs` commands do the same
things); every error names the job and the known ones.
"""

from __future__ import annotations

import difflib
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sparkjobs.errors import BadInput

if TYPE_CHECKING:
    from collections.abc import Mapping

    from sqlalchemy.orm import Session, sessionmaker

    from sparkjobs.config import Config
    from sparkjobs.jobs.define import Job
    from sparkjobs.store.jobs import SeenJob
    from sparkjobs.store.models import Run


class UnknownJob(BadInput):
    """A request named a job that no job file defines."""


@dataclass(frozen=True)
class JobRow:
    """One job as the run page shows it."""

    name: str
    description: str
    schedule: str
    tz: str
    next_fire: datetime | None
    paused: bool
    last_run: Run | None
    file: str


@dataclass(frozen=True)
class Fired:
    """What firing a job did: a queued run, or a skipped one and why."""

    run_id: uuid.UUID
    status: str
    reason: str | None = None


def loaded_jobs(config: Config) -> dict[str, Job]:
    """The good jobs of schedules_dir, by name (broken files are left out)."""
    from sparkjobs.jobs.files import load_jobs

    return load_jobs(config).by_name()


def find_job(config: Config, name: str) -> Job:
    """The job `name`, or UnknownJob naming a close match and the known ones."""
    jobs = loaded_jobs(config)
    if name not in jobs:
        close = difflib.get_close_matches(name, list(jobs), n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise UnknownJob(
            f"no job {name!r} in {config.schedules_dir}; {hint}"
            f"known: {', '.join(sorted(jobs)) or 'none'}"
        )
    return jobs[name]


def seen(job: Job, now: datetime) -> SeenJob:
    """`job` as the jobs table records it."""
    from sparkjobs.jobs.slots import describe, next_fire, schedule_tz
    from sparkjobs.store.jobs import SeenJob

    upcoming = next_fire(job.schedule, now) if job.schedule else None
    return SeenJob(
        job.name, describe(job.schedule), schedule_tz(job.schedule), upcoming, job.paused,
        job.origin.file, job.origin.line,
    )  # fmt: skip


def job_rows(config: Config, session: Session, *, now: datetime | None = None) -> list[JobRow]:
    """Every job with its schedule, next fire (None when paused), paused flag and last run."""
    from sparkjobs.store.jobs import job_records, last_runs

    now = now or datetime.now(UTC)
    jobs = loaded_jobs(config)
    records = job_records(session)
    runs = last_runs(session, list(jobs))
    rows = []
    for job in jobs.values():
        row = seen(job, now)
        paused = records[job.name].paused if job.name in records else job.paused
        rows.append(
            JobRow(
                job.name, job.description, row.schedule, row.tz,
                None if paused else row.next_fire, paused, runs.get(job.name), str(job.origin),
            )
        )  # fmt: skip
    return rows


def fire(
    config: Config,
    sessions: sessionmaker[Session],
    name: str,
    *,
    params: Mapping[str, Any] | None = None,
    trigger: str = "manual",
) -> Fired:
    """Fire job `name` now; its overlap policy may record a skipped run instead.

    Raises:
        UnknownJob, BadInput: as `submit_job`; Unreachable: database or broker.
    """
    from sparkjobs.jobs.slots import overlap_skip_reason
    from sparkjobs.runs.params import run_params
    from sparkjobs.runs.submit import active_run_exists, submit_job
    from sparkjobs.store.models import RunKind, Status, Trigger
    from sparkjobs.store.runs import create_run

    job = find_job(config, name)
    reason = overlap_skip_reason(job, active_run_exists(config, job.name))
    if reason is None:
        submitted = submit_job(config, job, params=params, trigger=trigger)
        return Fired(submitted.run_id, "queued")
    with sessions.begin() as session:
        skipped, _ = create_run(
            session, job=job.name, kind=RunKind(job.kind), trigger=Trigger(trigger),
            params=run_params(job, params), status=Status.SKIPPED,
        )  # fmt: skip
        skipped.error = reason
        return Fired(skipped.id, "skipped", reason)


def set_job_paused(
    config: Config, sessions: sessionmaker[Session], name: str, paused: bool
) -> bool:
    """Pause or resume job `name`; True when that changed its flag."""
    from sparkjobs.store.jobs import set_paused

    job = find_job(config, name)
    now = datetime.now(UTC)
    with sessions.begin() as session:
        return set_paused(session, seen(job, now), paused, now=now)
