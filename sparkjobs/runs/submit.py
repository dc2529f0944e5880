"""Durable submission: a run and its steps are written to SQL before any message exists.

`submit_job` validates the parameters, resolves every step's service, writes the run
(queued) and its steps in one transaction, and only then publishes the first step.
A scheduled slot has a unique key, so a second fire of the same slot finds the run
already there and publishes nothing. If the database cannot be reached, nothing is
published; if the broker cannot, the run stays queued for the reconciler.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from redis.exceptions import RedisError
from sqlalchemy import exists, select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from sparkjobs.artifacts.locate import store_sessions
from sparkjobs.broker.publish import publish_step
from sparkjobs.dispatch.admission import gate_of, unit_of
from sparkjobs.dispatch.gate import Seat
from sparkjobs.dispatch.standing import GATED_KINDS
from sparkjobs.errors import BadInput, Unreachable
from sparkjobs.runs.params import run_params
from sparkjobs.runs.plan import StepPlan, plan_job
from sparkjobs.store.direct import transaction
from sparkjobs.store.engine import engine_of, reading, unreachable
from sparkjobs.store.keyed import insert_new
from sparkjobs.store.models import Run, RunKind, Status, Step, Trigger
from sparkjobs.store.runs import create_run, run_values, step_values, utc_now

if TYPE_CHECKING:
    from sparkjobs.broker.app import SparkjobsApp
    from sparkjobs.config import Config
    from sparkjobs.jobs.define import Job

# Messages sent in one round trip when many runs are submitted at once: most of the
# round trips saved, and workers start on the first runs within milliseconds.
PUBLISH_BATCH = 50


@dataclass(frozen=True)
class Submitted:
    """The run a submission wrote, and whether this call created it."""

    run_id: uuid.UUID
    created: bool


def submit_job(
    config: Config,
    job: Job,
    *,
    params: Mapping[str, Any] | None = None,
    trigger: str,
    scheduled_for: datetime | None = None,
    app: SparkjobsApp | None = None,
    interactive: bool = False,
    sessions: sessionmaker[Session] | None = None,
) -> Submitted:
    """Write a run of `job` and its steps to SQL, then queue its first step.

    Args:
        config: the cluster config.
        job: the job to run.
        params: overrides of the job's parameters.
        trigger: "schedule", "submit", "manual", "api" or "retry".
        scheduled_for: the slot a schedule fired for (aware); unique per job.
        app: the Celery app to publish with (default: a client app of `config`).
        interactive: someone waits for the run (`submit --wait`): every message of
            the run goes ahead of background work, in the queue and for a lease.
        sessions: a session factory to reuse (bulk submitters: the API, benchmarks);
            default: a new engine for this call, disposed of afterwards.

    Returns:
        The run's id, and created=False when the slot's run already existed (then
        nothing was published).

    Raises:
        BadInput: unknown parameter, trigger, or service (nothing written).
        Unreachable: the database (nothing written or published) or the broker
            (the run is written and stays queued) did not answer.
    """
    merged = run_params(job, params)
    plans = plan_job(config, job)
    try:
        kind, how = RunKind(job.kind), Trigger(trigger)
    except ValueError as exc:
        raise BadInput(f"{exc}; triggers: {', '.join(t.value for t in Trigger)}") from exc
    try:
        with store_sessions(config, sessions) as factory:
            # Two statements: the run, then all its steps in one INSERT. A scheduled
            # slot may be taken by another scheduler: its INSERT returns the run it
            # created, or nothing (a Session's work). Any other run has a fresh key:
            # nothing to read back, so its two INSERTs go straight to the driver.
            if scheduled_for is None:
                run = run_values(job=job.name, kind=kind, trigger=how, params=merged,
                                 interactive=interactive)  # fmt: skip
                run_id, created = run["id"], True
                with transaction(engine_of(factory)) as tx:
                    insert_new(tx, Run, [run])
                    insert_new(tx, Step, _step_rows(run_id, plans, run["created_at"]))
            else:
                with factory.begin() as session:
                    slot, created = create_run(
                        session, job=job.name, kind=kind, trigger=how, params=merged,
                        scheduled_for=scheduled_for, interactive=interactive,
                    )  # fmt: skip
                    run_id = slot.id
                    if created:
                        insert_new(session, Step, _step_rows(run_id, plans, slot.created_at))
    except DBAPIError as exc:
        raise unreachable(config.database, exc) from exc
    if created:
        _publish(config, app, [(run_id, job.name, plans)], interactive=interactive)
    return Submitted(run_id, created)


def submit_many(
    config: Config,
    jobs: Sequence[Job],
    *,
    params: Sequence[Mapping[str, Any] | None] | None = None,
    trigger: str,
    app: SparkjobsApp | None = None,
    interactive: bool = False,
    sessions: sessionmaker[Session] | None = None,
) -> list[uuid.UUID]:
    """Submit a run of each of `jobs` at once: `submit_job` in a loop, with one commit.

    Every run gets its own row, steps and message, as with one `submit_job` per job;
    the rows are written in one transaction (a few batched INSERTs) and committed
    before the first message is published, and the messages go out over one broker
    connection. It is all or nothing in SQL: bad input in any job writes nothing.

    Args:
        config: the cluster config.
        jobs: the jobs to run (the same job may appear many times).
        params: overrides of each job's parameters, in the order of `jobs`.
        trigger: "submit", "manual", "api" or "retry" (a scheduled slot goes through
            `submit_job`, whose key makes it unique).
        app: the Celery app to publish with (default: a client app of `config`).
        interactive: someone waits for these runs.
        sessions: a session factory to reuse; default: a new one for this call.

    Returns:
        The runs' ids, in the order of `jobs`.

    Raises:
        BadInput: unknown parameter, trigger, or service; `params` not as long as
            `jobs` (nothing written).
        Unreachable: the database (nothing written or published) or the broker (the
            runs not yet published stay queued, for the reconciler) did not answer.
    """
    if params is not None and len(params) != len(jobs):
        raise BadInput(f"submit_many got {len(jobs)} jobs but {len(params)} sets of parameters")
    try:
        how = Trigger(trigger)
    except ValueError as exc:
        raise BadInput(f"{exc}; triggers: {', '.join(t.value for t in Trigger)}") from exc
    plans: dict[int, list[StepPlan]] = {}  # planned once per job object
    runs, steps, firsts = [], [], []
    now = utc_now()
    for number, job in enumerate(jobs):
        merged = run_params(job, params[number] if params is not None else None)
        planned = plans.get(id(job))
        if planned is None:
            planned = plans[id(job)] = plan_job(config, job)
        try:
            kind = RunKind(job.kind)
        except ValueError as exc:
            raise BadInput(f"job {job.name!r}: {exc}") from exc
        row = run_values(job=job.name, kind=kind, trigger=how, params=merged,
                         interactive=interactive, now=now)  # fmt: skip
        runs.append(row)
        steps.extend(_step_rows(row["id"], planned, now))
        firsts.append((row["id"], job.name, planned))
    try:
        with store_sessions(config, sessions) as factory, factory.begin() as session:
            insert_new(session, Run, runs)
            insert_new(session, Step, steps)
    except DBAPIError as exc:
        raise unreachable(config.database, exc) from exc
    _publish(config, app, firsts, interactive=interactive)
    return [run_id for run_id, _, _ in firsts]


def _step_rows(run_id: uuid.UUID, plans: list[StepPlan], now: datetime) -> list[dict[str, Any]]:
    """The rows of a new run's steps, as planned."""
    rows = []
    for plan in plans:
        where = {"service": plan.service, "node": plan.node, "name": plan.kind}
        rows.append(step_values(run_id, plan.index, spec=plan.spec, now=now, **where))
    return rows


def _publish(
    config: Config,
    app: SparkjobsApp | None,
    firsts: list[tuple[uuid.UUID, str, list[StepPlan]]],
    *,
    interactive: bool,
) -> None:
    """Queue the first step of each (run, job name, plans), over one broker connection,
    `PUBLISH_BATCH` messages a round trip (kombu's `Producer.batch`)."""
    from kombu.exceptions import (  # type: ignore[attr-defined]  # newer than its stubs
        BatchPublishError,
        OperationalError,
    )

    from sparkjobs.broker.app import create_app
    from sparkjobs.config.render import mask_url

    app = app or create_app(config)
    gate = gate_of(app)
    done = 0
    try:
        with app.producer_or_acquire() as producer:
            for start in range(0, len(firsts), PUBLISH_BATCH):
                batch = firsts[start : start + PUBLISH_BATCH]
                # A batch that fails as it is sent counts as not published: the
                # reconciler publishes it, and a run published twice runs once.
                with producer.batch(max_size=PUBLISH_BATCH) if len(batch) > 1 else nullcontext():
                    for run_id, name, plans in batch:
                        first = plans[0]
                        unit = unit_of(run_id, 0, None)
                        seat = Seat.OPEN
                        if first.kind in GATED_KINDS:
                            seat = gate.reserve(first.service, unit, interactive=interactive)
                        if seat is Seat.IN_LINE:
                            continue  # it waits in its service's line, holding nothing
                        publish_step(
                            app, run_id, 0, first.service, interactive=interactive, job=name,
                            steps=len(plans), kind=first.kind, producer=producer,
                            reserved=unit if seat is Seat.RESERVED else None,
                        )  # fmt: skip
                done += len(batch)
    except (OperationalError, BatchPublishError, RedisError) as exc:
        which = (
            f"run {firsts[0][0]} is"
            if len(firsts) == 1
            else f"{len(firsts) - done} of {len(firsts)} runs are"
        )
        raise Unreachable(
            f"broker {mask_url(config.broker)} is unreachable ({exc}); {which} "
            "recorded as queued and will be published once the broker answers"
        ) from exc


def active_run_exists(config: Config, job_name: str) -> bool:
    """Whether a run of `job_name` is queued or running (for the overlap policy).

    Raises:
        Unreachable: the database did not answer.
    """
    # Through the run's unfinished steps (the partial index `ix_steps_unfinished`): a
    # queued or running run has one, and a job's finished runs are never read.
    active = (
        (Step.finished_at.is_(None)) & (Run.id == Step.run_id) & (Run.job == job_name)
        & Run.status.in_([Status.QUEUED, Status.RUNNING])
    )  # fmt: skip
    try:
        with store_sessions(config) as sessions, reading(sessions) as session:
            return bool(session.scalar(select(exists().where(active))))
    except DBAPIError as exc:
        raise unreachable(config.database, exc) from exc
