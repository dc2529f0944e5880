"""`sparkjobs.broker.ping`: proves the path sender -> broker -> a node's worker -> back."""

from __future__ import annotations

import json
import time
from typing import Any, cast

from celery import Task, shared_task

from sparkjobs.broker.app import SparkjobsApp

REPLY_TTL_S = 120
MAX_HOLD_S = 600.0


@shared_task(name="sparkjobs.ping", bind=True)
def ping(self: Task[Any, Any], node: str, reply_to: str, hold_s: float = 0.0) -> None:
    """Answer on the Redis list `reply_to` with who ran this and from which queue.

    `hold_s` keeps the worker's slot busy first, to watch how a worker hands a
    running task back when it is stopped (`sparkjobs ping --hold 30`).
    """
    app = cast(SparkjobsApp, self.app)
    if hold_s > 0:
        time.sleep(min(hold_s, MAX_HOLD_S))
    delivery = self.request.delivery_info or {}
    answer = {
        "node": node,
        "worker": self.request.hostname,
        "queue": delivery.get("routing_key"),
        "task_id": self.request.id,
        "answered_at": time.time(),
    }
    pipe = app.redis.pipeline()
    pipe.rpush(reply_to, json.dumps(answer))
    pipe.expire(reply_to, REPLY_TTL_S)
    pipe.execute()
