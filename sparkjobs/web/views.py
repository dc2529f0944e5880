"""Runs, steps and jobs as plain data: what the pages render and the API returns.

One shape for both, so the page and `GET /api/runs/{id}` never disagree. Times are
ISO-8601 in UTC; nothing here ever carries a secret (params are the job's own).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sparkjobs.runs import info as runinfo
from sparkjobs.runs.info import iso
from sparkjobs.runs.waiting import step_waiting
from sparkjobs.store.models import ArtifactRole, Status

if TYPE_CHECKING:
    from collections.abc import Mapping

    from sparkjobs.config import Config
    from sparkjobs.dispatch.places import StepPlace
    from sparkjobs.scheduling.control import JobRow
    from sparkjobs.store.models import Run, Step

AUDIO_TYPES = ("audio/", "application/octet-stream")


def seconds_between(start: datetime | None, end: datetime | None) -> float | None:
    if start is None or end is None:
        return None
    return round((end - start).total_seconds(), 3)


@dataclass(frozen=True)
class Links:
    """Where the page points people: the task in Flower, when Flower is known."""

    flower_url: str | None

    def flower_task(self, task_id: str | None) -> str | None:
        if not task_id or not self.flower_url:
            return None
        return f"{self.flower_url.rstrip('/')}/task/{task_id}"


def run_summary(run: Run) -> dict[str, Any]:
    """A run without its steps: a row of the run list (the CLI's row, with a duration
    and without the parameters, which only the run's own page shows)."""
    row = runinfo.run_summary(run)
    del row["params"]
    row["duration_s"] = seconds_between(run.started_at, run.finished_at)
    return row


def run_detail(
    config: Config, run: Run, links: Links, places: Mapping[int, StepPlace] | None = None
) -> dict[str, Any]:
    """A run with everything loaded by `get_run`: steps, attempts, text and audio;
    `places` are where its waiting steps stand in line, by index."""
    places = places or {}
    steps = [step_detail(config, run, step, links, places.get(step.index)) for step in run.steps]
    texts = [step["text"] for step in steps if step["text"]]
    return {
        **run_summary(run),
        "params": run.params,
        "text": texts[-1] if texts else None,
        "audio": [audio for step in steps for audio in step["audio"]],
        "steps": steps,
    }


def step_detail(
    config: Config, run: Run, step: Step, links: Links, place: StepPlace | None = None
) -> dict[str, Any]:
    spec = step.spec or {}
    result = step.result
    attempts = [
        {
            "number": attempt.number,
            "status": attempt.status.value,
            "worker": attempt.worker,
            "task_id": attempt.task_id,
            "flower_url": links.flower_task(attempt.task_id),
            "started_at": iso(attempt.started_at),
            "finished_at": iso(attempt.finished_at),
            "error": attempt.error,
            "piece": attempt.piece,
        }
        for attempt in step.attempts
    ]
    # The step's audio: its output links, and the artifact its result names (a one-piece
    # speech's output is the same blob as its piece, so its link keeps the piece role).
    named = (result.data or {}).get("artifact") if result is not None else None
    audio = [
        {
            "sha256": link.sha256,
            "name": link.name if link.role == ArtifactRole.OUTPUT and link.name else "audio",
            "media_type": link.artifact.media_type,
            "size_bytes": link.artifact.size_bytes,
            "duration_s": link.artifact.duration_s,
            "nodes": sorted(where.node for where in link.artifact.locations),
            "url": f"/audio/{link.sha256}",
            "step": step.index,
        }
        for link in step.artifacts
        if (link.role == ArtifactRole.OUTPUT or link.sha256 == named)
        and link.artifact.media_type.startswith(AUDIO_TYPES)
    ]
    return {
        "index": step.index,
        "kind": str(spec.get("kind", step.name or "custom")),
        "node": step.node,
        "service": step.service,
        "status": step.status.value,
        "queued_at": iso(step.queued_at),
        "started_at": iso(step.started_at),
        "finished_at": iso(step.finished_at),
        "latency_ms": step.latency_ms,
        "ttft_ms": step.ttft_ms,
        "tokens_out": step.tokens_out,
        "tokens_per_s": step.tokens_per_s,
        "audio_s": step.audio_s,
        "rtf": step.rtf,
        "pieces_total": step.pieces_total,
        "pieces_done": step.pieces_done,
        # A speak step after a chat: "streamed" (it starts on the reply's first
        # sentence) or "batch: why" (`sparkjobs.jobs.handoff`).
        "handoff": spec.get("handoff"),
        "error": step.error,
        # Its place in line is live; a recorded lease wait named the place it had then.
        "waiting_for": waiting_for(config, run, step, place),
        "line": None if place is None else place.as_json(),
        "text": None if result is None else result.text,
        "attempts": attempts,
        "audio": audio,
    }


def waiting_for(config: Config, run: Run, step: Step, place: StepPlace | None = None) -> str | None:
    """Why a step that has not finished is not done yet, in a sentence (what `show`
    says, `sparkjobs.runs.waiting`), or what it is doing while it runs; None otherwise."""
    waiting = step_waiting(run, step, place, config)
    if waiting is not None:
        return waiting.text
    if step.status == Status.RUNNING:
        if step.pieces_total:
            return f"synthesizing: {step.pieces_done} of {step.pieces_total} pieces done"
        if (step.spec or {}).get("handoff") == "streamed":
            return (f"speaking the reply as it is written: {step.pieces_done} piece(s) "
                    "made so far")  # fmt: skip
        return f"running on {step.node} ({step.service})"
    return None


def job_view(row: JobRow) -> dict[str, Any]:
    last = row.last_run
    return {
        "name": row.name,
        "description": row.description,
        "schedule": row.schedule,
        "tz": row.tz,
        "next_fire": iso(row.next_fire),
        "paused": row.paused,
        "last_run": None if last is None else run_summary(last),
        "file": row.file,
    }
