"""Head of line: short work on a node whose serial TTS server a long speech saturates.

One node hosts the simulated Orpheus (`max_in_flight = 1`, its front-end serial) and a
Qwen3-TTS voice clone (`clone`), each in a simulator process of its own, and one worker.
A speech of about 3,000 words (67 pieces of up to 300 characters) keeps Orpheus busy
from its first piece to its last; meanwhile a stream of short background work arrives
at a steady rate: custom steps bound to the orpheus service (they take no lease) and
one-piece clones, alternating. Each round measures, in this order (reversed in every
other round, against drift):

- idle: the same stream on the idle node (the baseline);
- alone: the speech by itself (its pieces a second);
- with: the speech with the stream during it (its pieces a second; the stream's waits);
- interactive: the speech with a few one-piece interactive speaks during it, each of
  which goes to the front of Orpheus' line and should wait at most the piece in flight.

A short step's wait is its first attempt's start minus its run's creation, from SQL.
The simulators read no text aloud (no espeak-ng: a tone of the right length), so that
their audio costs none of the CPU the scheduler's processes share. The last line is the
median wait of the short steps on the saturated node over that on the idle node.

    .venv/bin/python benchmarks/head_of_line.py [--rounds 3] [--time-scale 30]
        [--short 30] [--interval 0.8] [--interactive 6]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import uuid
import wave
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _harness import Bench, bench_cluster, free_port, terminal_runs, wait_listening, wait_worker

if TYPE_CHECKING:
    from sqlalchemy.orm import Session, sessionmaker

    from sparkjobs.broker.app import SparkjobsApp
    from sparkjobs.config import Config
    from sparkjobs.jobs.define import Job

PIECES = 67
PIECE_S = 18.0  # a piece of 300 characters on Orpheus at time scale 1
CUSTOM_STEP = '''
import time


def short(client, params, previous):
    """A short custom step: 20 ms of its own work, no model server."""
    time.sleep(0.02)
    return "short"
'''
SUBJECTS = ("The river", "The northern market", "The night train", "The old observatory",
            "The harbour crane", "The city library", "The mountain road")  # fmt: skip
CLAUSES = (
    "rose slowly through the grey morning while the first trams crossed the bridge",
    "opened quietly, and the traders waited for the bond auction planned for noon",
    "carried more passengers than on any weekday since the spring timetable began",
    "was painted again this week by volunteers who came from every part of town",
)


def long_text() -> str:
    """About 3,000 words that `split_text` cuts into `PIECES` pieces (two sentences each)."""
    from sparkjobs.execution.sentences import split_text

    sentences: list[str] = []
    for n in range(400):  # bounded: two sentences a piece
        if len(split_text(" ".join(sentences))) == PIECES and len(sentences) % 2 == 0:
            break
        subject, clause = SUBJECTS[n % len(SUBJECTS)], CLAUSES[n % len(CLAUSES)]
        sentences.append(f"{subject}, in part {n + 1} of this long report, {clause}.")
    text = " ".join(sentences)
    assert len(split_text(text)) == PIECES, len(split_text(text))
    return text


def reference_wav(path: Path) -> Path:
    """Two seconds of a 220 Hz tone, 24 kHz mono 16-bit: the clone's reference voice."""
    import math

    frames = b"".join(
        int(8000 * math.sin(2 * math.pi * 220 * n / 24000)).to_bytes(2, "little", signed=True)
        for n in range(48000)
    )
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(24000)
        out.writeframes(frames)
    return path


@dataclass
class Node:
    """What the phases need: the config, a publishing app, SQL, and the jobs."""

    config: Config
    app: SparkjobsApp
    sessions: sessionmaker[Session]
    custom: Job
    clone: Job
    speech: Job
    quick_speak: Job

    def submit(self, job: Job, *, interactive: bool = False) -> uuid.UUID:
        from sparkjobs.runs.submit import submit_job

        return submit_job(self.config, job, trigger="submit", app=self.app,
                          interactive=interactive, sessions=self.sessions).run_id  # fmt: skip


@dataclass
class Phase:
    """One phase's figures: the short runs' waits (s), the speech's pieces."""

    kinds: dict[str, list[float]] = field(default_factory=dict)  # waits by run kind
    rate: float | None = None  # the speech's pieces a second
    pieces: list[float] = field(default_factory=list)  # its pieces' durations (s)
    total: int = 0  # its pieces
    failed: int = 0
    overlapped: bool | None = None  # every short run was submitted while the speech ran

    @property
    def waits(self) -> list[float]:
        return [wait for waits in self.kinds.values() for wait in waits]


def wait_all(node: Node, runs: list[uuid.UUID], timeout_s: float = 600) -> None:
    deadline = time.monotonic() + timeout_s
    while terminal_runs(node.config.database, list(runs)) < len(runs):
        if time.monotonic() > deadline:
            raise SystemExit(f"runs not finished after {timeout_s} s")
        time.sleep(0.2)


def waits_of(node: Node, runs: list[uuid.UUID]) -> tuple[dict[str, list[float]], int]:
    """Each run's wait (its first attempt's start, else the run's, minus its creation)
    by the run's kind, and how many runs did not succeed."""
    from sqlalchemy import func, select

    from sparkjobs.store.models import Attempt, Run, Status, Step

    first = func.min(Attempt.started_at)
    query = (
        select(Run.kind, Run.created_at, Run.started_at, Run.status, first)
        .join(Step, Step.run_id == Run.id)
        .outerjoin(Attempt, Attempt.step_id == Step.id)
        .where(Run.id.in_(runs))
        .group_by(Run.id, Run.kind, Run.created_at, Run.started_at, Run.status)
    )
    with node.sessions() as session:
        rows = session.execute(query).all()
    waits: dict[str, list[float]] = {}
    for kind, created, started, _, attempt in rows:
        begun = attempt or started
        if begun is not None:
            waits.setdefault(str(kind), []).append((begun - created).total_seconds())
    return waits, sum(1 for row in rows if row.status != Status.SUCCEEDED)


def pieces_of(node: Node, run: uuid.UUID) -> tuple[list[tuple[float, float]], int]:
    """The speech's pieces that succeeded, (start, end) in epoch seconds by start, and
    how many pieces its step has."""
    from sqlalchemy import select

    from sparkjobs.store.models import Attempt, AttemptStatus, Step

    query = (
        select(Attempt.started_at, Attempt.finished_at)
        .join(Step, Step.id == Attempt.step_id)
        .where(Step.run_id == run, Attempt.piece.is_not(None))
        .where(Attempt.status == AttemptStatus.SUCCEEDED)
    )
    with node.sessions() as session:
        rows = session.execute(query).all()
        total = session.scalar(select(Step.pieces_total).where(Step.run_id == run)) or 0
    return sorted((a.timestamp(), b.timestamp()) for a, b in rows if b is not None), total


def speech_started(node: Node, run: uuid.UUID, timeout_s: float = 60) -> None:
    """Until the speech's first piece has started (its attempt row is written)."""
    from sqlalchemy import func, select

    from sparkjobs.store.models import Attempt, Step

    query = (
        select(func.count())
        .select_from(Attempt)
        .join(Step, Step.id == Attempt.step_id)
        .where(Step.run_id == run, Attempt.piece.is_not(None))
    )
    deadline = time.monotonic() + timeout_s
    while True:
        with node.sessions() as session:
            if session.scalar(query):
                return
        if time.monotonic() > deadline:
            raise SystemExit(f"the speech's first piece did not start in {timeout_s} s")
        time.sleep(0.05)


def stream(node: Node, count: int, interval_s: float) -> tuple[list[uuid.UUID], float]:
    """Submit `count` short runs, custom and clone alternating, one every `interval_s`;
    their ids, and when the last was submitted (epoch seconds)."""
    runs: list[uuid.UUID] = []
    started = time.monotonic()
    for n in range(count):
        time.sleep(max(0.0, started + n * interval_s - time.monotonic()))
        runs.append(node.submit(node.custom if n % 2 == 0 else node.clone))
    return runs, time.time()


def run_phase(node: Node, name: str, args: argparse.Namespace) -> Phase:
    phase = Phase()
    if name == "idle":
        runs, _ = stream(node, args.short, args.interval)
        wait_all(node, runs)
        phase.kinds, phase.failed = waits_of(node, runs)
        return phase
    speech = node.submit(node.speech)
    speech_started(node, speech)
    runs = []
    if name == "with":
        runs, last_at = stream(node, args.short, args.interval)
    elif name == "interactive":
        gap_s = 0.7 * PIECES * PIECE_S / args.time_scale / args.interactive
        for n in range(args.interactive):
            time.sleep(gap_s if n else gap_s / 2)
            runs.append(node.submit(node.quick_speak, interactive=True))
        last_at = time.time()
    wait_all(node, [speech, *runs])
    pieces, total = pieces_of(node, speech)
    phase.rate = len(pieces) / (pieces[-1][1] - pieces[0][0])
    phase.pieces, phase.total = [end - start for start, end in pieces], total
    phase.kinds, phase.failed = waits_of(node, runs) if runs else ({}, 0)
    phase.failed += (len(pieces) != total) + waits_of(node, [speech])[1]
    if runs:
        phase.overlapped = last_at < pieces[-1][0]
    return phase


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


def spread(values: list[float], unit: float = 1000) -> str:
    """Median, p95 and min-max, in ms by default."""
    if not values:
        return "-"
    v = [x * unit for x in values]
    return (f"median {statistics.median(v):7.1f}, p95 {p95(v):7.1f}, "
            f"min-max {min(v):.1f}-{max(v):.1f}")  # fmt: skip


def start_node(bench: Bench, time_scale: float, ports: dict[str, int]) -> Node:
    from sparkjobs.broker.app import create_app
    from sparkjobs.config import load_config
    from sparkjobs.execution.context import sessions_for
    from sparkjobs.jobs.define import custom, job
    from sparkjobs.runs.adhoc import clone_job, put_reference, speak_job

    (bench.home / "schedules" / "holsteps.py").write_text(CUSTOM_STEP)
    # The simulators without espeak-ng (a tone instead): only the Python that runs them.
    quiet = {"PATH": str(Path(sys.executable).parent)}
    scale = str(time_scale)
    bench.start("sim", "--service", "orpheus", "--time-scale", scale, env=quiet)
    bench.start("sim", "--service", "clone", "--time-scale", scale, env=quiet)
    for port in ports.values():
        wait_listening(port)
    config = load_config(bench.config_path)
    app = create_app(config)
    bench.start("worker", "--node", "n1", "--loglevel", "WARNING")
    wait_worker(app, "n1")
    artifacts = config.nodes["n1"].artifacts_port
    assert artifacts is not None
    wait_listening(artifacts)
    reference = put_reference(config, reference_wav(bench.home / "ref.wav"), service="clone")
    return Node(
        config, app, sessions_for(config.database),
        custom=job("hol-custom", steps=[custom("schedules.holsteps:short", service="orpheus")]),
        clone=clone_job(config, "Good morning, the trams are running on time today.",
                        ref_audio=reference, service="clone"),
        speech=speak_job(config, long_text(), voice="tara", service="orpheus"),
        quick_speak=speak_job(config, "Your coffee is ready, come and get it.",
                              voice="leah", service="orpheus"),
    )  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--time-scale", type=float, default=30.0)
    parser.add_argument("--short", type=int, default=30, help="short runs in a stream")
    parser.add_argument("--interval", type=float, default=0.8, help="s between short runs")
    parser.add_argument("--interactive", type=int, default=6, help="interactive speaks")
    args = parser.parse_args()
    ports = {name: free_port() for name in ("orpheus", "backend", "clone")}
    services: dict[str, dict[str, Any]] = {
        "orpheus": {"node": "n1", "kind": "orpheus", "url": f"http://127.0.0.1:{ports['orpheus']}",
                    "backend_url": f"http://127.0.0.1:{ports['backend']}", "max_in_flight": 1},
        "clone": {"node": "n1", "kind": "qwen-clone", "url": f"http://127.0.0.1:{ports['clone']}",
                  "voices": ["default"]},
    }  # fmt: skip
    load = os.getloadavg()[0]
    with bench_cluster(services) as bench:
        node = start_node(bench, args.time_scale, ports)
        print(f"cores: {os.cpu_count()} (shared), load average {load:.2f} at start, time "
              f"scale {args.time_scale:g} (a piece ~{PIECE_S / args.time_scale:.2f} s), "
              f"speech of {len(long_text().split())} words in {PIECES} pieces, {args.short} "
              f"short runs one every {args.interval:g} s, {args.rounds} rounds")  # fmt: skip
        wait_all(node, [node.submit(node.quick_speak), node.submit(node.clone)])  # warm-up
        phases: dict[str, list[Phase]] = {n: [] for n in ("idle", "alone", "with", "interactive")}
        for number in range(args.rounds):
            order = list(phases) if number % 2 == 0 else ["with", "alone", "idle", "interactive"]
            for name in order:
                phase = run_phase(node, name, args)
                phases[name].append(phase)
                print(f"round {number + 1} {name:11s}: {describe(phase)}")
    print(f"load average {os.getloadavg()[0]:.2f} at end")
    report(phases)


def describe(phase: Phase) -> str:
    """One phase's line: the short runs' waits, the speech's pace, failures."""
    parts = [f"wait {spread(phase.waits)} ms"] if phase.kinds else []
    if phase.rate is not None:
        parts.append(f"speech {phase.total} pieces at {phase.rate:.3f} a second")
    if phase.overlapped is not None:
        parts.append(f"all submitted while it spoke: {phase.overlapped}")
    return "; ".join([*parts, f"failed {phase.failed}"])


def report(phases: dict[str, list[Phase]]) -> None:
    def pooled(name: str, kind: str | None = None) -> list[float]:
        return [wait for phase in phases[name] for k, waits in phase.kinds.items()
                for wait in waits if kind in (None, k)]  # fmt: skip

    def row(label: str, values: list[float]) -> None:
        print(f"{label:46s}| {spread(values)} ms")

    print("figure (all rounds together)                  | median, p95, min-max")
    for name, label in (("idle", "idle node (baseline)"), ("with", "during the speech")):
        row(f"short runs' wait, {label}", pooled(name))
        row("  of which custom steps", pooled(name, "custom"))
        row("  of which clones", pooled(name, "clone"))
    inter = pooled("interactive")
    pieces = [d for phase in phases["interactive"] for d in phase.pieces]
    row("interactive speak's wait behind the speech", inter)
    row("the speech's pieces then (duration)", pieces)
    alone = [p.rate or 0.0 for p in phases["alone"]]
    together = [p.rate or 0.0 for p in phases["with"]]
    rates = [w / a for w, a in zip(together, alone, strict=True)]
    print(f"speech alone, pieces/s by round: {', '.join(f'{r:.3f}' for r in alone)}; with the "
          f"stream: {', '.join(f'{r:.3f}' for r in together)}")  # fmt: skip
    print(f"speech with the stream / alone: {', '.join(f'{r:.3f}' for r in rates)}, median "
          f"{statistics.median(rates):.3f} (goal >= 0.95)")  # fmt: skip
    piece = statistics.median(pieces)
    print(f"interactive wait / median piece: median {statistics.median(inter) / piece:.2f}, "
          f"max {max(inter) / piece:.2f} (goal: at most 1)")  # fmt: skip
    idle, busy = pooled("idle"), pooled("with")
    print(f"short runs' p95 wait, saturated / idle: {p95(busy) / p95(idle):.2f} "
          f"(median's goal <= 1.2); failed runs: "
          f"{sum(p.failed for ps in phases.values() for p in ps)}")  # fmt: skip
    by_round = [statistics.median(b.waits) / statistics.median(i.waits)
                for b, i in zip(phases["with"], phases["idle"], strict=True)]  # fmt: skip
    print(f"short runs' median wait, saturated / idle, by round: "
          f"{', '.join(f'{r:.2f}' for r in by_round)}")  # fmt: skip
    ratio = statistics.median(busy) / statistics.median(idle)
    print(f"ratio short runs' median wait, saturated / idle node: {ratio:.2f}")


if __name__ == "__main__":
    main()
