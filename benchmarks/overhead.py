"""The cost of the job layer: 2,000 no-op jobs end to end through sparkjobs against
bare Celery with a Redis result backend, same pool and concurrency.

sparkjobs: each job is written to PostgreSQL (run and step), published, run by the
node's worker (attempt, result and status recorded), all submitted first, then
waited for. Bare Celery: a no-op task, all `delay()` calls then all `get()`. The last
line is sparkjobs' throughput over bare Celery's.

    .venv/bin/python benchmarks/overhead.py [--jobs 2000] [--concurrency 8]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _harness import REDIS_URL, Bench, bench_cluster, free_port, wait_runs, wait_worker

BARE = """
from celery import Celery

app = Celery("barebench", broker={broker!r}, backend={broker!r})
app.conf.update(
    task_default_queue={queue!r},
    broker_transport_options={{"global_keyprefix": {prefix!r}}},
    result_backend_transport_options={{"global_keyprefix": {prefix!r}}},
)

@app.task
def noop():
    return "ok"
"""

NOOP = """
def noop(client, params, previous):
    return "ok"
"""


def bare_celery(bench: Bench, jobs: int, concurrency: int) -> float:
    home = bench.home / "bare"
    home.mkdir()
    (home / "barebench.py").write_text(
        BARE.format(broker=REDIS_URL, queue=f"{bench.prefix}bare", prefix=bench.prefix)
    )
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "barebench", "worker", "-P", "threads",
         "-c", str(concurrency), "--loglevel=WARNING"],
        cwd=home, env={**os.environ, "PYTHONPATH": str(home)}, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL, start_new_session=True, text=True,
    )  # fmt: skip
    bench.children.append(worker)
    sys.path.insert(0, str(home))
    import barebench  # type: ignore[import-not-found]

    wait_worker(barebench.app, "celery")
    started = time.perf_counter()
    results = [barebench.noop.delay() for _ in range(jobs)]
    for result in results:
        result.get(timeout=600)
    return jobs / (time.perf_counter() - started)


def through_sparkjobs(bench: Bench, jobs: int) -> float:
    from sparkjobs.app import create_app
    from sparkjobs.config import load_config
    from sparkjobs.execution.state import sessions_for
    from sparkjobs.jobs import custom, job
    from sparkjobs.submission import submit_job

    (bench.home / "schedules" / "benchnoop.py").write_text(NOOP)
    config = load_config(bench.config_path)
    app = create_app(config)
    bench.start("worker", "--node", "n1")
    wait_worker(app, "n1")
    noop = job("noop", steps=[custom("schedules.benchnoop:noop", service="echo")])
    started = time.perf_counter()
    runs = [
        submit_job(
            config, noop, trigger="schedule", app=app, sessions=sessions_for(config.database)
        ).run_id
        for _ in range(jobs)
    ]
    wait_runs(config.database, list(runs), timeout_s=1800)
    return jobs / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()
    # A service no one calls: a custom step gets a client, and returns without using it.
    echo = {"node": "n1", "kind": "openai", "url": f"http://127.0.0.1:{free_port()}"}
    extra = f"[worker]\nconcurrency = {args.concurrency}\n"
    with bench_cluster({"echo": echo}, extra) as bench:
        print(f"cores: {os.cpu_count()}, jobs: {args.jobs}, threads pool, "
              f"concurrency {args.concurrency}")  # fmt: skip
        ours = through_sparkjobs(bench, args.jobs)
        print(f"sparkjobs (runs, steps, attempts, results in PostgreSQL): {ours:8.1f} jobs/s")
        bare = bare_celery(bench, args.jobs, args.concurrency)
        print(f"bare Celery (Redis result backend):                    {bare:8.1f} jobs/s")
        print(f"ratio sparkjobs / bare Celery: {ours / bare:.2f}x")


if __name__ == "__main__":
    main()
