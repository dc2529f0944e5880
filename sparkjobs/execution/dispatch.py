"""Publishing the messages of a run: a step, a piece of long speech, a join.

Each message carries ids only (run id, step index, piece index) and `service=`,
which the ServiceRouter turns into the queue of the node that hosts the service.
Results never travel in messages: the receiving task reads SQL.
"""

from __future__ import annotations

import uuid

from celery import Celery

STEP_TASK = "sparkjobs.step"
PIECE_TASK = "sparkjobs.speak_piece"
JOIN_TASK = "sparkjobs.join_audio"


def publish_step(app: Celery, run_id: uuid.UUID, index: int, service: str) -> None:
    """Queue step `index` of a run on its service's node."""
    app.send_task(STEP_TASK, kwargs={"run_id": str(run_id), "index": index, "service": service})


def publish_piece(app: Celery, run_id: uuid.UUID, index: int, piece: int, service: str) -> None:
    """Queue the synthesis of one piece of step `index`'s text."""
    kwargs = {"run_id": str(run_id), "index": index, "piece": piece, "service": service}
    app.send_task(PIECE_TASK, kwargs=kwargs)


def publish_join(app: Celery, run_id: uuid.UUID, index: int, service: str) -> None:
    """Queue the join of step `index`'s pieces (on the node that stored them)."""
    app.send_task(JOIN_TASK, kwargs={"run_id": str(run_id), "index": index, "service": service})
