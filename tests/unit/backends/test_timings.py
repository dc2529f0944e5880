"""Timings: the real-time factor's one definition, and speeds from an injected clock."""

from __future__ import annotations

import pytest

from sparkjobs.backends.timings import Stopwatch, real_time_factor


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_rtf_is_audio_seconds_over_wall_seconds() -> None:
    assert real_time_factor(10.0, 5.0) == 2.0
    assert real_time_factor(1.0, 0.0) is None


def test_tokens_per_second_count_the_time_after_the_first_token() -> None:
    clock = FakeClock()
    watch = Stopwatch(clock)
    clock.now += 0.5  # queue and prefill
    watch.first()
    clock.now += 2.0  # 20 more tokens
    timings = watch.timings(tokens_in=12, tokens_out=21)
    assert timings.ttft_ms == pytest.approx(500)
    assert timings.wall_ms == pytest.approx(2500)
    assert timings.tokens_per_s == pytest.approx(10.0)
    assert (timings.tokens_in, timings.tokens_out) == (12, 21)


def test_without_a_first_token_the_speed_is_over_the_whole_call() -> None:
    clock = FakeClock()
    watch = Stopwatch(clock)
    clock.now += 4.0
    timings = watch.timings(tokens_out=20, audio_s=8.0)
    assert timings.ttft_ms is None
    assert timings.tokens_per_s == pytest.approx(5.0)
    assert timings.rtf == pytest.approx(2.0)
