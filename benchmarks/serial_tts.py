"""A serial TTS server kept busy, one request at a time: speak jobs against the
simulated Orpheus front-end (which handles one request at a time).

All jobs are submitted at once, so jobs wait for the whole run; the simulator
reports the most requests it saw at once (must be 1) and how long it sat idle
between its first request and its last (should be near 0: the next job starts as
the lease is given back). The last line is the server's busy share of that span.

    .venv/bin/python benchmarks/serial_tts.py [--jobs 40] [--time-scale 10]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _harness import bench_cluster, free_port, wait_listening, wait_runs, wait_worker

SENTENCES = (
    "The morning opens grey over the river, and the first trams cross the bridge.",
    "Markets expect a quiet day; traders watch the bond auction at noon.",
    "In the north, rain turns to snow above six hundred metres by the evening.",
    "Tomorrow brings sunshine, light winds and a high of eleven degrees.",
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=40)
    parser.add_argument("--time-scale", type=float, default=10.0)
    args = parser.parse_args()
    port, backend = free_port(), free_port()
    url = f"http://127.0.0.1:{port}"
    service = {"node": "n1", "kind": "orpheus", "url": url,
               "backend_url": f"http://127.0.0.1:{backend}", "max_in_flight": 1}  # fmt: skip
    with bench_cluster({"orpheus": service}) as bench:
        from sparkjobs.broker.app import create_app
        from sparkjobs.config import load_config
        from sparkjobs.execution.context import sessions_for
        from sparkjobs.jobs.define import job, speak
        from sparkjobs.runs.submit import submit_job
        from sparkjobs.store.models import Status
        from sparkjobs.store.queries import get_run

        bench.start("sim", "--service", "orpheus", "--time-scale", str(args.time_scale))
        wait_listening(port)
        wait_listening(backend)
        config = load_config(bench.config_path)
        app = create_app(config)
        bench.start("worker", "--node", "n1")
        wait_worker(app, "n1")
        httpx.post(f"{url}/_sim/stats/reset").raise_for_status()
        say = job("say", steps=[speak("{params.text}", voice="tara")], params={"text": ""})
        started = time.perf_counter()
        runs = [
            submit_job(config, say, params={"text": f"{SENTENCES[n % 4]} Number {n}."},
                       trigger="schedule", app=app,
                       sessions=sessions_for(config.database)).run_id
            for n in range(args.jobs)
        ]  # fmt: skip
        wait_runs(config.database, list(runs), timeout_s=1800)
        elapsed = time.perf_counter() - started
        with sessions_for(config.database)() as session:
            failed = [r for r in runs if get_run(session, r).status != Status.SUCCEEDED]
        stats = httpx.get(f"{url}/_sim/stats").json()
        busy, idle = float(stats["busy_s"]), float(stats["idle_s"])
        print(f"cores: {os.cpu_count()}, speak jobs: {args.jobs}, time_scale: "
              f"{args.time_scale:g}, wall: {elapsed:.1f} s, failed: {len(failed)}")  # fmt: skip
        print(f"simulator: {stats['requests']} requests, at most {stats['max_in_flight']} "
              f"at once, busy {busy:.2f} s, idle {idle:.2f} s from first to last")  # fmt: skip
        share = busy / (busy + idle)
        print(f"ratio busy / (busy + idle) of the serial server: {share:.3f}")


if __name__ == "__main__":
    main()
