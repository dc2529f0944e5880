"""Durable submission: a run and its steps are written to SQL before any message exists.

`submit_job` validates the parameters, resolves every step's service, writes the run
(queued) and its steps in one transaction, and only then publishes the first step.
A scheduled slot has a unique key, so a second fire of the same slot finds the run
already there and publishes nothing. If the database cannot be reached, nothing is
published; if the broker cannot, the run stays queued for the reconciler.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import exists, select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from sparkjobs.artifacts.locate import store_sessions
from sparkjobs.errors import BadInput, Unreachable
from sparkjobs.execution.dispatch import publish_step
from sparkjobs.execution.plan import plan_job
from sparkjobs.store.engine import unreachable
from sparkjobs.store.models import Run, RunKind, Status, Trigger
from sparkjobs.store.queries import get_run
from sparkjobs.store.runs import add_step, create_run

if TYPE_CHECKING:
    from sparkjobs.app import SparkjobsApp
    from sparkjobs.config import Config
    from sparkjobs.jobs import Job

WAIT_POLL_S = 0.2


@dataclass(frozen=True)
class Submitted:
    """The run a submission wrote, and whether this call created it."""

    run_id: uuid.UUID
    created: bool


def run_params(job: Job, params: Mapping[str, Any] | None) -> dict[str, Any]:
    """The job's default parameters overridden by `params`, checked.

    A string given for a parameter whose default is a number or a boolean (as
    `--param days=3` gives) is converted to that type.

    Raises:
        BadInput: an unknown parameter (the known ones are listed), a value that
            does not convert, or one that is not JSON.
    """
    merged = dict(job.params)
    known = ", ".join(sorted(job.params)) or "none"
    for name, value in (params or {}).items():
        if name not in job.params:
            raise BadInput(
                f"unknown parameter {name!r} for job {job.name!r}; known parameters: {known}"
            )
        merged[name] = _convert(job.name, name, value, job.params[name])
    try:
        json.dumps(merged)
    except (TypeError, ValueError) as exc:
        raise BadInput(f"parameters of job {job.name!r} must be JSON values: {exc}") from exc
    return merged


def _convert(job: str, name: str, value: Any, default: Any) -> Any:
    if not isinstance(value, str) or isinstance(default, str) or default is None:
        return value
    try:
        if isinstance(default, bool):
            lowered = value.strip().lower()
            if lowered not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError(value)
            return lowered in ("true", "1", "yes")
        if isinstance(default, int | float):
            return type(default)(value)
    except ValueError as exc:
        raise BadInput(
            f"parameter {name!r} of job {job!r} takes a {type(default).__name__} "
            f"(default {default!r}), not {value!r}"
        ) from exc
    return value


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
        with _sessions(config, sessions) as factory, factory.begin() as session:
            run, created = create_run(
                session, job=job.name, kind=kind, trigger=how, params=merged,
                scheduled_for=scheduled_for,
            )  # fmt: skip
            if created and interactive:
                run.interactive = True
            if created:
                for plan in plans:
                    step = add_step(
                        session, run.id, plan.index, service=plan.service, node=plan.node,
                        name=plan.kind,
                    )  # fmt: skip
                    step.spec = plan.spec
    except DBAPIError as exc:
        raise unreachable(config.database, exc) from exc
    if created:
        _publish(config, app, run.id, plans[0].service, interactive=interactive)
    return Submitted(run.id, created)


@contextmanager
def _sessions(
    config: Config, sessions: sessionmaker[Session] | None
) -> Iterator[sessionmaker[Session]]:
    if sessions is not None:
        yield sessions
        return
    with store_sessions(config) as made:
        yield made


def _publish(
    config: Config, app: SparkjobsApp | None, run_id: uuid.UUID, service: str, *, interactive: bool
) -> None:
    from kombu.exceptions import OperationalError

    from sparkjobs.app import create_app
    from sparkjobs.config.render import mask_url

    try:
        publish_step(app or create_app(config), run_id, 0, service, interactive=interactive)
    except OperationalError as exc:
        raise Unreachable(
            f"broker {mask_url(config.broker)} is unreachable ({exc}); run {run_id} is "
            "recorded as queued and will be published once the broker answers"
        ) from exc


def active_run_exists(config: Config, job_name: str) -> bool:
    """Whether a run of `job_name` is queued or running (for the overlap policy).

    Raises:
        Unreachable: the database did not answer.
    """
    active = (Run.job == job_name) & Run.status.in_([Status.QUEUED, Status.RUNNING])
    try:
        with store_sessions(config) as sessions, sessions() as session:
            return bool(session.scalar(select(exists().where(active))))
    except DBAPIError as exc:
        raise unreachable(config.database, exc) from exc


def wait_for_run(config: Config, run_id: uuid.UUID, *, timeout_s: float | None) -> Run:
    """Poll SQL until the run is terminal, or `timeout_s` passes; the run as it is then.

    Returns:
        The run with everything loaded. After a timeout its status is not terminal
        (check `run.status.terminal`); None waits without limit.

    Raises:
        UnknownRun: no such run.
        Unreachable: the database did not answer.
    """
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    with store_sessions(config) as sessions:
        while True:
            try:
                with sessions() as session:
                    run = get_run(session, run_id)
            except DBAPIError as exc:
                raise unreachable(config.database, exc) from exc
            if run.status.terminal:
                return run
            if deadline is not None and time.monotonic() >= deadline:
                return run
            time.sleep(WAIT_POLL_S)
