"""Publishing the messages of a run: a step, a piece of long speech, a join.

Each message carries ids only (run id, step index, piece index) and `service=`,
which the ServiceRouter turns into the queue of the node that hosts the service.
Results never travel in messages: the receiving task reads SQL. Its priority is its
run's: interactive runs 0 (Redis' highest), background work lower. A message a task
publishes inherits the task's priority unless told (`task_inherit_parent_priority`).
"""

from __future__ import annotations

import uuid
from typing import Any

from celery import Celery

from sparkjobs.broker.labels import task_label

INTERACTIVE_PRIORITY = 0
BACKGROUND_PRIORITY = 6

# A message published with a slot of its service reserved for it names its unit here,
# so that its task gives the slot back if it ends without claiming it.
RESERVED_HEADER = "sparkjobs_reserved"

STEP_TASK = "sparkjobs.step"
PIECE_TASK = "sparkjobs.speak_piece"
JOIN_TASK = "sparkjobs.join_audio"


def message_priority(app: Celery, interactive: bool | None) -> dict[str, Any]:
    """The priority option of a message: the run's if known, else the publishing
    task's (inherited), else background."""
    if interactive is not None:
        return {"priority": INTERACTIVE_PRIORITY if interactive else BACKGROUND_PRIORITY}
    if app.current_worker_task is not None:
        return {}
    return {"priority": BACKGROUND_PRIORITY}


def publish_step(
    app: Celery,
    run_id: uuid.UUID,
    index: int,
    service: str,
    *,
    interactive: bool | None = None,
    job: str | None = None,
    steps: int | None = None,
    kind: str | None = None,
    producer: Any = None,
    reserved: str | None = None,
) -> None:
    """Queue step `index` of a run on its service's node.

    `job`, `steps`, `kind`: the run's job name, its number of steps and this step's
    kind, for the message's Flower label (`labels.task_label`); the store is read
    for whichever is missing. `producer`: a kombu producer to reuse (bulk publishing).
    `reserved`: the unit a slot of the service is reserved for (`RESERVED_HEADER`).
    """
    label = task_label(app, run_id, index, service, job=job, steps=steps, kind=kind)
    app.send_task(STEP_TASK, kwargs={"run_id": str(run_id), "index": index, "service": service},
                  kwargsrepr=label, producer=producer, **_reserved(reserved),
                  **message_priority(app, interactive))  # fmt: skip


def publish_piece(
    app: Celery, run_id: uuid.UUID, index: int, piece: int, service: str,
    *, interactive: bool | None = None, job: str | None = None, steps: int | None = None,
    reserved: str | None = None,
) -> None:  # fmt: skip
    """Queue the synthesis of one piece of step `index`'s text (`job`, `steps`,
    `reserved`: as in `publish_step`)."""
    kwargs = {"run_id": str(run_id), "index": index, "piece": piece, "service": service}
    label = task_label(app, run_id, index, service, part=f"piece {piece + 1}", job=job,
                       steps=steps, kind=None if job is None else "speak")  # fmt: skip
    app.send_task(PIECE_TASK, kwargs=kwargs, kwargsrepr=label, **_reserved(reserved),
                  **message_priority(app, interactive))  # fmt: skip


def publish_join(
    app: Celery, run_id: uuid.UUID, index: int, service: str,
    *, interactive: bool | None = None, job: str | None = None, steps: int | None = None,
    partial: bool = False,
) -> None:  # fmt: skip
    """Queue the join of step `index`'s pieces (on the node that stored them); `partial`:
    of the pieces made so far, for a step that failed while it was spoken."""
    label = task_label(app, run_id, index, service, part="join", job=job, steps=steps,
                       kind=None if job is None else "speak")  # fmt: skip
    kwargs: dict[str, Any] = {"run_id": str(run_id), "index": index, "service": service}
    if partial:
        kwargs["partial"] = True
    app.send_task(JOIN_TASK, kwargs=kwargs, kwargsrepr=label,
                  **message_priority(app, interactive))  # fmt: skip


def _reserved(unit: str | None) -> dict[str, Any]:
    return {} if unit is None else {"headers": {RESERVED_HEADER: unit}}
