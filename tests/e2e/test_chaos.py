"""Chaos: hundreds of jobs while workers and Redis are killed and model servers misbehave.

The harness submits chat, speak and chat-then-speak jobs while it SIGKILLs a worker
mid-task three times (restarting it each time), SIGKILLs its own append-only
redis-server once (and restarts it), and the simulators answer 10% of requests with a
5xx and never answer 2%. Afterwards every run must be finished in SQL, every success
must have its one result and verified audio, every failure a reason, and no queue may
hold anything. It prints `submitted=N succeeded=N failed=N lost=N duplicated=N`.

lost: a submitted run that is missing from SQL, is not finished when the guard ends,
or succeeded without its result or with audio that is missing or does not hash to
its name. duplicated: output recorded twice: a step with more than one result, a
piece counted twice, a piece of speech linked to two different recordings, more
runs in SQL than submissions, or more outputs recorded for a service than its
simulator answered calls.

`make chaos` runs a longer round (SPARKJOBS_CHAOS_JOBS).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import random
import signal
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, selectinload

from sparkjobs.artifacts.locate import store_sessions
from sparkjobs.artifacts.register import node_root
from sparkjobs.broker.app import create_app
from sparkjobs.broker.client import key, queue_keys, redis_client
from sparkjobs.errors import Unreachable
from sparkjobs.jobs.define import Job, chat, job, speak
from sparkjobs.runs.submit import submit_job
from sparkjobs.store.artifacts import artifact_path
from sparkjobs.store.models import (
    ArtifactRole,
    Attempt,
    AttemptStatus,
    Result,
    Run,
    Status,
    Step,
    StepArtifact,
    StepPiece,
)
from tests.integration.jobs.conftest import cluster_sims
from tests.integration.reliability.conftest import OwnRedis, own_broker, own_redis
from tests.support.cluster import Cluster, wait_for_workers
from tests.support.services import Broker
from tests.support.sim import RunningSims

__all__ = ["cluster_sims", "own_broker", "own_redis"]

pytestmark = [pytest.mark.e2e, pytest.mark.redis]

JOBS = int(os.environ.get("SPARKJOBS_CHAOS_JOBS", "300"))
SUBMIT_SPREAD_S = float(os.environ.get("SPARKJOBS_CHAOS_SPREAD_S", "30"))
GUARD_S = 240.0 + JOBS * 0.5  # only stops a hang
SERVICES = ("gemma", "qwen", "orpheus", "clone")
# Client timeouts short enough that a hung request costs seconds, not minutes.
CHAOS_TOML = "".join(
    f"\n[services.{name}.timeouts]\nconnect_s = 2.0\nfirst_byte_s = 3.0\ntotal_s = 30.0\n"
    for name in SERVICES
)
SENTENCES = (
    "The night bus leaves the depot at ten past one.",
    "Fog settles over the harbour and the cranes go quiet.",
    "A baker on Station Road lights the first oven of the day.",
    "The river is high after a week of rain in the hills.",
    "Two trains wait at the junction for a signal to change.",
    "Snow is forecast above eight hundred metres by dawn.",
)


@pytest.fixture
def broker(own_broker: Broker) -> Broker:
    """The harness kills Redis: never the shared one, so each leg gets its own."""
    return own_broker


@pytest.fixture
def chaos_cluster(cluster: Cluster) -> Cluster:
    with cluster.path.open("a") as config:
        config.write(CHAOS_TOML)
    return cluster


def jobs(count: int) -> list[Job]:
    """A mix: chat on vLLM and Ollama, short and long speech, chat streamed into speech."""
    made: list[Job] = []
    for n in range(count):
        line = SENTENCES[n % len(SENTENCES)]
        kind = n % 10
        if kind < 4:
            made.append(job("chaos-chat", steps=[chat(f"Note {n}: {line}", max_tokens=30)]))
        elif kind == 4:
            step = chat(f"Note {n}: {line}", max_tokens=20, service="qwen")
            made.append(job("chaos-qwen", steps=[step]))
        elif kind in (5, 6):
            made.append(job("chaos-speak", steps=[speak(f"Number {n}. {line}", voice="tara")]))
        elif kind == 7:
            text = " ".join(f"Part {n}.{i}: {s}" for i, s in enumerate(SENTENCES[:2]))
            made.append(job("chaos-long", steps=[speak(text, voice="leah")]))
        else:
            # The reply streamed into the speech as it is written (docs/streaming.md):
            # long enough for several pieces, placed while the chat still runs.
            steps = [chat(f"Headline {n}: {line}", max_tokens=90), speak("{previous}")]
            made.append(job("chaos-pipeline", steps=steps))
    return made


class Harness:
    """The cluster's workers and Redis, and the faults done to them."""

    def __init__(self, cluster: Cluster, server: OwnRedis, logs: Path) -> None:
        self.cluster, self.server, self.logs = cluster, server, logs
        self.workers: dict[str, subprocess.Popen[bytes]] = {}
        self.events: list[str] = []
        self.exited: list[str] = []  # workers that died of a Redis restart
        self.kills: list[tuple[str, datetime]] = []  # node, when its worker was killed
        self.lined_at_faults: list[int] = []  # units waiting in the services' lines then
        self.started = time.monotonic()

    def note(self, what: str) -> None:
        self.events.append(f"{time.monotonic() - self.started:6.1f} s  {what}")

    def count_lined(self) -> None:
        """Note how many units wait in the services' lines as a fault strikes."""
        client = redis_client(self.cluster.config, timeout_s=2.0)
        try:
            lined = in_lines(self.cluster, client)
        finally:
            client.close()
        self.lined_at_faults.append(lined)
        self.note(f"{lined} unit(s) wait in the services' lines")

    def start_worker(self, node: str) -> None:
        process = self.cluster.start("worker", "--node", node, log=self.logs / f"{node}.log")
        self.workers[node] = process

    def kill_worker_mid_task(self, node: str) -> None:
        """SIGKILL `node`'s worker once it runs an attempt, then start it again."""
        self.wait_for_running_attempt(node)
        self.count_lined()
        process = self.workers[node]
        process.send_signal(signal.SIGKILL)
        self.kills.append((node, datetime.now(UTC)))
        process.wait(timeout=30)
        self.cluster.processes.remove(process)
        self.note(f"killed the worker of {node}")
        time.sleep(1.0)
        self.start_worker(node)
        self.note(f"restarted the worker of {node}")

    def kill_redis(self) -> None:
        self.count_lined()
        self.server.kill()
        self.note("killed redis-server")
        time.sleep(2.0)
        self.server.start()
        self.note("restarted redis-server (append-only file replayed)")
        time.sleep(3.0)  # the workers reconnect; none may have exited
        for node, process in self.workers.items():
            if process.poll() is not None:
                self.exited.append(node)
                self.cluster.processes.remove(process)
                self.start_worker(node)
                self.note(f"the worker of {node} had exited after the Redis restart")

    def wait_for_running_attempt(self, node: str, timeout_s: float = 20.0) -> None:
        deadline = time.monotonic() + timeout_s
        with store_sessions(self.cluster.config) as sessions:
            while time.monotonic() < deadline:
                with sessions() as session:
                    busy = session.scalar(
                        select(func.count()).where(
                            Attempt.status == AttemptStatus.RUNNING,
                            Attempt.worker.startswith(f"{node}@"),
                        )
                    )
                if busy:
                    return
                time.sleep(0.05)
        self.note(f"no attempt ran on {node} within {timeout_s} s; killed it anyway")


def chaos(harness: Harness) -> Callable[[], None]:
    """The faults, in order, spread over the submissions."""
    step_s = SUBMIT_SPREAD_S / 5

    def run() -> None:
        for index, fault in enumerate((
            lambda: harness.kill_worker_mid_task("spark1"),
            harness.kill_redis,
            lambda: harness.kill_worker_mid_task("spark2"),
            lambda: harness.kill_worker_mid_task("spark1"),
        )):  # fmt: skip
            time.sleep(step_s if index else step_s / 2)
            fault()

    return run


def submit_all(cluster: Cluster, work: list[Job], sessions: Any) -> int:
    """Submit every job, spread over SUBMIT_SPREAD_S; a broker outage is not a failure."""
    app = create_app(cluster.config)
    pause_s = SUBMIT_SPREAD_S / max(1, len(work))
    for one in work:
        # Unreachable: written as queued; the reconciler publishes it once Redis is back.
        with contextlib.suppress(Unreachable):
            submit_job(cluster.config, one, trigger="submit", app=app, sessions=sessions)
        time.sleep(pause_s)
    return len(work)


def all_finished(sessions: Any, deadline: float) -> None:
    while time.monotonic() < deadline:
        with sessions() as session:
            active = session.scalar(
                select(func.count()).where(Run.status.in_([Status.QUEUED, Status.RUNNING]))
            )
        if not active:
            return
        time.sleep(0.5)


def verified(config: Any, step: Step) -> bool:
    """The step's audio exists on its node and hashes to its name."""
    outputs = [link for link in step.artifacts if link.role == ArtifactRole.OUTPUT]
    if len(outputs) != 1:
        return False
    path = artifact_path(node_root(config, step.node), outputs[0].sha256)
    return path.is_file() and hashlib.sha256(path.read_bytes()).hexdigest() == outputs[0].sha256


def audit(cluster: Cluster, sessions: Any, submitted: int, sims: RunningSims) -> Counter[str]:
    """Count runs by outcome, and lost and duplicated work (see the module docstring)."""
    config = cluster.config
    tally: Counter[str] = Counter()
    recorded: Counter[str] = Counter()
    with sessions() as session:
        runs = session.scalars(
            select(Run).options(
                selectinload(Run.steps).selectinload(Step.artifacts),
                selectinload(Run.steps).selectinload(Step.result),
            )
        ).all()
        tally["duplicated"] += max(0, len(runs) - submitted)
        tally["lost"] += max(0, submitted - len(runs))
        for run in runs:
            if not run.status.terminal:
                tally["lost"] += 1
                continue
            tally[run.status.value] += 1
            if run.status == Status.FAILED:
                assert run.error, f"run {run.id} failed without saying why"
                continue
            for step in run.steps:
                if step.result is None or (step.name == "speak" and not verified(config, step)):
                    tally["lost"] += 1
                    break
                recorded[step.service] += (step.pieces_total or 1) if step.name == "speak" else 1
        tally["duplicated"] += _recorded_twice(session)
    for service, count in recorded.items():
        answered = sims.stats(service)["fates"].get("answer", 0)
        tally["duplicated"] += max(0, count - answered)
    return tally


def _recorded_twice(session: Session) -> int:
    results = session.execute(
        select(Result.step_id).group_by(Result.step_id).having(func.count() > 1)
    ).all()
    overcounted = session.scalar(
        select(func.count()).where(Step.pieces_total.is_not(None),
                                   Step.pieces_done > Step.pieces_total)
    )  # fmt: skip
    pieces = session.execute(
        select(StepArtifact.step_id, StepArtifact.name)
        .where(StepArtifact.role == ArtifactRole.PIECE)
        .group_by(StepArtifact.step_id, StepArtifact.name)
        .having(func.count() > 1)
    ).all()
    done = session.scalar(select(func.count()).select_from(StepPiece))
    assert done is not None
    return len(results) + int(overcounted or 0) + len(pieces)


def recoveries_s(sessions: Any, kills: list[tuple[str, datetime]]) -> list[tuple[float, float]]:
    """For each attempt lost with its killed worker: seconds from the kill until the
    reconciler queued it again (it closed the attempt then), and until it started
    again (which includes its wait in the queue and for a lease)."""
    gaps = []
    with sessions() as session:
        lost = session.scalars(select(Attempt).where(Attempt.error.like("lost:%"))).all()
        for attempt in lost:
            node = attempt.worker.split("@")[0]
            killed = min((at for n, at in kills if n == node and at >= attempt.started_at),
                         default=None)  # fmt: skip
            piece = attempt.piece
            which = Attempt.piece.is_(None) if piece is None else Attempt.piece == piece
            again = session.scalar(
                select(func.min(Attempt.started_at)).where(
                    Attempt.step_id == attempt.step_id, Attempt.number > attempt.number, which
                )
            )
            if again is not None and killed is not None and attempt.finished_at is not None:
                gaps.append((
                    round((attempt.finished_at - killed).total_seconds(), 1),
                    round((again - killed).total_seconds(), 1),
                ))  # fmt: skip
    return gaps


def in_lines(cluster: Cluster, client: Any) -> int:
    """Units waiting in the services' lines (`sparkjobs.dispatch.leases`)."""
    config = cluster.config
    return sum(int(client.zcard(key(config, "line", name))) for name in config.services)


def leftovers(cluster: Cluster, broker: Broker) -> int:
    """Messages still in a queue, delivered and never acknowledged, or units in a line."""
    prefix = cluster.config.broker_key_prefix
    waiting = sum(
        int(broker.client.llen(name)) for node in cluster.config.nodes
        for name in queue_keys(prefix, node)
    )  # fmt: skip
    return waiting + int(broker.client.hlen(f"{prefix}unacked")) + in_lines(cluster, broker.client)


@pytest.mark.timeout(int(2 * GUARD_S + 120))
def test_every_job_finishes_once_through_killed_workers_a_killed_redis_and_faulty_servers(
    chaos_cluster: Cluster,
    broker: Broker,
    own_redis: OwnRedis,
    cluster_sims: RunningSims,
    tmp_path: Path,
) -> None:
    cluster = chaos_cluster
    for name in SERVICES:
        cluster_sims.set_faults(name, error_rate=0.10, hang_rate=0.02)
    harness = Harness(cluster, own_redis, tmp_path)
    for node in ("spark1", "spark2"):
        harness.start_worker(node)
    wait_for_workers(cluster, ["spark1", "spark2"])
    work = jobs(JOBS)
    random.Random(7).shuffle(work)
    faults = threading.Thread(target=chaos(harness), daemon=True)
    with store_sessions(cluster.config) as sessions:
        faults.start()
        submitted = submit_all(cluster, work, sessions)
        faults.join(timeout=GUARD_S)
        all_finished(sessions, time.monotonic() + GUARD_S)
        harness.note("every run finished")
        gaps = recoveries_s(sessions, harness.kills)
        tally = audit(cluster, sessions, submitted, cluster_sims)
    # Unacknowledged copies held by killed workers go once their work is done.
    deadline = time.monotonic() + 2 * cluster.config.reconciler.recovery_bound_s
    while leftovers(cluster, broker) and time.monotonic() < deadline:
        time.sleep(1.0)
    left = leftovers(cluster, broker)

    requeued = sum(
        log.read_text(errors="replace").count("reconciler: ") for log in tmp_path.glob("*.log")
    )
    print("\n".join(harness.events))
    print(
        f"reconciler actions={requeued} messages left={left} lost attempts={len(gaps)}; "
        f"from a kill until queued again: longest {max((q for q, _ in gaps), default=0):.1f} s, "
        f"until started again: longest {max((r for _, r in gaps), default=0):.1f} s"
    )
    print(
        f"submitted={submitted} succeeded={tally['succeeded']} failed={tally['failed']} "
        f"lost={tally['lost']} duplicated={tally['duplicated']}"
    )
    assert harness.exited == [], "workers must survive a Redis restart"
    # The faults struck while work waited in the lines: that work was not lost either.
    assert max(harness.lined_at_faults, default=0) > 0, harness.lined_at_faults
    assert len(harness.events) >= 8, harness.events  # 3 worker kills, 1 Redis kill, restarts
    assert (tally["lost"], tally["duplicated"]) == (0, 0), tally
    assert tally["succeeded"] + tally["failed"] == submitted
    assert left == 0, f"{left} messages left in Redis after every run finished"
