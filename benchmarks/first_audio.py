"""The scheduler's overhead on a short speak job, next to the model server's own time.

In one warm process: the simulated Orpheus server (time scale 1) and a worker for its
node run beside it; each round sends the same short text once straight to the server
(the baseline: one HTTP request, the whole WAV back) and once as a job through the
scheduler (`submit_job` of `speak_job`, then `wait_for_run`, which wakes on the
run's end announcement, until the run has succeeded and its audio is in the store).
Both reuse one session factory, as a warm caller would. Before the last line it prints
this machine's own wake-up cost (a Redis round trip right away and after as long an
idle as one synthesis), to read the difference against. The last line is the median
difference.

`--time-scale` speeds the simulator up (10: a tenth of the synthesis time). The goal is
measured at 1, where every process sleeps as long as a real synthesis; a faster server
shows what the path costs when nothing has gone idle in between.

    .venv/bin/python benchmarks/first_audio.py [--rounds 15] [--time-scale 1]
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _bench_cluster import bench_cluster, median

if TYPE_CHECKING:
    from sparkjobs.app import SparkjobsApp
    from sparkjobs.config import Config

TEXT = "Hello there, good morning."


def measure(config: Config, app: SparkjobsApp, rounds: int) -> tuple[list[float], list[float]]:
    """Per round (after a warm-up round): ms straight to the server, ms as a job."""
    from sparkjobs.adhoc import speak_job
    from sparkjobs.backends import client_for
    from sparkjobs.store.engine import shared_sessions
    from sparkjobs.store.models import Status
    from sparkjobs.submission import submit_job, wait_for_run

    client = client_for(config.services["orpheus"], name="orpheus")
    job = speak_job(config, TEXT, voice="tara")
    sessions = shared_sessions(config.database)
    direct, scheduled = [], []
    try:
        for number in range(rounds + 1):  # round 0 warms both paths
            started = time.perf_counter()
            client.speak(TEXT, voice="tara")
            direct_ms = (time.perf_counter() - started) * 1000
            started = time.perf_counter()
            submitted = submit_job(config, job, trigger="submit", app=app, sessions=sessions)
            run = wait_for_run(config, submitted.run_id, timeout_s=60, sessions=sessions)
            scheduled_ms = (time.perf_counter() - started) * 1000
            assert run.status == Status.SUCCEEDED, run.error
            if number:
                direct.append(direct_ms)
                scheduled.append(scheduled_ms)
    finally:
        client.close()
    return direct, scheduled


def round_trip_after_idle(config: Config, idle_s: float, samples: int = 5) -> tuple[float, float]:
    """This machine's own cost of waking up: a Redis PING right after another (warm), and
    after `idle_s` of sleep, as a job's processes sleep while the model synthesizes (ms).

    Not part of either path: printed so that the difference can be read against it. On
    a virtual machine whose idle CPUs sleep deeply, the first round trip after an idle
    second can take milliseconds, and a job's path holds several such wake-ups (the
    worker, the database server, Redis, the waiting caller); on bare metal, microseconds.
    """
    from sparkjobs.broker import redis_client

    client = redis_client(config, timeout_s=5.0)
    warm, cold = [], []
    try:
        client.ping()
        for _ in range(samples):
            started = time.perf_counter()
            client.ping()
            warm.append((time.perf_counter() - started) * 1000)
            time.sleep(idle_s)
            started = time.perf_counter()
            client.ping()
            cold.append((time.perf_counter() - started) * 1000)
    finally:
        client.close()
    return median(warm), median(cold)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--time-scale", type=float, default=1.0)
    args = parser.parse_args()
    from sparkjobs.app import create_app
    from sparkjobs.config import load_config
    from sparkjobs.sim import SimHost

    with tempfile.TemporaryDirectory(prefix="sjb-") as tmp, bench_cluster(Path(tmp)) as cluster:
        config = load_config(cluster.config_path)
        loop = asyncio.new_event_loop()
        threading.Thread(target=loop.run_forever, daemon=True).start()
        host = SimHost(config, ("orpheus",), {"time_scale": args.time_scale})
        asyncio.run_coroutine_threadsafe(host.start(), loop).result(30)
        asyncio.run_coroutine_threadsafe(host.ready(), loop).result(30)
        worker = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "sparkjobs",
                "--config",
                str(cluster.config_path),
                "worker",
                "--node",
                "spark2",
                "--loglevel",
                "WARNING",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            app = create_app(config)
            deadline = time.monotonic() + 60
            while not app.control.ping(timeout=0.5):
                if time.monotonic() > deadline:
                    raise SystemExit("the worker did not come up")
            direct, scheduled = measure(config, app, args.rounds)
            idle_s = median(direct) / 1000
            warm_ms, cold_ms = round_trip_after_idle(config, idle_s)
        finally:
            worker.terminate()
            worker.wait(timeout=30)
            asyncio.run_coroutine_threadsafe(host.stop(), loop).result(30)
    differences = [ours - theirs for ours, theirs in zip(scheduled, direct, strict=True)]
    print(f"rounds: {args.rounds} (after one warm-up round), time scale {args.time_scale:g}")
    print(f"straight to the simulated Orpheus (baseline): median {median(direct):.1f} ms")
    print(
        f"through the scheduler (submit, queue, worker, SQL, store): "
        f"median {median(scheduled):.1f} ms"
    )
    print(
        f"this machine's wake-up: a Redis round trip {warm_ms:.2f} ms warm, "
        f"{cold_ms:.2f} ms after {idle_s:.1f} s idle (median of 5; not in either path)"
    )
    print(f"median difference (scheduler - direct): {median(differences):.1f} ms")


if __name__ == "__main__":
    main()
