"""Work for a busy serial server waits in its service's line, holding nothing: other work
on the node flows, a freed slot is handed on without polling or re-publishing, pieces
are spoken in text order and interactive work goes first. Real workers, real Redis, the
simulators at a speed where a piece takes a moment."""

from __future__ import annotations

import functools
import json
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from sparkjobs.artifacts.locate import store_sessions
from sparkjobs.backends.audio import encode_wav
from sparkjobs.broker.app import create_app
from sparkjobs.broker.client import key
from sparkjobs.broker.publish import PIECE_TASK
from sparkjobs.broker.units import Unit
from sparkjobs.dispatch.gate import Gate
from sparkjobs.dispatch.handoff import send
from sparkjobs.dispatch.leases import Leases
from sparkjobs.jobs.define import custom, job, speak
from sparkjobs.runs.submit import submit_job
from sparkjobs.runs.wait import wait_for_run
from sparkjobs.store.models import Attempt, AttemptStatus, Run, Status, Step
from sparkjobs.up.activity import follow
from tests.integration.cli.support import ok
from tests.integration.dispatch.conftest import HANG_GUARD_S, load_run, poll
from tests.integration.web.conftest import wait_for_http
from tests.support.cluster import Cluster, start_workers
from tests.support.sim import simulating

pytestmark = pytest.mark.redis

# Slow enough that a long speech holds Orpheus for seconds, fast enough for a test.
TIME_SCALE = 25.0
SENTENCE = "The morning opens grey over the river, and the first trams cross the bridge {n}."
LONG_TEXT = " ".join(SENTENCE.format(n=n) for n in range(40))  # about ten pieces
WORKER_SPARK2 = "spark2"


@pytest.fixture
def slow_cluster(cluster: Cluster) -> Iterator[Cluster]:
    """The cluster, its simulators at TIME_SCALE, and a worker per node."""
    with cluster.path.open("a") as config:
        config.write("\n[tasks]\nmax_retry_delay_s = 1\n")
    with simulating(cluster.config, TIME_SCALE):
        start_workers(cluster)
        yield cluster


def leases_of(cluster: Cluster) -> Leases:
    config = cluster.config
    return Leases(create_app(config).redis, functools.partial(key, config), ttl_s=15.0)


def speech(cluster: Cluster, text: str, *, interactive: bool = False) -> uuid.UUID:
    spoken = job("speech", steps=[speak(text, voice="tara", service="orpheus")])
    return submit_job(cluster.config, spoken, trigger="submit", interactive=interactive).run_id


def finished(cluster: Cluster, run_id: uuid.UUID) -> Run:
    run = wait_for_run(cluster.config, run_id, timeout_s=HANG_GUARD_S)
    assert run.status.terminal, f"run still {run.status} after {HANG_GUARD_S} s (hang guard)"
    return run


def pieces_left(cluster: Cluster, run_id: uuid.UUID) -> int:
    step = load_run(cluster, run_id).steps[0]
    return (step.pieces_total or 0) - (step.pieces_done or 0)


def test_other_work_on_the_node_runs_while_a_long_speech_holds_orpheus(
    slow_cluster: Cluster, tmp_path: Path
) -> None:
    long = speech(slow_cluster, LONG_TEXT)
    leases = leases_of(slow_cluster)
    poll("pieces of the speech wait in orpheus's line", lambda: leases.waiting("orpheus") > 2)

    # A custom step on spark2 (no lease) and a one-piece clone (its own serial server).
    note = job("note", steps=[custom("tests.integration.jobs.custom_steps:quick",
                                     service="orpheus")])  # fmt: skip
    noted = submit_job(slow_cluster.config, note, trigger="submit").run_id
    reference = tmp_path / "me.wav"
    reference.write_bytes(encode_wav(b"\x10\x00\xf0\xff" * 24000))
    cloned = slow_cluster.sparkjobs(
        "submit", "clone", "Hello in my own voice.", "--ref-audio", str(reference),
        "--wait", "--json",
    )  # fmt: skip

    assert json.loads(ok(cloned))["status"] == "succeeded"
    assert finished(slow_cluster, noted).status == Status.SUCCEEDED
    assert pieces_left(slow_cluster, long) > 0  # the speech was still being spoken
    assert finished(slow_cluster, long).status == Status.SUCCEEDED


def test_a_long_speech_is_spoken_in_text_order_on_a_serial_server(slow_cluster: Cluster) -> None:
    run = finished(slow_cluster, speech(slow_cluster, LONG_TEXT))
    assert run.status == Status.SUCCEEDED
    with store_sessions(slow_cluster.config) as sessions, sessions() as session:
        attempts = session.execute(
            select(Attempt.piece, Attempt.started_at)
            .join(Step, Step.id == Attempt.step_id)
            .where(Step.run_id == run.id, Attempt.piece.is_not(None))
            .order_by(Attempt.started_at)
        ).all()
    started = [piece for piece, _ in attempts]
    assert len(started) >= 8
    assert started == sorted(started)  # each piece started after the one before it


def test_interactive_work_goes_to_the_front_of_the_line(slow_cluster: Cluster) -> None:
    long = speech(slow_cluster, LONG_TEXT)
    leases = leases_of(slow_cluster)
    poll("pieces of the speech wait in orpheus's line", lambda: leases.waiting("orpheus") > 3)

    hello = speech(slow_cluster, "Hello, now.", interactive=True)

    assert finished(slow_cluster, hello).status == Status.SUCCEEDED
    assert pieces_left(slow_cluster, long) >= 2  # it did not wait behind the whole speech
    assert finished(slow_cluster, long).status == Status.SUCCEEDED


def test_a_freed_slot_is_handed_on_without_a_retry_or_a_second_message(
    slow_cluster: Cluster,
) -> None:
    many = 6
    runs = [speech(slow_cluster, f"Short line number {n}.") for n in range(many)]
    assert all(finished(slow_cluster, run).status == Status.SUCCEEDED for run in runs)

    # Every speak step's message was taken once: none came back to be tried again.
    stats: dict[str, Any] = create_app(slow_cluster.config).control.inspect(timeout=5).stats()
    [spark2] = [found for name, found in stats.items() if name.startswith(WORKER_SPARK2)]
    assert spark2["total"].get("sparkjobs.step") == many
    with store_sessions(slow_cluster.config) as sessions, sessions() as session:
        waited = session.scalars(select(Step.waiting_for).where(Step.run_id.in_(runs))).all()
    assert waited == [None] * many  # nothing recorded a wait: they never ran to wait


def test_the_line_is_kept_by_the_reconciler_and_survives_a_worker_kill(
    slow_cluster: Cluster,
) -> None:
    long = speech(slow_cluster, LONG_TEXT)
    leases = leases_of(slow_cluster)
    poll("pieces of the speech wait in orpheus's line", lambda: leases.waiting("orpheus") > 2)
    worker = next(p for p in slow_cluster.processes if "spark2" in " ".join(map(str, p.args)))
    worker.kill()  # mid-piece: its lease is never released, and expires
    worker.wait(timeout=30)
    slow_cluster.processes.remove(worker)
    slow_cluster.start("worker", "--node", "spark2")

    run = finished(slow_cluster, long)
    assert run.status == Status.SUCCEEDED
    step = run.steps[0]
    assert step.pieces_done == step.pieces_total
    with store_sessions(slow_cluster.config) as sessions, sessions() as session:
        pieces = (
            session.execute(
                select(Attempt.piece).where(
                    Attempt.step_id == step.id,
                    Attempt.piece.is_not(None),
                    Attempt.status == AttemptStatus.SUCCEEDED,
                )
            )
            .scalars()
            .all()
        )
    assert sorted(pieces) == list(range(step.pieces_total or 0))  # each spoken once


def test_flowers_processed_and_succeeded_agree_after_a_saturated_run(
    slow_cluster: Cluster, tmp_path: Path
) -> None:
    slow_cluster.start("flower", log=tmp_path / "flower.log")
    flower = f"http://127.0.0.1:{slow_cluster.config.flower.port}"
    wait_for_http(f"{flower}/healthcheck", slow_cluster)

    def counters() -> dict[str, dict[str, Any]]:
        found = httpx.get(f"{flower}/workers?json=1", timeout=10).json()["data"]
        return {str(worker["hostname"]).split("@")[0]: worker for worker in found}

    poll("Flower sees both workers", lambda: {"spark1", "spark2"} <= set(counters()))
    runs = [speech(slow_cluster, LONG_TEXT)]
    runs += [speech(slow_cluster, f"Short line number {n}.") for n in range(4)]
    assert all(finished(slow_cluster, run).status == Status.SUCCEEDED for run in runs)

    def settled() -> bool:
        spark2 = counters()["spark2"]
        return spark2.get("task-received", 0) == spark2.get("task-succeeded", -1) > 0

    poll("Flower's Processed and Succeeded of spark2 agree", settled)
    spark2 = counters()["spark2"]
    assert spark2.get("task-retried", 0) == spark2.get("task-failed", 0) == 0
    # A speak step each, a piece task for each of the long one's pieces but the first
    # (its step task speaks it), and its join.
    pieces = load_run(slow_cluster, runs[0]).steps[0].pieces_total or 0
    assert spark2["task-succeeded"] == len(runs) + (pieces - 1) + 1


def test_the_live_view_says_that_a_unit_waits_and_its_place(cluster: Cluster) -> None:
    app = create_app(cluster.config)
    gate = Gate(cluster.config, app.redis)
    lines: list[str] = []
    stop = threading.Event()
    view = threading.Thread(target=follow, args=(app, lines.append, stop), daemon=True)
    view.start()
    try:
        taken = gate.leases.try_acquire("orpheus", 1)[0]  # a call holds Orpheus
        assert taken is not None
        first = Unit(PIECE_TASK, uuid.uuid4(), 0, 2)

        def sent() -> bool:  # the view subscribes in its own thread: send until it hears
            send(app, gate, first, "orpheus", interactive=False, gated=True)
            return any("waiting for orpheus (1st in line)" in line for line in lines)

        poll("the live view shows the waiting unit", sent)
    finally:
        stop.set()
        view.join(timeout=10)
    [line] = [line for line in lines if "waiting for" in line][:1]
    assert f"sparkjobs.speak_piece[{str(first.run_id)[:8]}] step 0 piece 3" in line
