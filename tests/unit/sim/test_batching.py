"""The continuous-batching model: its shape, computed, not timed."""

from __future__ import annotations

import asyncio

import pytest

from sparkjobs.config.sections import SimProfile
from sparkjobs.sim.batching import BatchEngine

GEMMA = SimProfile().for_kind("openai")


def _rates(engine: BatchEngine, running: int) -> tuple[float, float]:
    """(aggregate, per-stream) tokens/s with `running` sequences decoding."""
    engine._running = [object()] * running  # type: ignore[list-item]
    step_s = engine._step_s(GEMMA, prefill_tokens=0)
    return running / step_s, 1 / step_s


def test_one_stream_decodes_at_the_profile_speed() -> None:
    aggregate, per_stream = _rates(BatchEngine(lambda: GEMMA), 1)
    assert aggregate == per_stream == pytest.approx(52.0)


def test_aggregate_rises_and_per_stream_speed_falls_with_concurrency() -> None:
    engine = BatchEngine(lambda: GEMMA)
    rates = [_rates(engine, n) for n in (1, 2, 3, 8, 32)]
    aggregates = [a for a, _ in rates]
    streams = [s for _, s in rates]
    assert aggregates == sorted(aggregates)
    assert streams == sorted(streams, reverse=True)
    assert aggregates[2] == pytest.approx(114.6, rel=0.05)  # the seed's 3-stream figure


def test_at_most_max_num_seqs_run_and_the_rest_wait() -> None:
    async def scenario() -> tuple[int, int, list[int]]:
        profile = SimProfile(time_scale=1000, max_num_seqs=2).for_kind("openai")
        engine = BatchEngine(lambda: profile)
        first_tokens = asyncio.Event()
        counts: list[int] = []

        async def consume() -> None:
            n = 0
            async for _ in engine.generate(10, 5):
                n += 1
                first_tokens.set()
            counts.append(n)

        tasks = [asyncio.create_task(consume()) for _ in range(5)]
        await first_tokens.wait()
        seen = (engine.running, engine.waiting)
        await asyncio.gather(*tasks)
        await engine.close()
        return (*seen, counts)

    running, waiting, counts = asyncio.run(scenario())
    assert (running, waiting) == (2, 3)
    assert counts == [5] * 5
