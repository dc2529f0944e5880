"""Reading the store: lists of runs, one run in full, and per-service figures.

The CLI, the run page and the API call these; none of them writes SQL of its own.
Percentiles are computed here rather than in SQL, because SQLite has none.
"""

from __future__ import annotations

import functools
import math
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Select, bindparam, select
from sqlalchemy.orm import Session, joinedload

from sparkjobs.errors import BadInput, UnknownRun
from sparkjobs.store.models import Artifact, Run, Status, Step, StepArtifact, Trigger


def list_runs(
    session: Session,
    *,
    job: str | None = None,
    status: Status | Iterable[Status] | None = None,
    trigger: Trigger | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = 100,
    node: str | None = None,
) -> list[Run]:
    """Runs, newest first, filtered by job, status, trigger, creation time and node.

    Args:
        status: one status or several.
        node: only runs with a step on this node.
        since: created at or after; until: created before.
        limit: at most this many (the newest).
    """
    if limit < 1:
        raise BadInput(f"limit must be at least 1, not {limit}")
    query = select(Run).order_by(Run.created_at.desc(), Run.id).limit(limit)
    if job is not None:
        query = query.where(Run.job == job)
    if status is not None:
        statuses = [status] if isinstance(status, str) else list(status)
        query = query.where(Run.status.in_([Status(value) for value in statuses]))
    if trigger is not None:
        query = query.where(Run.trigger == Trigger(trigger))
    if since is not None:
        query = query.where(Run.created_at >= since)
    if until is not None:
        query = query.where(Run.created_at < until)
    if node is not None:
        query = query.where(Run.id.in_(select(Step.run_id).where(Step.node == node)))
    return list(session.scalars(query))


def get_run(session: Session, run_id: uuid.UUID | str) -> Run:
    """One run with its steps, their attempts, results and artifacts (with locations).

    Everything is loaded eagerly, so the run stays readable after the session closes.

    Raises:
        UnknownRun: no run has that id (or it is not a UUID).
    """
    try:
        key = run_id if isinstance(run_id, uuid.UUID) else uuid.UUID(str(run_id))
    except ValueError as exc:
        raise UnknownRun(f"{run_id!r} is not a run id (a UUID such as {uuid.uuid4()})") from exc
    run = session.scalars(_run_in_full(), {"run_id": key}).unique().one_or_none()
    if run is None:
        raise UnknownRun(f"no run {key} in the store; `sparkjobs runs` lists the recent ones")
    return run


@functools.cache
def _run_in_full() -> Select[Run]:
    """The query of `get_run`, built once (a waiting caller runs it at every run's end).

    Two SELECTs: the run joined with its steps, their results, and their artifacts
    with their locations (a row per artifact and copy); then the attempts. Attempts
    are not joined too: rows would multiply, attempts by artifacts, and speech of many
    pieces has many of both.
    """
    steps = joinedload(Run.steps)
    return (
        select(Run)
        .where(Run.id == bindparam("run_id", type_=Run.__table__.c.id.type))
        .options(
            steps.joinedload(Step.result),
            steps.selectinload(Step.attempts),
            steps.joinedload(Step.artifacts)
            .joinedload(StepArtifact.artifact, innerjoin=True)
            .joinedload(Artifact.locations),
        )
    )


@dataclass(frozen=True)
class ServiceFigures:
    """How one service did over a window of finished steps.

    Latency is the duration of the attempt that finished each step; ttft is the time
    to first token (LLM) or first audio (TTS); rtf is audio seconds / wall seconds
    (above 1: faster than real time).
    A figure is None when no step in the window recorded it.
    """

    service: str
    count: int
    failures: int
    latency_p50_ms: float | None
    latency_p95_ms: float | None
    ttft_p50_ms: float | None
    ttft_p95_ms: float | None
    rtf_p50: float | None
    tokens_per_s_p50: float | None


def percentile(values: Sequence[float], fraction: float) -> float | None:
    """The `fraction` quantile by linear interpolation (numpy's default); None if empty."""
    if not values:
        return None
    ordered = sorted(values)
    position = (len(ordered) - 1) * fraction
    low, high = math.floor(position), math.ceil(position)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def service_figures(
    session: Session,
    *,
    since: datetime,
    until: datetime | None = None,
    service: str | None = None,
) -> list[ServiceFigures]:
    """Per-service counts, failures and timing percentiles of steps finished in a window.

    Args:
        since: steps finished at or after this time; until: and before this one.
        service: only this service.

    Returns:
        One entry per service that finished a step in the window, by service name.
    """
    query = select(
        Step.service, Step.status, Step.latency_ms, Step.ttft_ms, Step.rtf, Step.tokens_per_s
    ).where(Step.finished_at >= since, Step.status.in_([Status.SUCCEEDED, Status.FAILED]))
    if until is not None:
        query = query.where(Step.finished_at < until)
    if service is not None:
        query = query.where(Step.service == service)
    grouped: dict[str, list[Any]] = {}
    for row in session.execute(query):
        grouped.setdefault(row.service, []).append(row)
    figures = []
    for name in sorted(grouped):
        rows = grouped[name]
        # Timings describe successful calls; a failure's latency is a timeout's length.
        ok = [row for row in rows if row.status == Status.SUCCEEDED]

        def known(column: str, ok: list[Any] = ok) -> list[float]:
            return [value for row in ok if (value := getattr(row, column)) is not None]

        figures.append(
            ServiceFigures(
                service=name,
                count=len(rows),
                failures=len(rows) - len(ok),
                latency_p50_ms=percentile(known("latency_ms"), 0.5),
                latency_p95_ms=percentile(known("latency_ms"), 0.95),
                ttft_p50_ms=percentile(known("ttft_ms"), 0.5),
                ttft_p95_ms=percentile(known("ttft_ms"), 0.95),
                rtf_p50=percentile(known("rtf"), 0.5),
                tokens_per_s_p50=percentile(known("tokens_per_s"), 0.5),
            )
        )
    return figures
