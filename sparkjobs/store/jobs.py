"""The jobs table: what the scheduler sees, and the paused flags people set.

The job files are the truth about what a job does; this table is the truth about
whether it is paused, and a record of what the active scheduler last loaded (for
the CLI and the run page). Each function works inside the caller's transaction.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from sparkjobs.store.keyed import insert_ignoring_conflicts
from sparkjobs.store.models import JobRecord, Run, Trigger


@dataclass(frozen=True)
class SeenJob:
    """One job as loaded from its file."""

    name: str
    schedule: str
    tz: str
    next_fire: datetime | None
    paused: bool  # the initial state the file gives; the table keeps later changes
    file: str
    line: int


def record_jobs(session: Session, seen: Iterable[SeenJob], *, now: datetime) -> None:
    """Upsert the jobs just loaded, keeping their paused flags; mark the rest undefined."""
    names = []
    for job in seen:
        names.append(job.name)
        values = {
            "name": job.name,
            "schedule": job.schedule,
            "tz": job.tz,
            "next_fire": job.next_fire,
            "defined": True,
            "last_seen": now,
            "file": job.file,
            "line": job.line,
        }
        if not insert_ignoring_conflicts(
            session, JobRecord, {**values, "paused": job.paused, "paused_changed_at": None}
        ):
            session.execute(update(JobRecord).where(JobRecord.name == job.name).values(**values))
    session.execute(
        update(JobRecord)
        .where(JobRecord.name.not_in(names), JobRecord.defined.is_(True))
        .values(defined=False, next_fire=None)
    )


def set_next_fire(session: Session, name: str, next_fire: datetime | None) -> None:
    """Record when a job fires next."""
    session.execute(update(JobRecord).where(JobRecord.name == name).values(next_fire=next_fire))


def job_records(session: Session) -> dict[str, JobRecord]:
    """Every row of the jobs table, by name."""
    return {row.name: row for row in session.scalars(select(JobRecord))}


def set_paused(session: Session, seen: SeenJob, paused: bool, *, now: datetime) -> bool:
    """Pause or resume a job, adding its row if the scheduler has not yet.

    Returns:
        True if the flag changed, False if it already had that value.
    """
    insert_ignoring_conflicts(
        session,
        JobRecord,
        {
            "name": seen.name,
            "schedule": seen.schedule,
            "tz": seen.tz,
            "next_fire": seen.next_fire,
            "paused": not paused,
            "paused_changed_at": None,
            "defined": True,
            "last_seen": now,
            "file": seen.file,
            "line": seen.line,
        },
    )
    changed = session.execute(
        update(JobRecord)
        .where(JobRecord.name == seen.name, JobRecord.paused.is_not(paused))
        .values(paused=paused, paused_changed_at=now)
        .execution_options(preserve_rowcount=True)
    )
    return bool(getattr(changed, "rowcount", 0) == 1)


def last_slots(session: Session) -> dict[str, datetime]:
    """The newest scheduled slot recorded for each job (fired or skipped)."""
    rows = session.execute(
        select(Run.job, func.max(Run.scheduled_for))
        .where(Run.trigger == Trigger.SCHEDULE, Run.scheduled_for.is_not(None))
        .group_by(Run.job)
    )
    return {job: _aware(slot) for job, slot in rows if slot is not None}


def last_runs(session: Session, names: Iterable[str]) -> dict[str, Run]:
    """The most recently created run of each named job."""
    wanted = list(names)
    newest = (
        select(Run.job, func.max(Run.created_at).label("created"))
        .where(Run.job.in_(wanted))
        .group_by(Run.job)
        .subquery()
    )
    runs = session.scalars(
        select(Run).join(newest, (Run.job == newest.c.job) & (Run.created_at == newest.c.created))
    )
    return {run.job: run for run in runs}


def _aware(moment: datetime) -> datetime:
    # SQLite keeps no zone; the store writes UTC there.
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
