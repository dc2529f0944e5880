"""The cost of the job layer: 2,000 no-op jobs end to end through sparkjobs against
bare Celery with a Redis result backend, same pool and concurrency.

sparkjobs: each job is a custom step that returns at once; its run and step are
written to PostgreSQL, its message published, and the node's worker records its
attempt, result and status. All are submitted first with one `submit_many` (one
commit for all rows, then one message per run; `--one-by-one`: one `submit_job` per
job), then waited for as `submit --wait` waits: the run-end announcements, confirmed by
one SQL count. Bare Celery: a no-op task, all `delay()` calls then all
`get()`. The last line is sparkjobs' throughput over bare Celery's.

    .venv/bin/python benchmarks/overhead.py [--jobs 2000] [--concurrency 8] [--one-by-one]
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _harness import REDIS_URL, Bench, bench_cluster, free_port, wait_worker

BARE = """
from celery import Celery

app = Celery("{module}", broker={broker!r}, backend={broker!r})
app.conf.update(
    task_default_queue={queue!r},
    broker_transport_options={{"global_keyprefix": {prefix!r}{transport}}},
    result_backend_transport_options={{"global_keyprefix": {prefix!r}}},
    {settings}
)

@app.task
def noop():
    return "ok"
"""

# `--celery-settings`: the Celery settings sparkjobs' app uses (sparkjobs.broker.app), to tell
# what they cost from what the job layer costs. Not the baseline. Task events are off,
# as in sparkjobs' workers until Flower or `up` asks for them (sparkjobs.broker.events).
SPARKJOBS_SETTINGS = """task_acks_late=True, task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=1, task_inherit_parent_priority=True,"""

NOOP = """
def noop(client, params, previous):
    return "ok"
"""


def bare_celery(
    bench: Bench, concurrency: int, *, settings: bool = False
) -> Callable[[int], float]:
    """Start a bare Celery worker (with sparkjobs' Celery settings if `settings`); a
    function that times `jobs` no-op tasks."""
    module = "barebench_settings" if settings else "barebench"
    home = bench.home / module
    home.mkdir()
    (home / f"{module}.py").write_text(
        BARE.format(
            module=module, broker=REDIS_URL, queue=f"{bench.prefix}{module}",
            prefix=bench.prefix, settings=SPARKJOBS_SETTINGS if settings else "",
            transport=', "queue_order_strategy": "priority"' if settings else "",
        )
    )  # fmt: skip
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", module, "worker", "-P", "threads",
         "-c", str(concurrency), "--loglevel=WARNING", "-n", f"{module}@%h"],
        cwd=home, env={**os.environ, "PYTHONPATH": str(home)}, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL, start_new_session=True, text=True,
    )  # fmt: skip
    bench.children.append(worker)
    sys.path.insert(0, str(home))
    noop = importlib.import_module(module).noop

    wait_worker(noop.app, module)

    def round_(jobs: int) -> float:
        started = time.perf_counter()
        results = [noop.delay() for _ in range(jobs)]
        for result in results:
            result.get(timeout=600)
        return jobs / (time.perf_counter() - started)

    return round_


def through_sparkjobs(bench: Bench, *, one_by_one: bool = False) -> Callable[[int], float]:
    """Start the node's worker; a function that times `jobs` no-op jobs (a new job
    name each round, so each round waits for its own runs)."""
    from sparkjobs.broker.app import create_app
    from sparkjobs.config import load_config
    from sparkjobs.execution.context import sessions_for
    from sparkjobs.jobs.define import custom, job
    from sparkjobs.runs.submit import submit_job, submit_many

    (bench.home / "schedules" / "benchnoop.py").write_text(NOOP)
    config = load_config(bench.config_path)
    app = create_app(config)
    sessions = sessions_for(config.database)
    bench.start("worker", "--node", "n1")
    wait_worker(app, "n1")
    rounds = iter(range(1_000_000))
    ends = _RunEnds(config)  # subscribed before the first run can end

    def round_(jobs: int) -> float:
        name = f"noop-{next(rounds)}"
        noop = job(name, steps=[custom("schedules.benchnoop:noop", service="echo")])
        started = time.perf_counter()
        if one_by_one:
            runs = [submit_job(config, noop, trigger="submit", app=app, sessions=sessions).run_id
                    for _ in range(jobs)]  # fmt: skip
        else:
            runs = submit_many(config, [noop] * jobs, trigger="submit", app=app,
                               sessions=sessions)  # fmt: skip
        ends.wait(sessions, name, set(runs), timeout_s=1800)
        return jobs / (time.perf_counter() - started)

    return round_


class _RunEnds:
    """Waits for a round's runs as `submit --wait` waits for one: the run-end
    announcements (pub/sub, as bare Celery's `get()` waits on its result backend),
    then one SQL count that confirms them; SQL alone each second, in case one is lost.
    Polling SQL instead (every 50 ms) cost this process and PostgreSQL about 0.2 ms
    of CPU a job, on the machine the runs share."""

    SAFETY_POLL_S = 1.0

    def __init__(self, config: Any) -> None:
        from sparkjobs.broker.client import key, redis_client

        self._pubsub = redis_client(config, timeout_s=None).pubsub()  # type: ignore[no-untyped-call]
        self._pubsub.psubscribe(key(config, "run", "*", "finished"))

    def wait(self, sessions: Any, job_name: str, runs: set[Any], *, timeout_s: float) -> None:
        """Until every run in `runs` (all of `job_name`'s) is finished in SQL."""
        wanted = {str(run) for run in runs}
        seen: set[str] = set()
        deadline = time.monotonic() + timeout_s
        poll_at = time.monotonic() + self.SAFETY_POLL_S
        while True:
            now = time.monotonic()
            if len(seen) >= len(wanted) or now >= poll_at:
                if _finished(sessions, job_name) >= len(wanted):
                    return
                poll_at = now + self.SAFETY_POLL_S
            if now > deadline:
                raise SystemExit(f"runs not finished after {timeout_s} s")
            message = self._pubsub.get_message(timeout=max(0.0, poll_at - now))
            if message is not None and message["type"] == "pmessage":
                run = json.loads(message["data"])["run_id"]
                if run in wanted:
                    seen.add(run)


def _finished(sessions: Any, job_name: str) -> int:
    """How many runs of `job_name` are finished: one small query, not a list of ids."""
    from sqlalchemy import func, select

    from sparkjobs.store.models import TERMINAL, Run

    done = select(func.count()).where(Run.job == job_name, Run.status.in_(TERMINAL))
    with sessions() as session:
        return int(session.scalar(done) or 0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--one-by-one", action="store_true",
        help="submit with one submit_job call per job instead of one submit_many call",
    )  # fmt: skip
    parser.add_argument(
        "--celery-settings", action="store_true",
        help="also time bare Celery with sparkjobs' Celery settings (not the baseline)",
    )  # fmt: skip
    args = parser.parse_args()
    # A service no one calls: a custom step gets a client, and returns without using it.
    echo: dict[str, object] = {
        "node": "n1", "kind": "openai", "url": f"http://127.0.0.1:{free_port()}",
    }  # fmt: skip
    extra = f"[worker]\nconcurrency = {args.concurrency}\n"
    with bench_cluster({"echo": echo}, extra) as bench:
        print(f"cores: {os.cpu_count()}, jobs: {args.jobs} a round, threads pool, "
              f"concurrency {args.concurrency}, {args.rounds} rounds of each, "
              "alternating")  # fmt: skip
        sides = {
            "sparkjobs": through_sparkjobs(bench, one_by_one=args.one_by_one),
            "bare": bare_celery(bench, args.concurrency),
        }
        if args.celery_settings:
            sides["settings"] = bare_celery(bench, args.concurrency, settings=True)
        rates: dict[str, list[float]] = {name: [] for name in sides}
        for number in range(args.rounds):
            for name, round_ in sides.items():
                rates[name].append(round_(args.jobs))
            print(f"round {number + 1}: " + ", ".join(
                f"{name} {rate[-1]:7.1f} jobs/s" for name, rate in rates.items()))  # fmt: skip
        ours, bare = statistics.median(rates["sparkjobs"]), statistics.median(rates["bare"])
        if "settings" in rates:
            probe = statistics.median(rates["settings"])
            print(f"bare Celery with sparkjobs' Celery settings (acks late, prefetch 1, "
                  f"priority queues): {probe:8.1f} jobs/s, "
                  f"{probe / bare:.2f}x bare")  # fmt: skip
        print(f"sparkjobs (runs, steps, attempts, results in PostgreSQL): {ours:8.1f} jobs/s")
        print(f"bare Celery (Redis result backend):                    {bare:8.1f} jobs/s")
        print(f"ratio sparkjobs / bare Celery (medians): {ours / bare:.2f}x")


if __name__ == "__main__":
    main()
