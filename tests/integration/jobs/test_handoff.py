"""A chat's reply streamed into the speak step after it: spark2 speaks the first sentence
while spark1 still generates, across the two nodes' queues, with real workers; and the
faults: either worker killed mid-stream, the chat failing for good, a cancel."""

from __future__ import annotations

import os
import signal
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import select

from sparkjobs.artifacts.ensure import get_artifact
from sparkjobs.artifacts.locate import store_sessions
from sparkjobs.backends.audio import encode_wav, parse_wav
from sparkjobs.execution.cutter import cut_pieces
from sparkjobs.execution.state import NOT_FINISHED
from sparkjobs.jobs.define import Job, chat, clone, job, speak
from sparkjobs.runs.control import cancel_run
from sparkjobs.runs.info import audio_of
from sparkjobs.runs.listen import follow_audio
from sparkjobs.runs.submit import submit_job
from sparkjobs.runs.wait import wait_for_run
from sparkjobs.store.engine import reading
from sparkjobs.store.models import (
    Attempt,
    AttemptStatus,
    PieceStatus,
    Run,
    Status,
    Step,
    StepPiece,
)
from tests.support.cluster import Cluster, start_workers, wait_for_workers
from tests.support.sim import RunningSims, simulating

pytestmark = pytest.mark.redis

HANG_GUARD_S = 180
# With the tests' time scale (200), the LLM writes about 30 tokens a second: a reply of
# 200 tokens takes several seconds, long enough to speak its first sentences meanwhile.
SLOW_LLM = "\n[tasks]\nmax_retry_delay_s = 1\n\n[sim.gemma]\ntokens_per_s = 0.15\n"


@pytest.fixture
def slow_sims(cluster: Cluster) -> Iterator[RunningSims]:
    with cluster.path.open("a") as config:
        config.write(SLOW_LLM)
    with simulating(cluster.config) as sims:
        yield sims


@pytest.fixture
def workers(cluster: Cluster, slow_sims: RunningSims) -> Cluster:
    start_workers(cluster)
    return cluster


def briefing(**speak_options: object) -> Job:
    return job(
        "briefing",
        steps=[
            chat("Tell me about the weather in Berlin today.", max_tokens=200),
            speak(str(speak_options.pop("text", "Here is the news. {previous}")),
                  voice="leah", **speak_options),  # type: ignore[arg-type]
        ],
    )  # fmt: skip


def finished(cluster: Cluster, run_id: uuid.UUID) -> Run:
    run = wait_for_run(cluster.config, run_id, timeout_s=HANG_GUARD_S)
    assert run.status.terminal, f"run still {run.status} after {HANG_GUARD_S} s (hang guard)"
    return run


def rows(cluster: Cluster, run_id: uuid.UUID) -> tuple[list[Step], list[StepPiece], list[Attempt]]:
    """The run's steps, the speak step's pieces, and every attempt, as SQL has them now."""
    with store_sessions(cluster.config) as sessions, reading(sessions) as session:
        steps = list(session.scalars(select(Step).where(Step.run_id == run_id)
                                     .order_by(Step.index)))  # fmt: skip
        pieces = list(session.scalars(select(StepPiece).where(StepPiece.step_id == steps[-1].id)
                                      .order_by(StepPiece.index)))  # fmt: skip
        attempts = list(session.scalars(
            select(Attempt).where(Attempt.step_id.in_([s.id for s in steps]))
            .order_by(Attempt.number)
        ))  # fmt: skip
        session.expunge_all()
    return steps, pieces, attempts


def until(what: str, check: Callable[[], bool], timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, f"{what}: not within {timeout_s} s (hang guard)"
        time.sleep(0.05)


def reply_and_speech(cluster: Cluster, run: Run) -> tuple[str, list[StepPiece]]:
    _, pieces, _ = rows(cluster, run.id)
    reply = run.steps[0].result.text if run.steps[0].result else None
    assert reply
    return reply, pieces


def assert_spoken_exactly_once(cluster: Cluster, run: Run, sims: RunningSims) -> None:
    """The speech covers the reply exactly once, every piece made by one attempt."""
    reply, pieces = reply_and_speech(cluster, run)
    assert [p.text for p in pieces] == cut_pieces(f"Here is the news. {reply}")
    assert all(p.status == PieceStatus.SUCCEEDED for p in pieces)
    _, _, attempts = rows(cluster, run.id)
    made = [a.piece for a in attempts if a.piece is not None
            and a.status == AttemptStatus.SUCCEEDED]  # fmt: skip
    assert sorted(made) == list(range(len(pieces)))  # none missing, none made twice
    speech = run.steps[1]
    assert speech.status == Status.SUCCEEDED
    assert speech.pieces_total == len(pieces)
    assert speech.result is not None
    assert speech.result.data is not None
    assert speech.result.data["pieces"] == len(pieces)


def test_the_speak_step_starts_on_the_first_sentence_while_the_chat_generates(
    workers: Cluster, slow_sims: RunningSims
) -> None:
    run = finished(workers, submit_job(workers.config, briefing(), trigger="submit").run_id)
    assert run.status == Status.SUCCEEDED, run.error
    chat_step, speak_step = run.steps
    assert (chat_step.node, speak_step.node) == ("spark1", "spark2")
    assert speak_step.spec["handoff"] == "streamed"
    _, pieces, attempts = rows(workers, run.id)
    first_piece = next(a for a in attempts if a.piece == 0)
    assert chat_step.finished_at is not None
    assert first_piece.finished_at is not None
    # Piece 0 was spoken (on spark2) before the chat (on spark1) had finished.
    assert first_piece.finished_at < chat_step.finished_at
    assert first_piece.worker.startswith("spark2@")
    assert len(pieces) >= 2
    assert_spoken_exactly_once(workers, run, slow_sims)
    assert slow_sims.stats("orpheus")["requests"] == len(pieces)  # each text spoken once


def test_a_template_that_needs_the_whole_reply_falls_back_to_batch(workers: Cluster) -> None:
    twice = briefing(text="{previous} Once more: {previous}")
    run = finished(workers, submit_job(workers.config, twice, trigger="submit").run_id)
    assert run.status == Status.SUCCEEDED, run.error
    chat_step, speak_step = run.steps
    assert speak_step.spec["handoff"] == "batch: its text reads the chat's reply more than once"
    _, _, attempts = rows(workers, run.id)
    started = min(a.started_at for a in attempts if a.step_id == speak_step.id)
    assert chat_step.finished_at is not None
    assert started >= chat_step.finished_at  # nothing spoken before the whole reply


def test_stream_false_on_the_step_or_the_job_turns_the_handoff_off(workers: Cluster) -> None:
    off_step = briefing(stream=False)
    off_job = job("quiet", stream=False, steps=list(briefing().steps))
    for defined, why in ((off_step, "the step says"), (off_job, "the job says")):
        run = finished(workers, submit_job(workers.config, defined, trigger="submit").run_id)
        assert run.status == Status.SUCCEEDED, run.error
        assert run.steps[1].spec["handoff"] == f"batch: {why} stream=False"


def wait_for_piece(cluster: Cluster, run_id: uuid.UUID, made: bool) -> None:
    def placed() -> bool:
        _, pieces, _ = rows(cluster, run_id)
        return any(p.status == PieceStatus.SUCCEEDED or not made for p in pieces)

    until("a piece placed" + (" and made" if made else ""), placed)


def kill_worker(cluster: Cluster, node: str) -> None:
    [process] = [p for p in cluster.processes
                 if p.poll() is None and p.args[-1] == node]  # type: ignore[index]  # fmt: skip
    os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=10)
    cluster.processes.remove(process)  # gone on purpose: not a worker that failed to start


def test_the_chats_worker_killed_mid_stream_leaves_every_sentence_spoken_once(
    workers: Cluster, slow_sims: RunningSims
) -> None:
    submitted = submit_job(workers.config, briefing(), trigger="submit")
    wait_for_piece(workers, submitted.run_id, made=True)
    steps, _, _ = rows(workers, submitted.run_id)
    assert steps[0].status == Status.RUNNING  # killed mid-stream, not after
    kill_worker(workers, "spark1")
    workers.start("worker", "--node", "spark1")
    wait_for_workers(workers, ["spark1"])
    run = finished(workers, submitted.run_id)
    assert run.status == Status.SUCCEEDED, run.error
    _, _, attempts = rows(workers, run.id)
    assert len([a for a in attempts if a.step_id == steps[0].id]) >= 2  # generated again
    # The simulator answers the same prompt with the same text: every piece the first
    # attempt placed was kept, none spoken again.
    assert_spoken_exactly_once(workers, run, slow_sims)
    _, pieces, _ = rows(workers, run.id)
    assert slow_sims.stats("orpheus")["requests"] == len(pieces)


def test_the_speak_worker_killed_mid_stream_leaves_every_sentence_spoken_once(
    workers: Cluster, slow_sims: RunningSims
) -> None:
    submitted = submit_job(workers.config, briefing(), trigger="submit")
    wait_for_piece(workers, submitted.run_id, made=True)
    kill_worker(workers, "spark2")
    workers.start("worker", "--node", "spark2")
    wait_for_workers(workers, ["spark2"])
    run = finished(workers, submitted.run_id)
    assert run.status == Status.SUCCEEDED, run.error
    reply, pieces = reply_and_speech(workers, run)
    assert " ".join(p.text for p in pieces) == " ".join(f"Here is the news. {reply}".split())
    _, _, attempts = rows(workers, run.id)
    made = [a.piece for a in attempts if a.piece is not None
            and a.status == AttemptStatus.SUCCEEDED]  # fmt: skip
    assert sorted(made) == list(range(len(pieces)))


def test_a_chat_that_fails_for_good_fails_the_run_and_keeps_the_speech_as_partial(
    workers: Cluster, slow_sims: RunningSims
) -> None:
    # Every reply breaks off half way, after its first sentences were spoken.
    slow_sims.set_faults("gemma", midstream_error_rate=1.0)
    run = finished(workers, submit_job(workers.config, briefing(), trigger="submit").run_id)
    assert run.status == Status.FAILED
    chat_step, speak_step = run.steps
    assert chat_step.status == Status.FAILED
    assert speak_step.status == Status.FAILED
    assert speak_step.error == NOT_FINISHED

    def kept() -> bool:
        with store_sessions(workers.config) as sessions, reading(sessions) as session:
            step = session.get(Step, speak_step.id)
            return step is not None and step.result is not None

    until("the partial speech kept", kept, timeout_s=30)
    failed = wait_for_run(workers.config, run.id, timeout_s=0)
    speech = failed.steps[1]
    assert speech.result is not None
    data = speech.result.data or {}
    assert data["partial"] is True
    assert data["pieces"] >= 1
    assert "artifact" not in data  # never the step's output
    names = {link.name for link in speech.artifacts}
    assert "audio-partial" in names
    assert "audio" not in names


def test_cancel_mid_stream_stops_the_chat_and_the_speech_at_their_next_sentence(
    workers: Cluster, slow_sims: RunningSims
) -> None:
    submitted = submit_job(workers.config, briefing(), trigger="submit")
    wait_for_piece(workers, submitted.run_id, made=False)
    cancel_run(workers.config, submitted.run_id)
    cancelled_at = datetime.now().astimezone()  # committed: nothing may start after it
    # The reply would take seconds more; generation stops at the next sentence.
    until("the LLM idle after the cancel",
          lambda: slow_sims.stats("gemma")["in_flight"] == 0, timeout_s=5)  # fmt: skip
    time.sleep(1.0)  # anything still queued would have run by now
    run = wait_for_run(workers.config, submitted.run_id, timeout_s=0)
    assert run.status == Status.CANCELLED
    _, pieces, attempts = rows(workers, run.id)
    late = [a for a in attempts if a.piece is not None and a.started_at > cancelled_at]
    assert late == []  # no piece began after the cancel
    assert any(p.status != PieceStatus.SUCCEEDED for p in pieces) or len(pieces) <= 2


def test_the_speech_heard_while_the_chat_generates_is_the_steps_whole_wav(
    workers: Cluster, tmp_path: Path
) -> None:
    submitted = submit_job(workers.config, briefing(), trigger="submit")
    heard: list[bytes] = []
    first_heard_at = None
    for part in follow_audio(workers.config, submitted.run_id):
        first_heard_at = first_heard_at or datetime.now(UTC)
        heard.append(part.pcm)
    run = finished(workers, submitted.run_id)
    assert run.status == Status.SUCCEEDED, run.error
    assert run.steps[0].finished_at is not None
    assert first_heard_at is not None
    assert first_heard_at < run.steps[0].finished_at  # heard while the chat still ran
    found = audio_of(run)
    assert found is not None
    whole = tmp_path / "whole.wav"
    get_artifact(workers.config, found[0], whole)
    wav = whole.read_bytes()
    info = parse_wav(wav)
    assert b"".join(heard) == wav[info.data_offset : info.data_offset + info.frames * 2]


def test_a_clone_step_after_a_chat_speaks_its_first_sentence_while_the_chat_generates(
    workers: Cluster, slow_sims: RunningSims, tmp_path: Path
) -> None:
    reference = tmp_path / "me.wav"
    reference.write_bytes(encode_wav(b"\x10\x00\xf0\xff" * 24000))
    cloned = job("cloned", steps=[
        chat("Tell me about the weather in Berlin today.", max_tokens=200),
        clone("Here is the news. {previous}", ref_audio=str(reference), ref_text="Me."),
    ])  # fmt: skip
    run = finished(workers, submit_job(workers.config, cloned, trigger="submit").run_id)
    assert run.status == Status.SUCCEEDED, run.error
    chat_step, clone_step = run.steps
    assert (clone_step.node, clone_step.service) == ("spark2", "clone")
    assert clone_step.spec["handoff"] == "streamed"
    _, pieces, attempts = rows(workers, run.id)
    first_piece = next(a for a in attempts if a.piece == 0)
    assert chat_step.finished_at is not None
    assert first_piece.finished_at is not None
    assert first_piece.finished_at < chat_step.finished_at
    assert_spoken_exactly_once(workers, run, slow_sims)
    assert slow_sims.stats("clone")["requests"] == len(pieces)
    assert slow_sims.stats("orpheus")["requests"] == 0
