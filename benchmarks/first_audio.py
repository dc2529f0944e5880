"""The scheduler's overhead on a short speak job, next to the model server's own time.

In one warm process: the simulated Orpheus server (time scale 1) and a worker for its
node run beside it; each round sends the same short text once straight to the server
(the baseline: one HTTP request, the whole WAV back) and once as a job through the
scheduler (`submit_job` of `speak_job`, then `wait_for_run`, which wakes on the
run's end announcement, until the run has succeeded and its audio is in the store).
Both reuse one session factory, as a warm caller would. Before the last line it prints
the job's path part by part (from the caller's clock, the simulator's request and
reply times, and the times the worker wrote to SQL; no probe in the path), and this
machine's own wake-up cost (a Redis round trip right away and after as long an
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
import itertools
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from statistics import median
from typing import TYPE_CHECKING

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _harness import embedded_cluster

if TYPE_CHECKING:
    from sparkjobs.broker.app import SparkjobsApp
    from sparkjobs.config import Config
    from sparkjobs.sim.faults import Stats

TEXT = "Hello there, good morning."


# The parts of a job's path, in order, as `Parts` measures them.
PARTS = (
    ("submit_job (the run's rows, then its message)", "submit"),
    ("the message to the worker, its prologue (until the attempt's start)", "prologue"),
    ("the attempt's start to the request reaching the server", "request"),
    ("the server, request to reply (the model's time)", "server"),
    ("the reply to the run recorded as finished (the step's rows)", "recorded"),
    ("that to the caller's return (commit, announcement, waiter's read)", "returned"),
)


@dataclass
class Parts:
    """Milliseconds spent in each part of the path, one list per part (see `PARTS`).

    Read from timestamps the path leaves anyway, no probe inside it: the caller's
    clock around its two calls, the simulator's own (request in, reply out), and the
    times the worker wrote to SQL (the attempt's start, the run's end).
    """

    lists: dict[str, list[float]] = field(default_factory=lambda: {k: [] for _, k in PARTS})

    def add(self, times: dict[str, float]) -> None:
        """One round's times, in seconds on one clock, named for the end of each part."""
        order = ["start", *(k for _, k in PARTS)]
        for before, after in itertools.pairwise(order):
            self.lists[after].append((times[after] - times[before]) * 1000)


def _on_monotonic(moment: datetime, offset_s: float) -> float:
    """A time the worker wrote to SQL (UTC), on this process' monotonic clock."""
    return moment.timestamp() - offset_s


def measure(
    config: Config, app: SparkjobsApp, rounds: int, stats: Stats
) -> tuple[list[float], list[float], Parts, list[float]]:
    """Per round (after a warm-up round): ms straight to the server, ms as a job, the
    job's parts, and the direct call's own ms outside the server (client and network)."""
    from sparkjobs.backends import OrpheusClient, client_for
    from sparkjobs.runs.adhoc import speak_job
    from sparkjobs.runs.submit import submit_job
    from sparkjobs.runs.wait import wait_for_run
    from sparkjobs.store.engine import shared_sessions
    from sparkjobs.store.models import Status

    client = client_for(config.services["orpheus"], name="orpheus")
    assert isinstance(client, OrpheusClient)
    job = speak_job(config, TEXT, voice="tara")
    sessions = shared_sessions(config.database)
    direct, scheduled, outside, parts = [], [], [], Parts()
    try:
        for number in range(rounds + 1):  # round 0 warms both paths
            stats.reset()
            started = time.monotonic()
            client.speak(TEXT, voice="tara")
            ended = time.monotonic()
            direct_ms = (ended - started) * 1000
            server_s = (stats.last_at or ended) - (stats.first_at or started)
            stats.reset()
            offset_s = time.time() - time.monotonic()
            started = time.monotonic()
            submitted = submit_job(config, job, trigger="submit", app=app, sessions=sessions)
            handed = time.monotonic()
            run = wait_for_run(config, submitted.run_id, timeout_s=60, sessions=sessions)
            ended = time.monotonic()
            scheduled_ms = (ended - started) * 1000
            assert run.status == Status.SUCCEEDED, run.error
            assert run.finished_at is not None
            assert stats.first_at is not None
            assert stats.last_at is not None
            if number:
                direct.append(direct_ms)
                scheduled.append(scheduled_ms)
                outside.append(direct_ms - server_s * 1000)
                attempt = run.steps[0].attempts[-1]
                parts.add({
                    "start": started, "submit": handed,
                    "prologue": _on_monotonic(attempt.started_at, offset_s),
                    "request": stats.first_at, "server": stats.last_at,
                    "recorded": _on_monotonic(run.finished_at, offset_s), "returned": ended,
                })  # fmt: skip
    finally:
        client.close()
    return direct, scheduled, parts, outside


def round_trip_after_idle(config: Config, idle_s: float, samples: int = 5) -> tuple[float, float]:
    """This machine's own cost of waking up: a Redis PING right after another (warm), and
    after `idle_s` of sleep, as a job's processes sleep while the model synthesizes (ms).

    Not part of either path: printed so that the difference can be read against it. On
    a virtual machine whose idle CPUs sleep deeply, the first round trip after an idle
    second can take milliseconds, and a job's path holds several such wake-ups (the
    worker, the database server, Redis, the waiting caller); on bare metal, microseconds.
    """
    from sparkjobs.broker.client import redis_client

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
    from sparkjobs.broker.app import create_app
    from sparkjobs.config import load_config
    from sparkjobs.sim import SimHost

    with tempfile.TemporaryDirectory(prefix="sjb-") as tmp, embedded_cluster(Path(tmp)) as cluster:
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
            stats = host["orpheus"].sim.stats
            direct, scheduled, parts, outside = measure(config, app, args.rounds, stats)
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
    print("the job's path, part by part (median ms; the parts' medians need not add up):")
    for label, name in PARTS:
        print(f"  {median(parts.lists[name]):7.1f}  {label}")
    print(f"  the direct call outside the server (client, connection): {median(outside):.1f} ms")
    print(
        f"this machine's wake-up: a Redis round trip {warm_ms:.2f} ms warm, "
        f"{cold_ms:.2f} ms after {idle_s:.1f} s idle (median of 5; not in either path)"
    )
    print(f"median difference (scheduler - direct): {median(differences):.1f} ms")


if __name__ == "__main__":
    main()
