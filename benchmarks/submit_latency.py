"""How long `sparkjobs submit speak ...` takes to queue a job durably, against `celery call`.

Both run as fresh processes on the same broker (a private redis-server on a unix
socket), in the same run: `sparkjobs submit speak TEXT` (no --wait: it exits once the
run row is in SQLite and the message is in Redis) and `celery call` of a task with the
same kwargs to the same queue (which writes no SQL). The last line is the ratio of the
medians.

    .venv/bin/python benchmarks/submit_latency.py [--rounds 10]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from statistics import median

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _harness import embedded_cluster

TEXT = "Good morning. Here is the weather for today, and the news."


def timed(argv: list[str], env: dict[str, str] | None = None) -> float:
    started = time.perf_counter()
    subprocess.run(argv, check=True, capture_output=True, env=env)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args()
    bindir = Path(sys.executable).parent
    with tempfile.TemporaryDirectory(prefix="sjb-") as tmp, embedded_cluster(Path(tmp)) as cluster:
        submit = [
            sys.executable,
            "-m",
            "sparkjobs",
            "--config",
            str(cluster.config_path),
            "submit",
            "speak",
            TEXT,
            "--voice",
            "tara",
        ]
        kwargs = {"run_id": str(uuid.uuid4()), "index": 0, "service": "orpheus"}
        call = [
            str(bindir / "celery"),
            "-b",
            cluster.broker_url,
            "call",
            "sparkjobs.step",
            "--kwargs",
            json.dumps(kwargs),
            "--queue",
            "spark2",
        ]
        timed(submit)  # warm the page cache and byte-code of both, once
        timed(call)
        ours, theirs = [], []
        for _ in range(args.rounds):
            ours.append(timed(submit) * 1000)
            theirs.append(timed(call) * 1000)
    print(f"rounds: {args.rounds} of each, alternating")
    print(
        f"sparkjobs submit speak (run row + message): median {median(ours):.0f} ms, "
        f"min {min(ours):.0f} ms"
    )
    print(
        f"celery call (message only, baseline):      median {median(theirs):.0f} ms, "
        f"min {min(theirs):.0f} ms"
    )
    print(f"ratio sparkjobs submit / celery call (medians): {median(ours) / median(theirs):.2f}x")


if __name__ == "__main__":
    main()
