"""Legible task arguments for Flower: "morning-briefing · step 2/2 speak on orpheus@spark2".

Messages carry ids only; the label is what Flower (and the worker's log) shows in
their place, set as the message's `kwargsrepr`, so the task's real arguments stay
ids. A label names the job, the step, its kind, service and node, never a prompt,
a text or a secret. If the store cannot say, the label is built from what is known.
"""

from __future__ import annotations

import functools
import logging
import uuid
from typing import TYPE_CHECKING

from sqlalchemy import func, select

from sparkjobs.store.models import Run, Step

if TYPE_CHECKING:
    from celery import Celery

log = logging.getLogger(__name__)


@functools.lru_cache(maxsize=1024)
def _describe(database_url: str, run_id: uuid.UUID, index: int) -> tuple[str, int, str]:
    from sparkjobs.execution.state import sessions_for

    with sessions_for(database_url)() as session:
        job = session.scalar(select(Run.job).where(Run.id == run_id)) or "?"
        total = session.scalar(select(func.count()).where(Step.run_id == run_id)) or 0
        kind = session.scalar(select(Step.name).where(Step.run_id == run_id, Step.index == index))
    return job, int(total), kind or "step"


def task_label(app: Celery, run_id: uuid.UUID, index: int, service: str, *, part: str = "") -> str:
    """The label of a message for step `index` of a run (`part`: "piece 3", "join")."""
    config = getattr(app, "sparkjobs_config", None)
    node = "?"
    job, total, kind = "?", 0, "step"
    if config is not None:
        spec = config.services.get(service)
        node = spec.node if spec is not None else "?"
        try:
            job, total, kind = _describe(config.database, run_id, index)
        except Exception as exc:  # a label is decoration: never fail a publish for it
            log.debug("no label for run %s: %s", run_id, exc)
    of = f"/{total}" if total else ""
    extra = f" {part}" if part else ""
    return f"{job} · step {index + 1}{of} {kind}{extra} on {service}@{node} · run {run_id}"
