"""Throughput at the server's limit: 500 chat jobs through sparkjobs against the same
500 requests sent straight to the simulated vLLM at its best concurrency.

Same run, same simulator (a child process): first the direct baseline at a few
concurrencies (the best counts), then sparkjobs (one worker, leases at the
service's max_in_flight, every run recorded in PostgreSQL), then plain Celery with
its default worker settings (prefork, concurrency = cores) on the same requests.
The last line is sparkjobs' throughput over the direct baseline's.

    .venv/bin/python benchmarks/saturation.py [--jobs 500] [--time-scale 3] [--tokens 32]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _harness import (
    REDIS_URL,
    Bench,
    bench_cluster,
    free_port,
    wait_listening,
    wait_runs,
    wait_worker,
)

MODEL = "gemma-4-26b-a4b"
LIMIT = 64  # the simulator's max_num_seqs (vLLM --max-num-seqs), and the service's limit


def body(n: int, tokens: int) -> dict[str, object]:
    return {"model": MODEL, "max_tokens": tokens, "stream": False,
            "messages": [{"role": "user", "content": f"Write note number {n}."}]}  # fmt: skip


async def _direct(url: str, jobs: int, concurrency: int, tokens: int) -> float:
    limits = httpx.Limits(max_connections=concurrency)
    gate = asyncio.Semaphore(concurrency)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=600) as client:

        async def one(n: int) -> None:
            async with gate:
                reply = await client.post("/v1/chat/completions", json=body(n, tokens))
                reply.raise_for_status()

        started = time.perf_counter()
        await asyncio.gather(*(one(n) for n in range(jobs)))
        return jobs / (time.perf_counter() - started)


PLAIN = """
import httpx
from celery import Celery

app = Celery("plainbench", broker={broker!r}, backend={broker!r})
app.conf.update(
    task_default_queue={queue!r},
    broker_transport_options={{"global_keyprefix": {prefix!r}}},
    result_backend_transport_options={{"global_keyprefix": {prefix!r}}},
)

@app.task
def ask(url, body):
    reply = httpx.post(url + "/v1/chat/completions", json=body, timeout=600)
    reply.raise_for_status()
    return len(reply.content)
"""


def plain_celery(bench: Bench, url: str, jobs: int, tokens: int) -> float:
    """Plain Celery, default worker settings: prefork, concurrency = cores."""
    home = bench.home / "plain"
    home.mkdir()
    (home / "plainbench.py").write_text(
        PLAIN.format(broker=REDIS_URL, queue=f"{bench.prefix}plain", prefix=bench.prefix)
    )
    env = {**os.environ, "PYTHONPATH": str(home)}
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "plainbench", "worker", "--loglevel=WARNING"],
        cwd=home, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True, text=True,
    )  # fmt: skip
    bench.children.append(worker)
    sys.path.insert(0, str(home))
    import plainbench  # type: ignore[import-not-found]

    wait_worker(plainbench.app, "celery")
    started = time.perf_counter()
    results = [plainbench.ask.delay(url, body(n, tokens)) for n in range(jobs)]
    for result in results:
        result.get(timeout=1800)
    return jobs / (time.perf_counter() - started)


def through_sparkjobs(bench: Bench, jobs: int, tokens: int) -> float:
    from sparkjobs.broker.app import create_app
    from sparkjobs.config import load_config
    from sparkjobs.execution.context import sessions_for
    from sparkjobs.jobs.define import chat, job
    from sparkjobs.runs.submit import submit_job
    from sparkjobs.store.models import Status
    from sparkjobs.store.queries import get_run

    config = load_config(bench.config_path)
    app = create_app(config)
    bench.start("worker", "--node", "n1")
    wait_worker(app, "n1")
    note = job("note", steps=[chat("Write note number {params.n}.", max_tokens=tokens)],
               params={"n": 0})  # fmt: skip
    started = time.perf_counter()
    runs = [submit_job(config, note, params={"n": n}, trigger="schedule", app=app,
                       sessions=sessions_for(config.database)).run_id
            for n in range(jobs)]  # fmt: skip
    wait_runs(config.database, list(runs), timeout_s=1800)
    elapsed = time.perf_counter() - started
    with sessions_for(config.database)() as session:
        failed = [r for r in runs if get_run(session, r).status != Status.SUCCEEDED]
    if failed:
        raise SystemExit(f"{len(failed)} runs did not succeed, e.g. {failed[0]}")
    return jobs / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=500)
    parser.add_argument("--time-scale", type=float, default=3.0)
    parser.add_argument("--tokens", type=int, default=32)
    args = parser.parse_args()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    service = {"node": "n1", "kind": "openai", "url": url, "models": [MODEL],
               "max_in_flight": LIMIT}  # fmt: skip
    with bench_cluster({"gemma": service}) as bench:
        bench.start("sim", "--service", "gemma", "--time-scale", str(args.time_scale))
        wait_listening(port)
        print(f"cores: {os.cpu_count()}, jobs: {args.jobs}, time_scale: {args.time_scale:g}, "
              f"max_tokens: {args.tokens}, simulator max_num_seqs: {LIMIT}")  # fmt: skip
        asyncio.run(_direct(url, 8, 8, 4))  # warm up
        direct = {}
        for concurrency in (32, 64, 128):
            direct[concurrency] = asyncio.run(_direct(url, args.jobs, concurrency, args.tokens))
            print(f"direct, concurrency {concurrency:>3}: {direct[concurrency]:7.2f} requests/s")
        best = max(direct, key=lambda c: direct[c])
        ours = through_sparkjobs(bench, args.jobs, args.tokens)
        print(f"sparkjobs (max_in_flight {LIMIT}, runs in PostgreSQL): {ours:7.2f} jobs/s")
        plain = plain_celery(bench, url, args.jobs, args.tokens)
        print(f"plain Celery (prefork, concurrency {os.cpu_count()}): {plain:7.2f} requests/s "
              f"({plain / direct[best]:.2f} of direct)")  # fmt: skip
        print(f"ratio sparkjobs / direct at its best concurrency ({best}): "
              f"{ours / direct[best]:.2f}")  # fmt: skip


if __name__ == "__main__":
    main()
