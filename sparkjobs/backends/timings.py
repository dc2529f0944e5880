"""What one call to a model server cost: time to first token or audio, tokens, speed.

The real-time factor is defined once, here: audio seconds / wall seconds, so higher
is faster and 1.0 is exactly real time.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

Clock = Callable[[], float]


def real_time_factor(audio_s: float, wall_s: float) -> float | None:
    """Audio seconds produced per wall second (higher is faster); None without a wall time."""
    return audio_s / wall_s if wall_s > 0 else None


@dataclass(frozen=True)
class Timings:
    """Timings of one call, measured by the client.

    Attributes:
        wall_ms: from sending the request to the last byte.
        ttft_ms: to the first token (streamed LLM calls; None when not streamed) or
            to the first audio sample (TTS; for a whole WAV, when its body arrives).
        tokens_in: prompt tokens, as the server reported them.
        tokens_out: generated tokens, as reported (or counted from the stream).
        tokens_per_s: tokens_out over the time after the first token (over the whole
            call when there is no first-token time).
        audio_s: seconds of audio returned.
        rtf: audio_s / wall seconds; see `real_time_factor`.
    """

    wall_ms: float
    ttft_ms: float | None = None
    tokens_in: int | None = None
    tokens_out: int | None = None
    tokens_per_s: float | None = None
    audio_s: float | None = None
    rtf: float | None = None


class Stopwatch:
    """Marks the moments of one call; `timings()` turns them into `Timings`.

    Args:
        clock: seconds from an arbitrary origin; injectable so tests need no sleeps.
    """

    def __init__(self, clock: Clock = time.perf_counter) -> None:
        self._clock = clock
        self._start = clock()
        self._first: float | None = None

    def first(self) -> None:
        """Mark the first token or audio sample; later calls are ignored."""
        if self._first is None:
            self._first = self._clock()

    @property
    def started(self) -> bool:
        return self._first is not None

    def timings(
        self,
        *,
        tokens_in: int | None = None,
        tokens_out: int | None = None,
        audio_s: float | None = None,
    ) -> Timings:
        """The timings up to now, with the counts the caller knows."""
        end = self._clock()
        wall_s = end - self._start
        ttft_s = None if self._first is None else self._first - self._start
        return Timings(
            wall_ms=wall_s * 1000,
            ttft_ms=None if ttft_s is None else ttft_s * 1000,
            tokens_in=tokens_in,
            tokens_out=tokens_out,
            tokens_per_s=_decode_rate(tokens_out, wall_s, ttft_s),
            audio_s=audio_s,
            rtf=None if audio_s is None else real_time_factor(audio_s, wall_s),
        )


def _decode_rate(tokens_out: int | None, wall_s: float, ttft_s: float | None) -> float | None:
    # The first token arrives at ttft; the rest share the time after it. That is the
    # decode speed, undistorted by queueing and prefill.
    if not tokens_out:
        return None
    if ttft_s is not None and tokens_out > 1 and wall_s > ttft_s:
        return (tokens_out - 1) / (wall_s - ttft_s)
    return tokens_out / wall_s if wall_s > 0 else None
