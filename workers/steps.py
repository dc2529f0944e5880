"""`sparkjobs.step`: run one step of a run on the node of its service, then the next.

Chaining is done here, not with a Celery chain: the worker that records step n
publishes step n+1 after its transaction commits. The run's progress then lives in
SQL alone, so a redelivered task, the reconciler or a rerun can pick it up from
there. A speak step whose text is one piece is spoken by this task and finished in
one transaction; longer text fans out into pieces and a join (which a chain cannot
express without a chord), another way for a step to finish before the next is published.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any, cast

from celery import Task, shared_task

from sparkjobs.backends import OrpheusClient
from sparkjobs.backends.shared import shared_client
from sparkjobs.broker.app import SparkjobsApp
from sparkjobs.broker.notify import announce_finished
from sparkjobs.broker.publish import STEP_TASK, publish_join
from sparkjobs.config import Config
from sparkjobs.dispatch.admission import call_slot, release_current, send_piece, send_step
from sparkjobs.errors import BadInput, UnknownVoice
from sparkjobs.execution.audio import record_wav, store_wav_soon
from sparkjobs.execution.context import StepContext, find_step, sessions_for
from sparkjobs.execution.cutter import cut_pieces
from sparkjobs.execution.failures import settle
from sparkjobs.execution.handoff import RunEnded, SpeechHandoff, finish_handoff, speech_target
from sparkjobs.execution.outputs import (
    Output,
    read_reference,
    run_chat,
    run_clone,
    run_custom,
    step_timings,
)
from sparkjobs.execution.piece_state import (
    create_pieces,
    pieces_ready,
    place_pieces,
    spoken_in_one_piece,
)
from sparkjobs.execution.prologue import start_task_step
from sparkjobs.execution.sentences import speech_pieces
from sparkjobs.execution.state import (
    NextStep,
    Started,
    fail_step,
    next_to_publish,
    run_ended,
    succeed_step,
    succeeds_in_one_statement,
)
from sparkjobs.execution.templates import render
from sparkjobs.jobs.handoff import STREAMED
from sparkjobs.store.artifacts import link_artifact
from sparkjobs.store.attempts import finish_attempt
from sparkjobs.store.direct import transaction
from sparkjobs.store.engine import shared_engine
from sparkjobs.store.models import ArtifactRole, Status
from workers.pieces import speak_admitted


@shared_task(name=STEP_TASK, bind=True)
def run_step(self: Task[Any, Any], run_id: str, index: int, service: str) -> None:
    """Execute step `index` of run `run_id` (on `service`'s node); safe to run twice."""
    app = cast(SparkjobsApp, self.app)
    config = app.sparkjobs_config
    sessions = sessions_for(config.database)
    run = uuid.UUID(run_id)
    started = start_task_step(self, run, index, service)
    context, attempt = started.context, started.attempt_id
    if attempt is None:  # finished already (or the run was cancelled): at most move on
        if started.status == Status.SUCCEEDED:
            with sessions.begin() as session:
                follow = next_to_publish(session, run, index, steps=context.steps,
                                         started_too=_streams(context))  # fmt: skip
            _move_on(app, context, follow)
        return
    what = f"step {index} ({context.kind} on {service})"
    deferred = started.deferred

    def retry_later(error: str) -> None:
        failed = started.recorded()
        if failed is not None:
            with sessions.begin() as session:
                finish_attempt(session, failed, error=error)

    def fail(error: str) -> None:
        with sessions.begin() as session:
            fail_step(session, run, context.step_id, error, attempt_id=started.recorded())
        announce_finished(config, app.announcer, run, Status.FAILED)
        if _streams(context):  # the speech made so far, kept as a partial artifact
            speak_service = _next_service(config, context)
            publish_join(app, run, index + 1, speak_service, job=context.job,
                         steps=context.steps, partial=True)  # fmt: skip

    try:
        output = _produce(self, config, started, attempt)
        if output is None:  # long speech: fanned out into pieces, finished by the join
            return
        outcome = _record_success(self, config, started, output)
    except RunEnded as exc:  # cancelled, or taken over, while its reply was spoken
        retry_later(str(exc))
        return
    except Exception as exc:
        settle(self, exc, what=what, max_delay_s=config.tasks.max_retry_delay_s,
               on_retry=retry_later, on_failure=fail)  # fmt: skip
        return
    finally:
        if deferred is not None:  # not written by now (a database outage): never
            deferred.take_back()
    if outcome is None:  # the step or its run finished while it ran
        return
    ended, follow = outcome
    if ended:  # after the commit: whoever waits reads SQL now
        announce_finished(config, app.announcer, run, Status.SUCCEEDED)
    if follow is not None and _streams(context):
        finish_handoff(app, context, output.text or "")  # the speak step it streamed into
    else:
        _move_on(app, context, follow)


def _produce(
    task: Task[Any, Any], config: Config, started: Started, attempt: uuid.UUID
) -> Output | None:
    """Run the step's kind; None when its work goes on in other tasks (pieces)."""
    context = started.context
    if context.kind == "speak" or context.spec.get("handoff") == STREAMED:
        return _speak(task, config, context, attempt)  # a clone step streamed into too
    if context.kind == "chat":
        return _chat(cast(SparkjobsApp, task.app), config, started)
    return _execute(config, context)


def _record_success(
    task: Task[Any, Any], config: Config, started: Started, output: Output
) -> tuple[bool, NextStep | None] | None:
    """Record a step's output and success, and its attempt's start if deferred.

    Returns:
        Whether this ended the run, and the step to publish next; None when there
        is nothing to record: the step or its run finished while it ran.
    """
    context, attempt, deferred = started.context, started.attempt_id, started.deferred
    # The WAV goes to disk while the step's rows, its own included, are written;
    # they commit once the file is durable.
    wav = None if output.wav is None else store_wav_soon(config, context.node, output.wav)
    data = output.data if wav is None else {"artifact": wav.sha256, **(output.data or {})}
    engine = shared_engine(config.database)
    # A success without artifacts may be one statement, which needs no transaction
    # around it (two round trips fewer); next_to_publish only reads after it.
    alone = (
        wav is None and not output.inputs and context.kind != "speak"
        and started.started_at is not None
        and succeeds_in_one_statement(engine.dialect.name, output.text, data,
                                      {"timings": output.timings})
    )  # fmt: skip
    # A deferred start is written with the success when both fit one statement.
    with_start = alone and deferred is not None and deferred.take_back()
    if not with_start:
        attempt = started.recorded()
        if attempt is None:  # deferred, and the step or its run finished while it ran
            return None
    with transaction(engine, autocommit=alone) as tx:
        for source in output.inputs:
            link_artifact(tx, context.step_id, source, role=ArtifactRole.INPUT)
        if context.kind == "speak":
            spoken_in_one_piece(tx, context.step_id)
        done = succeed_step(
            tx, context, attempt_id=attempt, text=output.text, data=data,
            task_id=str(task.request.id), timings=output.timings,
            started_at=started.started_at,
            worker=str(task.request.hostname) if with_start else None,
        )  # fmt: skip
        # Only the delivery that finished the step moves the run on: a twin that
        # ran at the same time would otherwise run every later step twice.
        follow = next_to_publish(tx, context.run_id, context.index, steps=context.steps,
                                 started_too=_streams(context)) if done else None  # fmt: skip
        if wav is not None:
            record_wav(tx, wav.wav)
            link_artifact(tx, context.step_id, wav.sha256, name="audio")
            wav.durable()  # last: the rows that name the file commit after its fsync
    return done and context.index == context.steps - 1, follow


def _move_on(app: SparkjobsApp, context: StepContext, follow: NextStep | None) -> None:
    """Queue the run's next step, if there is one to queue (labelled from the context)."""
    if follow is not None:
        send_step(app, context.run_id, follow.index, follow.service, kind=follow.name,
                  job=context.job, steps=context.steps)  # fmt: skip


def _execute(config: Config, context: StepContext) -> Output:
    """Call the step's service and return what it produced (speak steps excepted)."""
    client = shared_client(config.services[context.service], name=context.service)
    if context.kind == "custom":
        # A custom step manages its own calls; the limit applies per request
        # only to built-in steps, whose one call it knows.
        return run_custom(client, context, config.schedules_dir)
    with call_slot():  # the lease `admit` took, given back when the call ends
        if context.kind == "clone":
            ref = str(context.spec["ref_audio"])
            reference = read_reference(config, context.node, ref, where=context.where)
            return run_clone(client, context, reference, ref)
    raise BadInput(f"{context.where}: unknown step kind {context.kind!r}")


def _chat(app: SparkjobsApp, config: Config, started: Started) -> Output:
    """A chat step. With `stream_tokens` in its spec, its reply goes to a Redis stream as
    it arrives; with `speech_handoff`, into the speak step after it, sentence by sentence."""
    context = started.context
    client = shared_client(config.services[context.service], name=context.service)
    listeners: list[Callable[[str], None]] = []
    publisher = None
    if context.spec.get("stream_tokens"):
        from sparkjobs.broker.tokens import TokenPublisher

        publisher = TokenPublisher(config, context.run_id, context.index)
        listeners.append(publisher.publish)
    if _streams(context):
        attempt = started.recorded()  # the handoff writes as this attempt: it must exist
        with sessions_for(config.database).begin() as session:
            target = speech_target(session, context)
        if attempt is not None and target is not None:
            listeners.append(SpeechHandoff(app, context, attempt, target).on_text)

    def on_text(delta: str) -> None:
        for listener in listeners:
            listener(delta)

    try:
        with call_slot():  # the lease `admit` took, given back when the call ends
            output = run_chat(client, context, on_text=on_text if listeners else None)
    except Exception as exc:
        if publisher is not None:
            publisher.close(error=str(exc) or type(exc).__name__)
        raise
    if publisher is not None:
        publisher.close()
    return output


def _streams(context: StepContext) -> bool:
    """Whether this chat step streams its reply into the speak step after it."""
    return bool(context.spec.get("speech_handoff"))


def _next_service(config: Config, context: StepContext) -> str:
    with sessions_for(config.database).begin() as session:
        return find_step(session, context.run_id, context.index + 1).service


def _speak(
    task: Task[Any, Any], config: Config, context: StepContext, attempt: uuid.UUID
) -> Output | None:
    """A speak step: text that is one piece is spoken here, under the lease `admit`
    took; longer text is split into pieces for `speak_piece` (None is returned). Also
    a clone step a chat streamed into: its pieces were placed while the chat ran."""
    app = cast(SparkjobsApp, task.app)
    text = render(str(context.spec["text"]), context.template(), where=context.where)
    streamed = context.spec.get("handoff") == STREAMED
    # The first piece short: its audio comes first, and soon. A step the chat before it
    # streamed into is cut as the stream was, so the pieces made from it are kept.
    pieces = cut_pieces(text) if streamed else speech_pieces(text)
    if not pieces:
        raise BadInput(f"{context.where}: the {context.kind} step's text is empty after rendering")
    if streamed and context.kind == "clone":  # its pieces are checked as they are spoken
        release_current()  # each piece takes a lease of its own
        _fan_out(app, config, context, attempt, pieces, streamed=True)
        return None
    voice = context.spec.get("voice")
    client = shared_client(config.services[context.service], name=context.service)
    if not isinstance(client, OrpheusClient):
        raise BadInput(
            f"{context.where}: service {context.service!r} is not an Orpheus TTS service"
        )
    if voice and voice not in client.voices:
        raise UnknownVoice(
            f"{context.where}: voice {voice!r} is not offered by {context.service}; "
            f"known: {', '.join(client.voices)}"
        )
    if streamed:
        release_current()  # each piece takes a lease of its own
        _fan_out(app, config, context, attempt, pieces, streamed=True)
        return None
    if len(pieces) > 1:
        # Piece 0 is spoken here, under the lease this task holds: its audio comes a
        # message's round trip sooner. The other pieces are queued first, behind it.
        if _fan_out(app, config, context, attempt, pieces, speak_first=True):
            speak_admitted(task, context.run_id, context.index, 0, context.service,
                           hand_on=True)  # fmt: skip
        else:
            release_current()
        return None
    with call_slot():
        result = client.speak(pieces[0], voice=voice)
    data = {"duration_s": result.info.duration_s, "pieces": 1}
    return Output(data=data, wav=result.wav, timings=step_timings(result.timings))


def _fan_out(
    app: SparkjobsApp,
    config: Config,
    context: StepContext,
    attempt: uuid.UUID,
    pieces: list[str],
    *,
    streamed: bool = False,
    speak_first: bool = False,
) -> bool:
    """Record a long text's pieces and queue each; the last one to finish queues the join.

    `streamed`: the chat before the step placed and queued pieces while it generated;
    only the pieces its whole reply adds or changes are queued now (a message lost
    meanwhile is the reconciler's to find). `speak_first`: piece 0 is not queued; the
    caller speaks it.

    Returns:
        Whether piece 0 is still to be spoken and was left to the caller.
    """
    sessions = sessions_for(config.database)
    with sessions.begin() as session:
        if streamed:
            todo = place_pieces(session, context.step_id, pieces, total=len(pieces)) or []
        else:
            todo = create_pieces(session, context.step_id, pieces)
        finish_attempt(session, attempt)  # this attempt split the text; pieces follow
        ready = pieces_ready(session, context.step_id)
        if run_ended(session, context.run_id):  # cancelled meanwhile: queue nothing more
            todo, ready = [], False
    first = speak_first and bool(todo) and todo[0] == 0
    job, steps = context.job, context.steps  # for the labels: no store read per message
    # In text order: on a serial server the line keeps it, so the first piece is
    # spoken first and each one is handed the slot the one before gave back.
    for piece in todo[1:] if first else todo:
        send_piece(app, context.run_id, context.index, piece, context.service,
                   job=job, steps=steps)  # fmt: skip
    if ready:
        publish_join(app, context.run_id, context.index, context.service, job=job, steps=steps)
    return first
