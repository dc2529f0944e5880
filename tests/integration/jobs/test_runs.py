"""Runs executed by real worker processes, one per node queue, on simulated servers."""

from __future__ import annotations

import wave
from array import array
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import select

from sparkjobs.artifacts.locate import store_sessions
from sparkjobs.artifacts.register import node_root
from sparkjobs.broker.app import create_app
from sparkjobs.broker.publish import publish_step
from sparkjobs.execution.piece_state import piece_rows
from sparkjobs.execution.state import NOT_RUN
from sparkjobs.jobs.define import chat, custom, job, speak
from sparkjobs.runs.submit import submit_job
from sparkjobs.runs.wait import wait_for_run
from sparkjobs.store.artifacts import artifact_path
from sparkjobs.store.models import (
    Artifact,
    ArtifactRole,
    AttemptStatus,
    PieceStatus,
    Run,
    Status,
    Step,
)
from tests.support.cluster import Cluster
from tests.support.sim import RunningSims

pytestmark = pytest.mark.redis

HANG_GUARD_S = 120.0
SENTENCES = [
    f"Part {n}, then. {sentence}"
    for n in range(3)
    for sentence in (
        "The morning opens grey over the river, and the first trams cross the bridge.",
        "Markets expect a quiet day; traders watch the bond auction at noon.",
        "In the north, rain turns to snow above six hundred metres by the evening.",
        "The city council meets at ten to vote on the new cycling lanes downtown.",
        "Football fans travel south for the cup match, kick-off at half past eight.",
        "Tomorrow brings sunshine, light winds and a high of eleven degrees.",
    )
]  # distinct sentences: identical pieces would be one artifact


def finished(cluster: Cluster, run_id: object) -> Run:
    run = wait_for_run(cluster.config, run_id, timeout_s=HANG_GUARD_S)  # type: ignore[arg-type]
    assert run.status.terminal, f"run still {run.status} after {HANG_GUARD_S} s (hang guard)"
    return run


def audio_of(step: Step, role: ArtifactRole = ArtifactRole.OUTPUT) -> list[tuple[str, Path]]:
    links = sorted((link for link in step.artifacts if link.role == role),
                   key=lambda link: link.name or "")  # fmt: skip
    return [
        (link.name or "", Path(next(where.path for where in link.artifact.locations
                                    if where.node == step.node)))
        for link in links
    ]  # fmt: skip


def piece_files(cluster: Cluster, step: Step) -> list[Path]:
    """The audio of each piece of a speak step, in order."""
    config = cluster.config
    with store_sessions(config) as sessions, sessions() as session:
        rows = piece_rows(session, step.id)
    assert all(row.status == PieceStatus.SUCCEEDED and row.sha256 for row in rows)
    return [artifact_path(node_root(config, step.node), str(row.sha256)) for row in rows]


def pcm(path: Path) -> array[int]:
    with wave.open(str(path), "rb") as audio:
        assert (audio.getframerate(), audio.getnchannels(), audio.getsampwidth()) == (24000, 1, 2)
        samples = array("h")
        samples.frombytes(audio.readframes(audio.getnframes()))
    return samples


def test_a_chat_then_speak_pipeline_runs_across_both_nodes_and_is_recorded(
    workers: Cluster,
) -> None:
    briefing = job(
        "briefing",
        params={"city": "Berlin"},
        steps=[
            chat("Write two sentences about {params.city} on {slot:%A}.", max_tokens=60),
            speak("{previous}", voice="leah"),
        ],
    )
    slot = datetime(2026, 3, 2, 7, 0, tzinfo=UTC)
    submitted = submit_job(workers.config, briefing, trigger="schedule", scheduled_for=slot)
    run = finished(workers, submitted.run_id)
    assert run.status == Status.SUCCEEDED, run.error
    assert run.kind == "pipeline"
    assert run.scheduled_for == slot
    first, second = run.steps
    assert (first.node, first.service, second.node, second.service) == (
        "spark1", "gemma", "spark2", "orpheus",
    )  # fmt: skip
    assert first.result is not None
    assert first.result.text
    assert first.tokens_out
    assert first.latency_ms is not None
    for step in run.steps:
        assert step.status == Status.SUCCEEDED
        assert step.attempts
        assert step.attempts[-1].status == AttemptStatus.SUCCEEDED
        assert all(a.worker.startswith(f"{step.node}@") for a in step.attempts)
    [(name, path)] = audio_of(second)
    assert name == "audio"
    assert len(pcm(path)) / 24000 == pytest.approx(second.audio_s)
    assert second.result is not None
    assert second.result.data is not None
    assert second.result.data["artifact"] == path.name


def test_a_short_speech_is_spoken_by_its_step_task_and_stored_once(
    workers: Cluster, cluster_sims: RunningSims
) -> None:
    hello = job("hello", steps=[speak("Hello there, good morning.", voice="leah")])
    run = finished(workers, submit_job(workers.config, hello, trigger="submit").run_id)
    assert run.status == Status.SUCCEEDED, run.error
    [step] = run.steps
    assert step.status == Status.SUCCEEDED
    # One attempt, the step task's own: a piece task's attempts name their piece, and
    # a join would be a second attempt.
    [attempt] = step.attempts
    assert (attempt.piece, attempt.status) == (None, AttemptStatus.SUCCEEDED)
    assert (step.pieces_total, step.pieces_done) == (1, 1)
    with store_sessions(workers.config) as sessions, sessions() as session:
        assert piece_rows(session, step.id) == []
        artifacts = list(session.scalars(select(Artifact)))
    # The audio is registered once: one artifact in the store, linked as the output.
    [(name, path)] = audio_of(step)
    assert name == "audio"
    assert [link.role for link in step.artifacts] == [ArtifactRole.OUTPUT]
    assert [artifact.sha256 for artifact in artifacts] == [path.name]
    assert artifacts[0].manifest_sha256 is not None
    assert artifacts[0].duration_s == pytest.approx(step.audio_s)
    assert len(pcm(path)) / 24000 == pytest.approx(step.audio_s)
    assert step.result is not None
    assert step.result.data == {
        "artifact": path.name, "duration_s": pytest.approx(step.audio_s), "pieces": 1,
    }  # fmt: skip
    assert step.ttft_ms is not None
    assert step.latency_ms is not None
    assert cluster_sims.stats("orpheus")["requests"] == 1


def test_long_text_is_spoken_in_pieces_and_joined_without_a_seam(
    workers: Cluster, cluster_sims: RunningSims
) -> None:
    reading = job("reading", steps=[speak(" ".join(SENTENCES), voice="tara")])
    run = finished(workers, submit_job(workers.config, reading, trigger="submit").run_id)
    assert run.status == Status.SUCCEEDED, run.error
    [step] = run.steps
    pieces = piece_files(workers, step)
    assert step.pieces_total is not None
    assert len(pieces) == step.pieces_total >= 3
    # The step task split the text, a task per piece spoke it, a join task joined it.
    whole = [a for a in step.attempts if a.piece is None]
    assert len(whole) == 2
    assert all(a.status == AttemptStatus.SUCCEEDED for a in step.attempts)
    assert sorted(a.piece for a in step.attempts if a.piece is not None) == list(range(len(pieces)))
    # Pieces are linked to the step (role "piece"); identical audio is one artifact.
    linked = {path.name for _, path in audio_of(step, ArtifactRole.PIECE)}
    assert linked == {path.name for path in pieces}
    [(_, joined_path)] = audio_of(step)
    joined = pcm(joined_path)
    lengths = [len(pcm(path)) for path in pieces]
    assert len(joined) == sum(lengths)
    seam = 0
    for length in lengths[:-1]:
        seam += length
        # Both sides of every seam are faded to silence: no jump, so no click.
        assert abs(joined[seam - 1]) <= 1
        assert abs(joined[seam]) <= 1
    # Orpheus takes one request at a time; the worker kept to that.
    assert cluster_sims.stats("orpheus")["max_in_flight"] <= 1


def test_a_failed_piece_is_retried_alone(workers: Cluster, cluster_sims: RunningSims) -> None:
    cluster_sims.set_faults("orpheus", error_rate=0.4)
    reading = job("flaky", steps=[speak(" ".join(SENTENCES))])
    run = finished(workers, submit_job(workers.config, reading, trigger="submit").run_id)
    assert run.status == Status.SUCCEEDED, run.error
    [step] = run.steps
    piece_attempts = [a for a in step.attempts if a.piece is not None]
    failed = [a for a in piece_attempts if a.status == AttemptStatus.FAILED]
    stats = cluster_sims.stats("orpheus")
    assert failed, "the fault injection caused no failure; the test proves nothing"
    assert len(failed) == stats["fates"].get("error", 0)
    assert all("500" in (a.error or "") for a in failed)
    # Each piece succeeded exactly once; only the failed ones were sent again.
    succeeded = sorted(
        a.piece
        for a in piece_attempts
        if a.piece is not None and a.status == AttemptStatus.SUCCEEDED
    )
    assert succeeded == list(range(step.pieces_total or 0))
    assert len(piece_attempts) == stats["requests"]
    assert len(audio_of(step)) == 1


def test_custom_steps_get_a_client_the_params_and_the_previous_output(workers: Cluster) -> None:
    pipeline = job(
        "custom",
        params={"city": "Oslo"},
        steps=[
            chat("Say something about {params.city}.", max_tokens=20, service="qwen"),
            custom("tests.integration.jobs.custom_steps:describe", service="gemma"),
            custom("tests.integration.jobs.custom_steps:ask_twice", service="gemma"),
        ],
    )
    run = finished(workers, submit_job(workers.config, pipeline, trigger="submit",
                                       params={"city": "Bergen"}).run_id)  # fmt: skip
    assert run.status == Status.SUCCEEDED, run.error
    first, second, third = run.steps
    assert first.result is not None
    assert first.result.text
    assert second.result is not None
    assert second.result.text == f"OpenAIClient for Bergen after {len(first.result.text)} chars"
    assert third.result is not None
    assert third.result.data == {"answers": 2, "nonempty": True}


def test_a_permanent_error_fails_the_step_and_the_run_saying_why(workers: Cluster) -> None:
    bad = job("bad-voice", steps=[speak("Hello there.", voice="nobody"), speak("Never.")])
    run = finished(workers, submit_job(workers.config, bad, trigger="submit").run_id)
    assert run.status == Status.FAILED
    assert run.error is not None
    assert "voice 'nobody'" in run.error
    assert "tara" in run.error
    first, second = run.steps
    assert first.status == Status.FAILED
    assert first.error == run.error
    assert (second.status, second.error) == (Status.SKIPPED, NOT_RUN)
    assert second.finished_at is not None  # no longer among the unfinished steps
    assert not second.attempts


def test_two_deliveries_of_a_step_move_the_run_on_once(workers: Cluster, tmp_path: Path) -> None:
    # A twin delivery (a redelivered message, say) runs the step beside the first one;
    # both record it, but only the one whose record finished the step may publish the
    # next step, or every later step would run twice.
    barrier, counter = tmp_path / "barrier", tmp_path / "counter"
    barrier.mkdir()
    counter.mkdir()
    twins = job(
        "twins",
        params={"barrier": str(barrier), "counter": str(counter)},
        steps=[
            custom("tests.integration.jobs.custom_steps:meet_twin", service="gemma"),
            custom("tests.integration.jobs.custom_steps:count_me", service="gemma"),
        ],
    )
    app = create_app(workers.config)
    run_id = submit_job(workers.config, twins, trigger="submit", app=app).run_id
    publish_step(app, run_id, 0, "gemma", kind="custom", job="twins", steps=2)  # the twin
    run = finished(workers, run_id)
    assert run.status == Status.SUCCEEDED, run.error
    first, second = run.steps
    assert len(list(barrier.iterdir())) == 2  # the two deliveries ran step 0 together
    assert [a.status for a in first.attempts] == [AttemptStatus.SUCCEEDED] * 2
    assert len(list(counter.iterdir())) == 1  # step 1 ran once
    assert [a.status for a in second.attempts] == [AttemptStatus.SUCCEEDED]
