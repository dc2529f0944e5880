"""Legible task arguments for Flower: "morning-briefing · step 2/2 speak on orpheus@spark2".

Messages carry ids only; the label is what Flower (and the worker's log) shows in
their place, set as the message's `kwargsrepr`, so the task's real arguments stay
ids. A label names the job, the step, its kind, service and node, never a prompt,
a text or a secret. The publisher passes what it knows (job, step count, kind): a
submission and a worker's step both have it at hand, so a message costs no read.
Otherwise one read of the store fills it in, and if the store cannot say, the label
is built from what is known.
"""

from __future__ import annotations

import functools
import logging
import uuid
from typing import TYPE_CHECKING

from sqlalchemy import func, select
from sqlalchemy.orm import aliased

from sparkjobs.store.models import Run, Step

if TYPE_CHECKING:
    from celery import Celery

log = logging.getLogger(__name__)


@functools.lru_cache(maxsize=1024)
def _describe(database_url: str, run_id: uuid.UUID, index: int) -> tuple[str, int, str]:
    from sparkjobs.store.engine import shared_sessions

    others = aliased(Step)  # not the joined step: count all of the run's steps
    total = select(func.count()).select_from(others).where(others.run_id == run_id)
    with shared_sessions(database_url)() as session:
        row = session.execute(
            select(Run.job, total.scalar_subquery().label("total"), Step.name)
            .outerjoin(Step, (Step.run_id == Run.id) & (Step.index == index))
            .where(Run.id == run_id)
        ).first()
    if row is None:
        return "?", 0, "step"
    return row.job, int(row.total or 0), row.name or "step"


def task_label(
    app: Celery,
    run_id: uuid.UUID,
    index: int,
    service: str,
    *,
    part: str = "",
    job: str | None = None,
    steps: int | None = None,
    kind: str | None = None,
) -> str:
    """The label of a message for step `index` of a run (`part`: "piece 3", "join").

    Args:
        job, steps, kind: the run's job name, its number of steps and this step's
            kind, when the publisher knows them; the store is read only when one
            of them is missing.
    """
    config = getattr(app, "sparkjobs_config", None)
    node = "?"
    known = (job, steps, kind)
    if config is not None:
        spec = config.services.get(service)
        node = spec.node if spec is not None else "?"
        if job is None or steps is None or kind is None:
            try:
                known = _describe(config.database, run_id, index)
            except Exception as exc:  # a label is decoration: never fail a publish for it
                log.debug("no label for run %s: %s", run_id, exc)
    name = job if job is not None else known[0] or "?"
    total = steps if steps is not None else known[1] or 0
    what = kind if kind is not None else known[2] or "step"
    of = f"/{total}" if total else ""
    extra = f" {part}" if part else ""
    return f"{name} · step {index + 1}{of} {what}{extra} on {service}@{node} · run {run_id}"
