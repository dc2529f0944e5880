"""A chat's reply handed to the speak step after it sentence by sentence, while it is generated.

When a job's speak step reads the chat step before it (`{previous}`) and streaming is on
(`sparkjobs.jobs.handoff`), the chat's worker cuts the reply into speech pieces as it
arrives (`sparkjobs.execution.cutter.PieceCutter`), records each piece as a row of the
speak step and queues it to the speak step's node at once: the TTS server speaks the
first sentence while the LLM still writes the rest. Pieces pass through Redis as the
same `speak_piece` messages a long speech fans out into; their text is in SQL.

Only the chat's newest attempt may write, and only while the chat and the run go on:
a chat generated again (its worker died) places its own pieces over the old ones,
keeping every piece whose text is the same (`piece_state.place_pieces`). Once the chat
has succeeded, its worker publishes the speak step itself, which cuts the recorded
reply the same way, fixes the count and queues what is left (`workers.steps`).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from sparkjobs.broker.app import SparkjobsApp
from sparkjobs.dispatch.admission import send_piece
from sparkjobs.errors import SparkjobsError
from sparkjobs.execution.context import StepContext, find_step, sessions_for
from sparkjobs.execution.cutter import PieceCutter
from sparkjobs.execution.piece_state import place_pieces
from sparkjobs.execution.templates import TemplateContext, render
from sparkjobs.store.models import Attempt, Run, Step

# Stands for the chat's reply while the speak step's template is filled in around it.
_REPLY = "\x00sparkjobs-reply\x00"


class RunEnded(SparkjobsError):
    """The run ended (cancelled, say) or the chat was taken over while it streamed."""


@dataclass(frozen=True)
class SpeechTarget:
    """The speak step a chat streams into: where it runs, and its text around the reply."""

    step_id: uuid.UUID
    index: int
    service: str
    prefix: str  # the rendered text before the reply
    suffix: str  # and after it


def speech_text(template: str, context: TemplateContext, *, where: str) -> tuple[str, str]:
    """A speak step's text before and after the chat's reply, from the chat's context.

    `context` is the chat step's (the steps before it); the reply stands where the
    template reads the step after them, the chat (`{previous}`).
    """
    filled = render(template, TemplateContext(context.slot, context.params,
                                              (*context.outputs, _REPLY)), where=where)  # fmt: skip
    prefix, _, suffix = filled.partition(_REPLY)
    return prefix, suffix


def speech_target(session: Session, context: StepContext) -> SpeechTarget | None:
    """The speak step after chat step `context` when the run streams into it, else None."""
    if not context.spec.get("speech_handoff") or context.index + 1 >= context.steps:
        return None
    step = find_step(session, context.run_id, context.index + 1)
    spec = dict(step.spec or {})
    prefix, suffix = speech_text(str(spec["text"]), context.template(),
                                 where=str(spec.get("origin", f"step {step.index}")))  # fmt: skip
    return SpeechTarget(step.id, step.index, step.service, prefix, suffix)


class SpeechHandoff:
    """The chat side: feed it the reply's deltas (`on_text`); it places and queues pieces.

    Raises `RunEnded` from `on_text` when the run ended or a newer attempt took over,
    which stops the chat's generation at its next sentence.
    """

    def __init__(
        self, app: SparkjobsApp, context: StepContext, attempt_id: uuid.UUID, target: SpeechTarget
    ) -> None:
        self._app, self._context, self._attempt, self._target = app, context, attempt_id, target
        self._sessions = sessions_for(app.sparkjobs_config.database)
        self._cutter = PieceCutter()
        self._placed = 0
        self._hand_over(self._cutter.feed(target.prefix))

    @property
    def on_text(self) -> Callable[[str], None]:
        return self._on_text

    def _on_text(self, delta: str) -> None:
        self._hand_over(self._cutter.feed(delta))

    def _hand_over(self, pieces: list[str]) -> None:
        if not pieces:
            return
        with self._sessions.begin() as session:
            todo = None
            if _may_write(session, self._context, self._attempt):
                todo = place_pieces(session, self._target.step_id, pieces, first=self._placed)
        if todo is None:
            raise RunEnded(
                f"run {self._context.run_id} ended, or step {self._context.index} was taken "
                "over by a newer attempt, while its reply was being spoken"
            )
        self._placed += len(pieces)
        for piece in todo:
            send_piece(self._app, self._context.run_id, self._target.index, piece,
                       self._target.service, job=self._context.job,
                       steps=self._context.steps)  # fmt: skip


def _may_write(session: Session, context: StepContext, attempt_id: uuid.UUID) -> bool:
    """Whether the chat's attempt `attempt_id` is its newest and the chat and run go on."""
    chat = session.scalars(select(Step).where(Step.id == context.step_id)).one()
    run_status = session.scalar(select(Run.status).where(Run.id == context.run_id))
    if chat.status.terminal or run_status is None or run_status.terminal:
        return False
    newest = session.scalar(
        select(Attempt.id)
        .where(Attempt.step_id == context.step_id)
        .order_by(Attempt.number.desc())
        .limit(1)
    )
    return newest == attempt_id


def finish_handoff(app: SparkjobsApp, context: StepContext, reply: str) -> None:
    """After the chat's success: cut its whole reply (with the speak step's text around
    it) as the stream was cut, fix the speak step's count and queue what is left; the
    join too when every piece is made already.

    The speak step's own task does the same when it is published instead (a worker that
    died before this, found by the reconciler): both are idempotent.
    """
    from sparkjobs.broker.publish import publish_join
    from sparkjobs.execution.cutter import cut_pieces
    from sparkjobs.execution.piece_state import pieces_ready

    sessions = sessions_for(app.sparkjobs_config.database)
    with sessions.begin() as session:
        target = speech_target(session, context)
        if target is None:
            return
        pieces = cut_pieces(f"{target.prefix}{reply}{target.suffix}")
        todo = place_pieces(session, target.step_id, pieces, total=len(pieces)) if pieces else None
        ready = todo is not None and pieces_ready(session, target.step_id)
    if todo is None:  # nothing to speak (the speak step's task fails it, saying so)
        if not pieces:
            from sparkjobs.dispatch.admission import send_step

            send_step(app, context.run_id, target.index, target.service, kind="speak",
                      job=context.job, steps=context.steps)  # fmt: skip
        return
    for piece in todo:
        send_piece(app, context.run_id, target.index, piece, target.service,
                   job=context.job, steps=context.steps)  # fmt: skip
    if ready:
        publish_join(app, context.run_id, target.index, target.service, job=context.job,
                     steps=context.steps)  # fmt: skip
