"""`sparkjobs.join_audio`: join a long speak step's pieces into its one WAV output.

Queued by the last piece to finish, on the node that stored the pieces. It reads the
pieces back from the artifact store (they are linked to the step with role "piece"),
so a redelivered join rebuilds the same WAV, which content addressing makes the same
artifact. Then the run moves on to its next step.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, cast

from celery import Task, shared_task
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from sparkjobs.backends.timings import real_time_factor
from sparkjobs.broker.app import SparkjobsApp
from sparkjobs.broker.notify import announce_finished
from sparkjobs.broker.publish import JOIN_TASK
from sparkjobs.config import Config
from sparkjobs.dispatch.admission import send_step
from sparkjobs.errors import BadAudio, PermanentError
from sparkjobs.execution.audio import read_artifact, record_wav, store_wav
from sparkjobs.execution.context import find_step, load_context, sessions_for
from sparkjobs.execution.failures import settle
from sparkjobs.execution.piece_state import piece_rows
from sparkjobs.execution.state import fail_step, next_to_publish, succeed_step
from sparkjobs.execution.wavjoin import join_wavs
from sparkjobs.store.artifacts import link_artifact
from sparkjobs.store.attempts import StepTimings, finish_attempt, record_result, start_attempt
from sparkjobs.store.models import Attempt, AttemptStatus, PieceStatus, Status
from sparkjobs.store.runs import utc_now


@shared_task(name=JOIN_TASK, bind=True)
def join_audio(
    self: Task[Any, Any], run_id: str, index: int, service: str, partial: bool = False
) -> None:
    """Join the pieces of step `index` of run `run_id`; safe to run twice.

    `partial`: the step failed while it was spoken (the chat streaming into it failed):
    join the pieces made so far into an artifact marked partial, never its output.
    """
    if partial:
        config = cast(SparkjobsApp, self.app).sparkjobs_config
        _keep_partial(config, sessions_for(config.database), uuid.UUID(run_id), index)
    else:
        _join(self, run_id, index, service)


def _join(task: Task[Any, Any], run_id: str, index: int, service: str) -> None:
    """Join the pieces of step `index` into its output, and move the run on."""
    app = cast(SparkjobsApp, task.app)
    config = app.sparkjobs_config
    sessions = sessions_for(config.database)
    run = uuid.UUID(run_id)
    with sessions.begin() as session:
        step = find_step(session, run, index)
        attempt = start_attempt(
            session, step.id, task_id=str(task.request.id), worker=str(task.request.hostname)
        )
        follow = None
        if attempt is None and step.status == Status.SUCCEEDED:
            follow = next_to_publish(session, run, index)
        context = load_context(session, run, index)
        pieces, first_piece_at = _synthesized(session, step.id)
        expected, started_at = step.pieces_total, step.started_at
    if attempt is None:
        if follow is not None:
            send_step(app, run, follow.index, follow.service, kind=follow.name)
        return
    what = f"step {index} (speak on {service}), join"

    def retry_later(error: str) -> None:
        with sessions.begin() as session:
            finish_attempt(session, attempt.id, error=error)

    def fail(error: str) -> None:
        with sessions.begin() as session:
            fail_step(session, run, context.step_id, error, attempt_id=attempt.id)
        announce_finished(config, app.announcer, run, Status.FAILED)

    try:
        if expected is None or len(pieces) != expected:
            raise PermanentError(f"{len(pieces)} of {expected} pieces are synthesized")
        wavs = [read_artifact(config, context.node, str(sha)) for sha, _ in pieces]
        try:
            joined = join_wavs(wavs)
        except BadAudio as exc:  # the pieces will not change: retrying cannot help
            raise PermanentError(str(exc)) from exc
        stored = store_wav(config, context.node, joined.wav)
        now = utc_now()
        timings = _timings(joined.duration_s, started_at, first_piece_at, pieces[0][1], now)
        data = {"artifact": stored.sha256, "duration_s": joined.duration_s, "pieces": len(pieces)}
        with sessions.begin() as session:
            record_wav(session, stored)
            link_artifact(session, context.step_id, stored.sha256, name="audio")
            finish_attempt(session, attempt.id, now=now)
            # The step's latency runs from its first attempt (the split) to now.
            done = succeed_step(session, context, attempt_id=None, data=data,
                                task_id=str(task.request.id), timings=timings, now=now)  # fmt: skip
            ended = done and context.index == context.steps - 1
            follow = next_to_publish(session, run, index)
    except Exception as exc:
        settle(task, exc, what=what, max_delay_s=config.tasks.max_retry_delay_s,
               on_retry=retry_later, on_failure=fail)  # fmt: skip
        return
    if ended:  # after the commit: whoever waits reads SQL now
        announce_finished(config, app.announcer, run, Status.SUCCEEDED)
    if follow is not None:
        send_step(app, run, follow.index, follow.service, kind=follow.name)


def _synthesized(
    session: Session, step_id: uuid.UUID
) -> tuple[list[tuple[str | None, float | None]], datetime | None]:
    """The step's synthesized pieces in order (sha256, time to first audio), and when
    the attempt that synthesized piece 0 began."""
    pieces = [(row.sha256, row.ttft_ms) for row in piece_rows(session, step_id)
              if row.status == PieceStatus.SUCCEEDED]  # fmt: skip
    first_piece_at = session.scalar(
        select(Attempt.started_at)
        .where(Attempt.step_id == step_id, Attempt.piece == 0,
               Attempt.status == AttemptStatus.SUCCEEDED)
    )  # fmt: skip
    return pieces, first_piece_at


def _timings(
    audio_s: float,
    started_at: datetime | None,
    first_piece_at: datetime | None,
    first_ttft_ms: float | None,
    now: datetime,
) -> StepTimings:
    """The step's timings: its real-time factor over the whole step, and its time to
    first audio as the listener waits it (until piece 0 began, plus that piece's own)."""
    wall_s = (now - started_at).total_seconds() if started_at else 0.0
    ttft_ms = None
    if first_ttft_ms is not None and first_piece_at is not None and started_at is not None:
        ttft_ms = (first_piece_at - started_at).total_seconds() * 1000 + first_ttft_ms
    return StepTimings(ttft_ms=ttft_ms, audio_s=audio_s, rtf=real_time_factor(audio_s, wall_s))


PARTIAL_NAME = "audio-partial"


def _keep_partial(
    config: Config, sessions: sessionmaker[Session], run: uuid.UUID, index: int
) -> None:
    """Join the pieces a failed step made, from the first on, into an artifact linked as
    "audio-partial", with `partial: true` in the step's data; the step stays failed."""
    with sessions.begin() as session:
        step = find_step(session, run, index)
        rows = piece_rows(session, step.id)
        step_id, node = step.id, step.node
    made: list[str] = []
    for row in rows:  # in order, up to the first piece not made
        if row.status != PieceStatus.SUCCEEDED or row.sha256 is None or row.index != len(made):
            break
        made.append(row.sha256)
    if not made:
        return
    joined = join_wavs([read_artifact(config, node, sha) for sha in made])
    stored = store_wav(config, node, joined.wav)
    data = {"partial": True, "partial_artifact": stored.sha256, "pieces": len(made),
            "pieces_placed": len(rows), "duration_s": joined.duration_s}  # fmt: skip
    with sessions.begin() as session:
        record_wav(session, stored)
        link_artifact(session, step_id, stored.sha256, name=PARTIAL_NAME)
        record_result(session, step_id, data=data)
