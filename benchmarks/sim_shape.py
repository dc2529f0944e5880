"""Throughput of the simulated vLLM against concurrency: aggregate rises, per stream falls.

Runs the simulator in a child process (so the client does not share its interpreter),
measures a single stream first (the baseline), then 2..32 concurrent streams, and
prints the figures in simulated tokens/s (wall figures / time_scale). The last line is
the ratio of the aggregate at the highest concurrency to the single stream.

    .venv/bin/python benchmarks/sim_shape.py [--time-scale 5] [--tokens 128]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import free_port

CONCURRENCY = (1, 2, 4, 8, 16, 32)


async def _stream(client: httpx.AsyncClient, tokens: int) -> int:
    body = {"model": "gemma-4-26b-a4b", "stream": True, "max_tokens": tokens,
            "messages": [{"role": "user", "content": "Write the morning briefing."}]}  # fmt: skip
    count = 0
    async with client.stream("POST", "/v1/chat/completions", json=body) as reply:
        async for line in reply.aiter_lines():
            if line.startswith("data: {") and '"content":"' in line and '"role"' not in line:
                count += 1
    return count


async def _round(url: str, streams: int, tokens: int) -> tuple[float, float]:
    """(aggregate tokens/s, mean per-stream tokens/s), in wall time."""
    limits = httpx.Limits(max_connections=streams)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=600) as client:
        started = time.perf_counter()

        async def timed() -> tuple[int, float]:
            count = await _stream(client, tokens)
            return count, count / (time.perf_counter() - started)

        results = await asyncio.gather(*(timed() for _ in range(streams)))
        wall = time.perf_counter() - started
    return sum(c for c, _ in results) / wall, sum(r for _, r in results) / len(results)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--time-scale", type=float, default=5.0)
    parser.add_argument("--tokens", type=int, default=128)
    args = parser.parse_args()
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "bench.toml"
        config.write_text(
            f'data_dir = "{tmp}"\n[nodes.n1]\nbond_address = "127.0.0.1"\n'
            f'[services.gemma]\nnode = "n1"\nkind = "openai"\n'
            f'url = "http://127.0.0.1:{port}"\nmodels = ["gemma-4-26b-a4b"]\n'
        )
        sim = subprocess.Popen(
            [sys.executable, "-m", "sparkjobs", "--config", str(config), "sim",
             "--time-scale", str(args.time_scale)],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        )  # fmt: skip
        try:
            assert sim.stdout is not None
            print(sim.stdout.readline().strip())
            print(f"cores: {os.cpu_count()}, time_scale: {args.time_scale:g}, "
                  f"tokens per request: {args.tokens}")  # fmt: skip
            print(f"{'streams':>8} {'aggregate tok/s':>16} {'per-stream tok/s':>17}")
            # Warm up (connections, first-use costs) before the baseline is measured.
            asyncio.run(_round(f"http://127.0.0.1:{port}", 1, 4))
            results = {}
            for streams in CONCURRENCY:
                aggregate, per_stream = asyncio.run(_round(f"http://127.0.0.1:{port}",
                                                           streams, args.tokens))  # fmt: skip
                scale = args.time_scale
                results[streams] = aggregate / scale
                print(f"{streams:>8} {aggregate / scale:>16.1f} {per_stream / scale:>17.1f}")
            top = CONCURRENCY[-1]
            print(f"ratio aggregate at {top} streams / single stream (baseline): "
                  f"{results[top] / results[1]:.2f}x")  # fmt: skip
        finally:
            sim.terminate()
            sim.wait(timeout=20)
            if sim.stdout is not None:
                sim.stdout.close()


if __name__ == "__main__":
    main()
