"""What the metrics gauges read at scrape time, and the worker hook that observes steps.

Counts come from SQL (the truth about runs and steps) and the queue's length from
Redis; `install(app)` connects the hook that observes each finished step once.
"""

from __future__ import annotations

import logging
import uuid
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select

from sparkjobs.store.models import Attempt, AttemptStatus, Run, Status, Step

if TYPE_CHECKING:
    from sqlalchemy.orm import Session, sessionmaker

    from sparkjobs.broker.app import SparkjobsApp
    from sparkjobs.config import Config

log = logging.getLogger(__name__)

# The tasks after which a step may have finished: a step itself, or the join of a
# speak step's pieces.
FINISHING_TASKS = ("sparkjobs.step", "sparkjobs.join_audio")


def _sessions(database_url: str) -> sessionmaker[Session]:
    from sparkjobs.store.engine import shared_sessions

    return shared_sessions(database_url)


def runs_by_status(config: Config) -> dict[str, int]:
    """How many runs the store holds in each status (every status, zeros included)."""
    with _sessions(config.database)() as session:
        rows = session.execute(select(Run.status, func.count()).group_by(Run.status))
        found = {Status(status).value: int(count) for status, count in rows}
    return {status.value: found.get(status.value, 0) for status in Status}


def steps_now(config: Config, node: str) -> tuple[dict[tuple[str, str], int], dict[str, int]]:
    """Steps of `node` by (service, status), and running attempts by service."""
    with _sessions(config.database)() as session:
        rows = session.execute(
            select(Step.service, Step.status, func.count())
            .where(Step.node == node)
            .group_by(Step.service, Step.status)
        )
        counts = {(service, Status(status).value): int(n) for service, status, n in rows}
        running = session.execute(
            select(Step.service, func.count())
            .join(Attempt, Attempt.step_id == Step.id)
            .where(Step.node == node, Attempt.status == AttemptStatus.RUNNING)
            .group_by(Step.service)
        )
        return counts, {service: int(n) for service, n in running}


def queue_depth(config: Config, node: str) -> int | None:
    """Messages waiting in `node`'s queue, or None when Redis does not answer."""
    from sparkjobs.broker.client import queue_keys, redis_client

    try:
        client = redis_client(config, timeout_s=1.0)
        try:
            # Every priority level is a list of its own.
            keys = queue_keys(config.broker_key_prefix, node)
            return sum(int(client.llen(key)) for key in keys)
        finally:
            client.close()
    except Exception as exc:  # a scrape reports what it can
        log.warning("metrics: the broker did not answer: %s", exc)
        return None


def observe_finished(config: Config, run_id: str, index: int) -> None:
    """Observe step `index` of a run if it has finished (see `sparkjobs.observe.metrics`)."""
    from sparkjobs.observe.metrics import observe_step

    with _sessions(config.database)() as session:
        step = session.scalar(
            select(Step).where(Step.run_id == uuid.UUID(run_id), Step.index == index)
        )
        if step is not None:
            observe_step(step)


def install(app: SparkjobsApp) -> None:
    """Observe steps as this worker's tasks finish them."""
    from celery.signals import task_postrun

    config = app.sparkjobs_config

    def after_task(sender: Any = None, kwargs: dict[str, Any] | None = None, **_: Any) -> None:
        if getattr(sender, "name", None) not in FINISHING_TASKS or not kwargs:
            return
        try:
            observe_finished(config, str(kwargs["run_id"]), int(kwargs["index"]))
        except Exception as exc:  # metrics never fail a task
            log.warning("metrics: could not observe step: %s", exc)

    task_postrun.connect(after_task, weak=False)
