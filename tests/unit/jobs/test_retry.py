"""The retry policy: exponential backoff with full jitter, capped."""

from __future__ import annotations

import pytest

from sparkjobs.dispatch.retry import MAX_RETRIES, retry_delay_s, should_retry


@pytest.mark.parametrize(
    ("retries", "cap", "expected"),
    [(0, 300, 1.0), (1, 300, 2.0), (4, 300, 16.0), (10, 300, 300.0), (3, 5, 5.0), (2, 0, 0.0)],
)
def test_the_ceiling_doubles_per_retry_up_to_the_cap(
    retries: int, cap: float, expected: float
) -> None:
    assert retry_delay_s(retries, max_delay_s=cap, rand=lambda: 1.0) == expected


def test_jitter_spreads_the_delay_below_the_ceiling() -> None:
    assert retry_delay_s(3, max_delay_s=300, rand=lambda: 0.25) == 2.0
    assert retry_delay_s(3, max_delay_s=300, rand=lambda: 0.0) == 0.0


def test_retries_stop_after_the_limit() -> None:
    assert should_retry(0)
    assert should_retry(MAX_RETRIES - 1)
    assert not should_retry(MAX_RETRIES)
