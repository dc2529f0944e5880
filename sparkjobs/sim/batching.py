"""A continuous-batching engine model, so throughput against concurrency has vLLM's shape.

Each engine step decodes one token for every running sequence. A step takes
1/tokens_per_s, lengthened by `batch_slowdown` for each extra running sequence, plus
the prefill of sequences admitted in it. So one stream decodes at tokens_per_s,
aggregate throughput rises with concurrency, and per-stream speed falls. At most
`max_num_seqs` run; the rest wait, unbounded (vLLM's default). With max_num_seqs=1
the same engine is Ollama's OLLAMA_NUM_PARALLEL=1: one request after another.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass, field

from sparkjobs.config.sections import SimProfile
from sparkjobs.sim.pace import scaled


@dataclass(eq=False)
class _Sequence:
    prompt_tokens: int
    max_tokens: int
    tokens: asyncio.Queue[int] = field(default_factory=asyncio.Queue)
    generated: int = 0
    cancelled: bool = False


class BatchEngine:
    """Decodes tokens for many sequences at once, in steps.

    Args:
        profile: read at every step, so runtime changes (slow_factor) apply at once.
    """

    def __init__(self, profile: Callable[[], SimProfile]) -> None:
        self._profile = profile
        self._running: list[_Sequence] = []
        self._waiting: deque[_Sequence] = deque()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def running(self) -> int:
        return len(self._running)

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    @property
    def kv_cache_usage(self) -> float:
        """Fraction of the KV cache the running sequences hold, 0 to 1."""
        held = sum(s.prompt_tokens + s.generated for s in self._running)
        return min(1.0, held / self._profile().kv_cache_tokens)

    async def generate(self, prompt_tokens: int, max_tokens: int) -> AsyncGenerator[int, None]:
        """Yield token indices 0..max_tokens-1 as the engine decodes them.

        Closing the iterator early (client gone) frees the sequence's slot.
        """
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._loop())
        sequence = _Sequence(prompt_tokens, max_tokens)
        self._waiting.append(sequence)
        self._wake.set()
        try:
            for _ in range(max_tokens):
                yield await sequence.tokens.get()
        finally:
            sequence.cancelled = True

    async def close(self) -> None:
        """Stop the engine loop."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time()
        while True:
            self._running = [s for s in self._running if not s.cancelled]
            if not self._running and not self._waiting:
                self._wake.clear()
                await self._wake.wait()
                deadline = loop.time()
            profile = self._profile()
            prefill = self._admit(profile)
            if not self._running:
                continue
            # Sleep to an absolute deadline, so scheduling overhead does not pile up
            # and the simulated rate stays exact at high time scales.
            deadline += scaled(profile, self._step_s(profile, prefill))
            await asyncio.sleep(max(0.0, deadline - loop.time()))
            for sequence in self._running:
                if not sequence.cancelled:
                    sequence.tokens.put_nowait(sequence.generated)
                    sequence.generated += 1
            self._running = [
                s for s in self._running if not s.cancelled and s.generated < s.max_tokens
            ]

    def _admit(self, profile: SimProfile) -> int:
        """Move waiting sequences into free slots; return the prompt tokens to prefill."""
        limit = profile.max_num_seqs or 1
        prefill = 0
        while self._waiting and len(self._running) < limit:
            sequence = self._waiting.popleft()
            if not sequence.cancelled:
                self._running.append(sequence)
                prefill += sequence.prompt_tokens
        return prefill

    def _step_s(self, profile: SimProfile, prefill_tokens: int) -> float:
        decode_s = 1.0 / (profile.tokens_per_s or 1.0)
        slowdown = 1.0 + (profile.batch_slowdown or 0.0) * (len(self._running) - 1)
        return decode_s * slowdown + prefill_tokens / (profile.prefill_tokens_per_s or 1e9)
