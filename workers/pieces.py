"""`sparkjobs.speak_piece`: synthesize one piece of a long speak step's text.

Only text of more than one piece comes here: the step task speaks a single piece
itself (see `workers.steps`).

Pieces of one step are queued together and run as the node's threads and the
service's `max_in_flight` allow. A piece that fails is retried alone; the others
keep their audio. The piece that brings the count of finished pieces to the total
(one atomic UPDATE in SQL) queues the join: no chord, no result backend.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any, cast

from celery import Task, shared_task

from sparkjobs.backends import OrpheusClient
from sparkjobs.backends.qwen_clone import QwenCloneClient
from sparkjobs.backends.shared import shared_client
from sparkjobs.backends.speech import SpeechResult
from sparkjobs.broker.app import SparkjobsApp
from sparkjobs.broker.notify import announce_audio, announce_finished
from sparkjobs.broker.publish import PIECE_TASK, publish_join
from sparkjobs.config import Config
from sparkjobs.dispatch.admission import call_slot, send_piece
from sparkjobs.errors import BadInput
from sparkjobs.execution.admit import admit
from sparkjobs.execution.audio import record_wav, store_wav
from sparkjobs.execution.context import find_step, sessions_for
from sparkjobs.execution.failures import settle
from sparkjobs.execution.outputs import clone_voice
from sparkjobs.execution.piece_state import fail_piece, finish_piece, pieces_ready, start_piece
from sparkjobs.execution.state import fail_step, run_ended
from sparkjobs.store.artifacts import link_artifact
from sparkjobs.store.attempts import finish_attempt
from sparkjobs.store.engine import reading
from sparkjobs.store.models import ArtifactRole, Status


@shared_task(name=PIECE_TASK, bind=True)
def speak_piece(self: Task[Any, Any], run_id: str, index: int, piece: int, service: str) -> None:
    """Synthesize piece `piece` of step `index` of run `run_id`; safe to run twice."""
    admit(self, run_id, index, service, piece=piece)  # a lease of the service, or wait
    speak_admitted(self, uuid.UUID(run_id), index, piece, service)


def speak_admitted(
    task: Task[Any, Any], run: uuid.UUID, index: int, piece: int, service: str,
    *, hand_on: bool = False,
) -> None:  # fmt: skip
    """Synthesize a piece under the lease the caller holds, and record it.

    `hand_on`: the caller is not this piece's own task (the step task speaks piece 0
    itself, which saves a message's round trip before the first audio): an error is
    not retried here but hands the piece to a `speak_piece` task of its own.
    """
    app = cast(SparkjobsApp, task.app)
    config = app.sparkjobs_config
    sessions = sessions_for(config.database)
    with sessions.begin() as session:
        step = find_step(session, run, index)
        step_id, node, spec = step.id, step.node, dict(step.spec or {})
        started = start_piece(
            session, step_id, piece, task_id=str(task.request.id), worker=str(task.request.hostname)
        )
        due = started is None and pieces_ready(session, step_id)
    if started is None:  # done before (or the run ended); re-queue a join a crash lost
        if due:
            publish_join(app, run, index, service)
        return
    attempt, text = started
    what = f"step {index} (speak on {service}), piece {piece}"

    def retry_later(error: str) -> None:
        with sessions.begin() as session:
            finish_attempt(session, attempt.id, error=error)

    def fail(error: str) -> None:
        with sessions.begin() as session:
            fail_piece(session, step_id, piece, error)
            fail_step(session, run, step_id, error, attempt_id=attempt.id)
        announce_finished(config, app.announcer, run, Status.FAILED)

    try:
        speak = _speaker(config, service, node, spec, what=what)
        with call_slot():
            # Checkpoint: the run may have been cancelled while this piece waited.
            with reading(sessions) as session:
                ended = run_ended(session, run)
            if ended:
                retry_later("the run ended before this piece was synthesized")
                return
            result = speak(text)
        stored = store_wav(config, node, result.wav)
        with sessions.begin() as session:
            record_wav(session, stored)
            sha = stored.sha256
            link_artifact(session, step_id, sha, role=ArtifactRole.PIECE, name=f"piece-{piece:04d}")
            due = finish_piece(session, step_id, piece, sha256=sha,
                               ttft_ms=result.timings.ttft_ms, text=text)  # fmt: skip
            finish_attempt(session, attempt.id)
            ref = str(spec.get("ref_audio", ""))
            if len(ref) == 64:  # a clone's reference artifact: kept as long as the run
                link_artifact(session, step_id, ref, role=ArtifactRole.INPUT)
        # After the commit: whoever streams this run's audio fetches the piece now.
        announce_audio(config, app.announcer, run, index, piece)
    except Exception as exc:
        if hand_on:  # its own task retries it, or fails the step, as for any piece
            retry_later(f"{type(exc).__name__}: {exc}; handed to a piece task")
            send_piece(app, run, index, piece, service)
            return
        settle(task, exc, what=what, max_delay_s=config.tasks.max_retry_delay_s,
               on_retry=retry_later, on_failure=fail)  # fmt: skip
        return
    if due:
        publish_join(app, run, index, service)


def _speaker(
    config: Config, service: str, node: str, spec: dict[str, Any], *, what: str
) -> Callable[[str], SpeechResult]:
    """How a piece of this step is spoken: Orpheus in the step's voice, or the clone
    server in the voice of the step's reference (read once per piece, on this node)."""
    client = shared_client(config.services[service], name=service)
    if spec.get("kind") == "clone":
        if not isinstance(client, QwenCloneClient):
            raise BadInput(f"{what}: service {service!r} is not a qwen-clone service")
        voice = clone_voice(config, node, spec, where=what)
        return lambda text: client.speak(text, reference=voice)
    if not isinstance(client, OrpheusClient):
        raise BadInput(f"{what}: service {service!r} is not an Orpheus TTS service")
    return lambda text: client.speak(text, voice=spec.get("voice"))
