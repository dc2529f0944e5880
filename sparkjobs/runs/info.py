"""Runs as plain data (the `--json` shapes, and the API's), and following one to its end.

`run_summary` is a run in a list, `run_detail` one run in full with its steps,
attempts, results and artifacts; both use ISO-8601 UTC times and the run's id as
`run_id`. Each step says what it waits for (`waiting_for`, `waiting_since`: null when
it does not wait; `sparkjobs.runs.waiting`), and one with work in its service's line
its `line` (`line_places` reads them from Redis). `follow_run` polls the store
until the run finishes, telling the caller each time what it sees changes; `audio_of`
names the WAV a run produced.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.exc import DBAPIError

from sparkjobs.runs.waiting import Waiting, step_waiting
from sparkjobs.store.models import ArtifactRole, Run, Status, Step

if TYPE_CHECKING:
    from collections.abc import Mapping

    from sqlalchemy.orm import Session

    from sparkjobs.config import Config
    from sparkjobs.dispatch.places import StepPlace

log = logging.getLogger(__name__)

# Poll quickly at first (a short job's end is noticed within milliseconds), then
# back off so that a long wait costs the database little.
POLL_STEPS_S = ((2.0, 0.005), (10.0, 0.05), (float("inf"), 0.25))


def iso(moment: datetime | None) -> str | None:
    """An aware time as ISO-8601 in UTC (the store keeps UTC), or None."""
    return None if moment is None else moment.isoformat()


def run_summary(run: Run) -> dict[str, Any]:
    """A run as one entry of `sparkjobs runs --json` (no steps)."""
    return {
        "run_id": str(run.id),
        "job": run.job,
        "kind": run.kind.value,
        "trigger": run.trigger.value,
        "status": run.status.value,
        "created_at": iso(run.created_at),
        "started_at": iso(run.started_at),
        "finished_at": iso(run.finished_at),
        "scheduled_for": iso(run.scheduled_for),
        "error": run.error,
        "params": dict(run.params or {}),
        "rerun_of": None if run.rerun_of is None else str(run.rerun_of),
    }


def run_detail(run: Run, places: Mapping[int, StepPlace] | None = None) -> dict[str, Any]:
    """A run in full, as `sparkjobs show --json` prints it: the summary plus its steps.

    The run must come from `store.queries.get_run` (everything loaded); `places` are
    its steps' places in line, by index (`line_places`).
    """
    places = places or {}
    steps = [
        step_detail(step, places.get(step.index), step_waiting(run, step, places.get(step.index)))
        for step in run.steps
    ]
    return {**run_summary(run), "steps": steps}


def line_places(config: Config, session: Session, run: Run) -> dict[int, StepPlace]:
    """Where the unfinished steps of `run` stand in their services' lines, by index;
    empty for a finished run, and when the broker does not answer (logged)."""
    import functools

    from sparkjobs.broker.client import key, redis_client
    from sparkjobs.dispatch.leases import Leases
    from sparkjobs.dispatch.places import step_places

    if run.status.terminal:
        return {}
    try:
        client = redis_client(config, timeout_s=2.0)
        try:
            leases = Leases(client, functools.partial(key, config),
                            ttl_s=config.dispatch.lease_ttl_s)  # fmt: skip
            return step_places(config, session, leases, run)
        finally:
            client.close()
    except Exception as exc:  # the places are extra: the run shows without them
        log.warning("the lines of run %s could not be read: %s", run.id, type(exc).__name__)
        return {}


def step_detail(
    step: Step, place: StepPlace | None = None, waiting: Waiting | None = None
) -> dict[str, Any]:
    """One step: where it ran, its timings, output, artifacts and attempts, and what it
    waits for (`waiting`, from `runs.waiting.step_waiting`; null when it does not); a
    step that waits in its service's line also has `line` (`place`)."""
    result = step.result
    extra: dict[str, Any] = {}
    if place is not None:
        extra["line"] = place.as_json()
    return {
        "index": step.index,
        "kind": step.name,
        "service": step.service,
        "node": step.node,
        "status": step.status.value,
        "queued_at": iso(step.queued_at),
        "started_at": iso(step.started_at),
        "finished_at": iso(step.finished_at),
        "latency_ms": step.latency_ms,
        "ttft_ms": step.ttft_ms,
        "tokens_in": step.tokens_in,
        "tokens_out": step.tokens_out,
        "tokens_per_s": step.tokens_per_s,
        "audio_s": step.audio_s,
        "rtf": step.rtf,
        "pieces": step.pieces_total,
        "error": step.error,
        "waiting_for": None if waiting is None else waiting.text,
        "waiting_since": None if waiting is None else iso(waiting.since),
        "text": None if result is None else result.text,
        "data": None if result is None else result.data,
        "artifacts": [
            {
                "sha256": link.sha256,
                "role": link.role.value,
                "name": link.name,
                "size_bytes": link.artifact.size_bytes,
                "media_type": link.artifact.media_type,
                "nodes": sorted(where.node for where in link.artifact.locations),
            }
            for link in sorted(step.artifacts, key=lambda link: (link.role, link.name or ""))
        ],
        "attempts": [
            {
                "number": attempt.number,
                "piece": attempt.piece,
                "worker": attempt.worker,
                "task_id": attempt.task_id,
                "status": attempt.status.value,
                "started_at": iso(attempt.started_at),
                "finished_at": iso(attempt.finished_at),
                "error": attempt.error,
            }
            for attempt in step.attempts
        ],
        **extra,
    }


def audio_of(run: Run) -> tuple[str, Step] | None:
    """The sha256 of the audio the run's last step produced, and that step; None if none.

    The step's result names it (`data.artifact`); the step's output link named
    "audio" is only a fallback, for a result that does not.
    """
    for step in reversed(run.steps):
        data = step.result.data if step.result is not None else None
        if data and isinstance(data.get("artifact"), str):
            return str(data["artifact"]), step
        for link in step.artifacts:
            if link.role == ArtifactRole.OUTPUT and link.name == "audio":
                return link.sha256, step
    return None


def text_of(run: Run) -> str | None:
    """The text output of the run's last step with one."""
    for step in reversed(run.steps):
        if step.result is not None and step.result.text is not None:
            return step.result.text
    return None


@dataclass(frozen=True)
class Progress:
    """What a run looks like now: its status, and the step that is the furthest along."""

    status: Status
    step: int | None
    kind: str | None
    node: str | None
    service: str | None
    pieces_total: int | None
    pieces_done: int


def follow_run(
    config: Config,
    run_id: uuid.UUID,
    *,
    on_progress: Callable[[Progress], None] | None = None,
    timeout_s: float | None = None,
) -> Run:
    """Poll the store until the run finishes (or `timeout_s` passes); the run, all loaded.

    `on_progress` is called whenever the status, the current step or its count of
    finished pieces changes. Between two polls it listens for the run's end
    announcement (`sparkjobs.broker.notify`), so the end is seen at once.

    Raises:
        UnknownRun: no such run.
        Unreachable: the database did not answer.
    """
    from sparkjobs.artifacts.locate import store_sessions
    from sparkjobs.broker.notify import FinishWatch
    from sparkjobs.store.engine import reading, unreachable
    from sparkjobs.store.queries import get_run

    started = time.monotonic()
    seen: Progress | None = None
    watch: FinishWatch | None = None
    with store_sessions(config) as sessions, ExitStack() as stack:
        try:
            while True:
                with reading(sessions) as session:
                    progress = _progress(session, run_id)
                    if progress is None or progress.status.terminal:
                        return get_run(session, run_id)
                if progress != seen and on_progress is not None:
                    on_progress(progress)
                seen = progress
                waited = time.monotonic() - started
                if timeout_s is not None and waited >= timeout_s:
                    with reading(sessions) as session:
                        return get_run(session, run_id)
                if watch is None:  # subscribed only once there is something to wait for
                    watch = stack.enter_context(FinishWatch(config, run_id))
                watch.wait(next(pause for until, pause in POLL_STEPS_S if waited < until))
        except DBAPIError as exc:
            raise unreachable(config.database, exc) from exc


def _progress(session: Any, run_id: uuid.UUID) -> Progress | None:
    status = session.scalar(select(Run.status).where(Run.id == run_id))
    if status is None:
        return None
    row = session.execute(
        select(Step.index, Step.name, Step.node, Step.service, Step.pieces_total,
               Step.pieces_done)
        .where(Step.run_id == run_id, Step.status != Status.QUEUED)
        .order_by(Step.index.desc()).limit(1)
    ).first()  # fmt: skip
    if row is None:
        return Progress(Status(status), None, None, None, None, None, 0)
    return Progress(
        Status(status), row.index, row.name, row.node, row.service, row.pieces_total,
        int(row.pieces_done or 0),
    )  # fmt: skip
