"""`sparkjobs.step`: run one step of a run on the node of its service, then the next.

Chaining is done here, not with a Celery chain: the worker that records step n
publishes step n+1 after its transaction commits. The run's progress then lives in
SQL alone, so a redelivered task, the reconciler or a rerun can pick it up from
there; and a speak step's fan-out and join (which a chain cannot express without a
chord) is just another way for a step to finish before the next one is published.
"""

from __future__ import annotations

import uuid
from typing import Any, cast

from celery import Task, shared_task

from sparkjobs.app import SparkjobsApp
from sparkjobs.backends import OrpheusClient, ServerClient, client_for
from sparkjobs.config import Config
from sparkjobs.dispatch.admission import admit, call_slot
from sparkjobs.errors import BadInput, UnknownVoice
from sparkjobs.execution.audio import read_artifact, save_wav
from sparkjobs.execution.dispatch import STEP_TASK, publish_join, publish_piece, publish_step
from sparkjobs.execution.failures import settle
from sparkjobs.execution.outputs import Output, run_chat, run_clone, run_custom
from sparkjobs.execution.sentences import split_text
from sparkjobs.execution.state import (
    StepContext,
    create_pieces,
    fail_step,
    find_step,
    load_context,
    next_to_publish,
    pieces_ready,
    run_ended,
    sessions_for,
    succeed_step,
)
from sparkjobs.execution.templates import render
from sparkjobs.store.artifacts import link_artifact
from sparkjobs.store.models import ArtifactRole, Status
from sparkjobs.store.runs import finish_attempt, start_attempt


@shared_task(name=STEP_TASK, bind=True)
def run_step(self: Task[Any, Any], run_id: str, index: int, service: str) -> None:
    """Execute step `index` of run `run_id` (on `service`'s node); safe to run twice."""
    app = cast(SparkjobsApp, self.app)
    config = app.sparkjobs_config
    sessions = sessions_for(config.database)
    run = uuid.UUID(run_id)
    # A lease of the service (chat, clone), or wait: no attempt before the server can answer.
    admit(self, run_id, index, service)
    with sessions.begin() as session:
        step = find_step(session, run, index)
        attempt = start_attempt(
            session, step.id, task_id=str(self.request.id), worker=str(self.request.hostname)
        )
        context = load_context(session, run, index)
        follow = None
        if attempt is None and step.status == Status.SUCCEEDED:
            follow = next_to_publish(session, run, index)
    if attempt is None:  # finished already (or the run was cancelled): at most move on
        if follow is not None:
            publish_step(app, run, follow.index, follow.service)
        return
    what = f"step {index} ({context.kind} on {service})"

    def retry_later(error: str) -> None:
        with sessions.begin() as session:
            finish_attempt(session, attempt.id, error=error)

    def fail(error: str) -> None:
        with sessions.begin() as session:
            fail_step(session, run, context.step_id, error, attempt_id=attempt.id)

    try:
        if context.kind == "speak":
            _fan_out(app, config, context, attempt.id)
            return
        output = _execute(config, context)
        sha = save_wav(config, context.node, output.wav) if output.wav is not None else None
        with sessions.begin() as session:
            for source in output.inputs:
                link_artifact(session, context.step_id, source, role=ArtifactRole.INPUT)
            data = output.data
            if sha is not None:
                link_artifact(session, context.step_id, sha, name="audio")
                data = {"artifact": sha, **(data or {})}
            succeed_step(
                session, context, attempt_id=attempt.id, text=output.text, data=data,
                task_id=str(self.request.id), timings=output.timings,
            )  # fmt: skip
            follow = next_to_publish(session, run, index)
    except Exception as exc:
        settle(self, exc, what=what, max_delay_s=config.tasks.max_retry_delay_s,
               on_retry=retry_later, on_failure=fail)  # fmt: skip
        return
    if follow is not None:
        publish_step(app, run, follow.index, follow.service)


def _execute(config: Config, context: StepContext) -> Output:
    """Call the step's service and return what it produced (speak steps excepted)."""
    service = config.services[context.service]
    client = client_for(service, name=context.service)
    try:
        if context.kind == "custom":
            # A custom step manages its own calls; the limit applies per request
            # only to built-in steps, whose one call it knows.
            return run_custom(client, context, config.schedules_dir)
        with call_slot():  # the lease `admit` took, given back when the call ends
            if context.kind == "chat":
                return _chat(config, client, context)
            if context.kind == "clone":
                ref = str(context.spec["ref_audio"])
                return run_clone(client, context, _reference(config, context, ref), ref)
    finally:
        client.close()
    raise BadInput(f"{context.where}: unknown step kind {context.kind!r}")


def _chat(config: Config, client: ServerClient, context: StepContext) -> Output:
    """A chat step; with `stream_tokens` in its spec, its pieces go to a Redis stream too."""
    if not context.spec.get("stream_tokens"):
        return run_chat(client, context)
    from sparkjobs.execution.tokens import TokenPublisher

    publisher = TokenPublisher(config, context.run_id, context.index)
    try:
        output = run_chat(client, context, on_text=publisher.publish)
    except Exception as exc:
        publisher.close(error=str(exc) or type(exc).__name__)
        raise
    publisher.close()
    return output


def _reference(config: Config, context: StepContext, ref: str) -> bytes:
    """A clone step's reference voice: an artifact (pulled to this node) or a file."""
    if len(ref) == 64 and all(c in "0123456789abcdef" for c in ref):
        return read_artifact(config, context.node, ref)
    try:
        with open(ref, "rb") as handle:
            return handle.read()
    except OSError as exc:
        raise BadInput(
            f"{context.where}: reference audio {ref!r} cannot be read on node "
            f"{context.node} ({exc.strerror}); deploy it with the schedules, or give an "
            "artifact's sha256 (`sparkjobs artifacts put FILE`)"
        ) from exc


def _fan_out(app: SparkjobsApp, config: Config, context: StepContext, attempt: uuid.UUID) -> None:
    """Split a speak step's text into pieces and queue each; the last one queues the join."""
    text = render(str(context.spec["text"]), context.template(), where=context.where)
    pieces = split_text(text)
    if not pieces:
        raise BadInput(f"{context.where}: the speak step's text is empty after rendering")
    voice = context.spec.get("voice")
    client = client_for(config.services[context.service], name=context.service)
    try:
        known = client.voices if isinstance(client, OrpheusClient) else ()
    finally:
        client.close()
    if voice and known and voice not in known:
        raise UnknownVoice(
            f"{context.where}: voice {voice!r} is not offered by {context.service}; "
            f"known: {', '.join(known)}"
        )
    sessions = sessions_for(config.database)
    with sessions.begin() as session:
        todo = create_pieces(session, context.step_id, pieces)
        finish_attempt(session, attempt)  # this attempt split the text; pieces follow
        ready = pieces_ready(session, context.step_id)
        if run_ended(session, context.run_id):  # cancelled meanwhile: queue nothing more
            todo, ready = [], False
    for piece in todo:
        publish_piece(app, context.run_id, context.index, piece, context.service)
    if ready:
        publish_join(app, context.run_id, context.index, context.service)
