"""Acting on runs that exist: cancel one, or run one again with the same inputs.

Cancelling is recorded in SQL first, so no step that has not started will start
(a worker's `start_attempt` returns None for a finished run), and then the tasks
running now are revoked through Celery's remote control. A thread cannot be
stopped from outside, so the running step notices at its next checkpoint: before
the next step or piece is queued, and before a piece of speech is sent.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import select, update
from sqlalchemy.exc import DBAPIError

from sparkjobs.artifacts.locate import store_sessions
from sparkjobs.broker.notify import announce_finished
from sparkjobs.jobs.define import (
    ChatStep,
    CloneStep,
    Cron,
    CustomStep,
    Job,
    Origin,
    SpeakStep,
    Step,
)
from sparkjobs.store.attempts import finish_step
from sparkjobs.store.engine import reading, unreachable
from sparkjobs.store.models import Attempt, AttemptStatus, Run, Status
from sparkjobs.store.models import Step as StepRow
from sparkjobs.store.queries import get_run
from sparkjobs.store.runs import finish_run, utc_now

if TYPE_CHECKING:
    from sparkjobs.broker.app import SparkjobsApp
    from sparkjobs.config import Config
    from sparkjobs.runs.submit import Submitted

CANCELLED_ERROR = "cancelled"


@dataclass(frozen=True)
class Cancelled:
    """What `cancel_run` did: the run's status before and after, and the tasks revoked."""

    run_id: uuid.UUID
    previous: Status
    status: Status
    revoked: tuple[str, ...]

    @property
    def changed(self) -> bool:
        """False when the run had already finished: then nothing was done."""
        return self.previous != self.status


def cancel_run(
    config: Config, run_id: uuid.UUID | str, *, app: SparkjobsApp | None = None
) -> Cancelled:
    """Mark a queued or running run cancelled, with its unfinished steps, and revoke
    the tasks still running for it. A finished run is left as it is.

    Raises:
        UnknownRun: no such run (or not a UUID).
        Unreachable: the database did not answer (nothing changed), or the broker
            did not (the run is cancelled in SQL all the same).
    """
    now = utc_now()
    try:
        with store_sessions(config) as sessions, sessions.begin() as session:
            run = get_run(session, run_id)
            previous = run.status
            if previous.terminal:
                return Cancelled(run.id, previous, previous, ())
            running = list(session.scalars(
                select(Attempt.task_id).join(StepRow, StepRow.id == Attempt.step_id)
                .where(StepRow.run_id == run.id, Attempt.finished_at.is_(None))
            ))  # fmt: skip
            finish_run(session, run.id, status=Status.CANCELLED, error=CANCELLED_ERROR, now=now)
            for step in run.steps:
                finish_step(session, step.id, status=Status.CANCELLED, error=CANCELLED_ERROR,
                            now=now)  # fmt: skip
            session.execute(
                update(Attempt)
                .where(Attempt.step_id.in_([step.id for step in run.steps]),
                       Attempt.finished_at.is_(None))
                .values(finished_at=now, status=AttemptStatus.FAILED, error=CANCELLED_ERROR)
            )  # fmt: skip
    except DBAPIError as exc:
        raise unreachable(config.database, exc) from exc
    announce_finished(config, app.redis if app is not None else None, run.id, Status.CANCELLED)
    revoked = tuple(sorted(set(running)))
    if revoked:
        _revoke(config, app, list(revoked))
    return Cancelled(run.id, previous, Status.CANCELLED, revoked)


def _revoke(config: Config, app: SparkjobsApp | None, task_ids: list[str]) -> None:
    from kombu.exceptions import OperationalError

    from sparkjobs.broker.app import create_app
    from sparkjobs.config.render import mask_url
    from sparkjobs.errors import Unreachable

    try:
        # terminate=False: the threads pool cannot kill a thread; revoking still
        # drops any redelivery of these tasks, and the checkpoints do the rest.
        (app or create_app(config)).control.revoke(task_ids, terminate=False)
    except OperationalError as exc:
        raise Unreachable(
            f"broker {mask_url(config.broker)} is unreachable ({exc}); the run is cancelled "
            "in SQL, and its running step stops at its next checkpoint"
        ) from exc


def rerun_job(run: Run) -> Job:
    """The job that `run` ran, rebuilt from its steps as stored (same services, texts,
    voices and parameters), so that a rerun does not depend on today's job files."""
    steps = tuple(_step_from(row.spec or {}, row.service) for row in run.steps)
    tz = str((run.steps[0].spec or {}).get("tz", "UTC")) if run.steps else "UTC"
    # Only the time zone of the schedule matters to submission (templates see the
    # slot in it); a rerun is not scheduled.
    schedule = Cron("0 0 * * *", tz=tz) if tz != "UTC" else None
    return Job(run.job, steps, schedule=schedule, params=dict(run.params or {}))


def rerun(config: Config, run_id: uuid.UUID | str, *, app: SparkjobsApp | None = None) -> Submitted:
    """Submit a new run with the inputs of run `run_id` (trigger `retry`, `rerun_of` set).

    Raises:
        UnknownRun: no such run. BadInput: a service it used is no longer configured.
        Unreachable: as `submit_job`.
    """
    from sparkjobs.runs.submit import submit_job

    try:
        with store_sessions(config) as sessions, reading(sessions) as session:
            original = get_run(session, run_id)
    except DBAPIError as exc:
        raise unreachable(config.database, exc) from exc
    submitted = submit_job(config, rerun_job(original), trigger="retry", app=app)
    try:
        with store_sessions(config) as sessions, sessions.begin() as session:
            session.execute(
                update(Run).where(Run.id == submitted.run_id).values(rerun_of=original.id)
            )
    except DBAPIError as exc:
        raise unreachable(config.database, exc) from exc
    return submitted


_STEP_TYPES: dict[str, type[Any]] = {
    "chat": ChatStep, "speak": SpeakStep, "clone": CloneStep, "custom": CustomStep,
}  # fmt: skip


def _step_from(spec: dict[str, Any], service: str) -> Step:
    kind = str(spec.get("kind", "custom"))
    cls = _STEP_TYPES[kind]
    fields = {name: value for name, value in spec.items()
              if name in cls.__dataclass_fields__ and name not in ("origin", "kind")}  # fmt: skip
    file, _, line = str(spec.get("origin", "?:0")).rpartition(":")
    origin = Origin(file or "?", int(line) if line.isdigit() else 0)
    step: Step = cls(**{**fields, "service": service}, origin=origin)
    return step
