"""When a step (or a piece of one) is tried again after a retryable model-server error.

Exponential backoff with full jitter, capped by `tasks.max_retry_delay_s`: retries of
many pieces that failed together spread out instead of hitting the server in step.
The cap also bounds how long a message waits, which the visibility timeout includes.
"""

from __future__ import annotations

import random
from collections.abc import Callable

MAX_RETRIES = 6
BASE_DELAY_S = 1.0


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
