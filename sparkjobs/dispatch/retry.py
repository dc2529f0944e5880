"""When a step (or a piece of one) is tried again after a retryable model-server error.

Exponential backoff with full jitter, capped by `tasks.max_retry_delay_s`: retries of
many pieces that failed together spread out instead of hitting the server in step.
The cap also bounds how long a message waits, which the visibility timeout includes.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sparkjobs.config.sections import TasksConfig

MAX_RETRIES = 6
BASE_DELAY_S = 1.0
VISIBILITY_MARGIN_S = 60
# Celery stops a task after its own max_retries (None means the task's default, 3):
# this policy and the wait deadline decide, so Celery's limit must never come first.
CELERY_MAX_RETRIES = 1_000_000


def retry_delay_s(
    retries: int,
    *,
    max_delay_s: float,
    base_s: float = BASE_DELAY_S,
    rand: Callable[[], float] = random.random,
) -> float:
    """Seconds to wait before retry number `retries + 1`.

    Args:
        retries: how many retries have already happened (0 before the first).
        max_delay_s: the cap (`config.tasks.max_retry_delay_s`).
        base_s: the ceiling of the first delay; it doubles with each retry.
        rand: a uniform [0, 1) source; injectable so tests need no randomness.
    """
    ceiling = min(max_delay_s, base_s * 2.0 ** max(retries, 0))
    return ceiling * rand()


def should_retry(retries: int, *, max_retries: int = MAX_RETRIES) -> bool:
    """Whether a task that has been retried `retries` times may be retried again."""
    return retries < max_retries


def max_countdown_s(tasks: TasksConfig) -> float:
    """The longest countdown a retry or a wait may use.

    A message waiting for its countdown is held unacknowledged, and the broker's
    visibility timeout counts that time too: the countdown must stay below the
    timeout minus the time the attempt itself may take, or the message is
    delivered a second time while it waits.
    """
    room_s = tasks.visibility_s - tasks.time_limit_s - VISIBILITY_MARGIN_S
    return float(max(1.0, min(float(tasks.max_retry_delay_s or 1), room_s)))
