"""Retention: delete old runs and the artifacts nothing references any more.

Rows go first (`prune`, from `sparkjobs db prune`); then each node's worker removes the
files of its own artifact directory that no row names any more
(`remove_unreferenced_files`).
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import delete, exists, func, select
from sqlalchemy.orm import Session

from sparkjobs.errors import BadInput
from sparkjobs.store.artifacts import PARTIAL
from sparkjobs.store.models import TERMINAL, Artifact, ArtifactLocation, Run, Step, StepArtifact
from sparkjobs.store.runs import utc_now

_AGE = re.compile(r"^\s*(\d+)\s*([smhdw])\s*$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_BATCH = 500


def parse_age(text: str) -> timedelta:
    """`30d`, `12h`, `90m`, `2w`, `45s` as a timedelta.

    Raises:
        BadInput: anything else, with examples of what works.
    """
    match = _AGE.match(text)
    if not match:
        raise BadInput(
            f"age {text!r} is not understood; write a number and a unit: 30d, 12h, 90m, 2w"
        )
    return timedelta(**{_UNITS[match[2]]: int(match[1])})


@dataclass(frozen=True)
class PruneReport:
    """What `prune` deleted: runs (with their steps), artifact rows, and their bytes."""

    cutoff: datetime
    runs: int
    steps: int
    artifacts: int
    bytes_freed: int


def prune(session: Session, *, older_than: timedelta, now: datetime | None = None) -> PruneReport:
    """Delete finished runs created before `now - older_than`, then unreferenced artifacts.

    Runs still queued or running are kept whatever their age. An artifact row goes once
    no remaining step links it and it is itself older than the cutoff (so a blob put
    a moment ago, not yet linked, survives). The bytes are freed on each node when its
    worker calls `remove_unreferenced_files`.
    """
    cutoff = (now or utc_now()) - older_than
    old_runs = select(Run.id).where(Run.created_at < cutoff, Run.status.in_(TERMINAL))
    run_ids = list(session.scalars(old_runs))
    steps = 0
    for start in range(0, len(run_ids), _BATCH):
        batch = run_ids[start : start + _BATCH]
        steps += session.scalar(select(func.count()).where(Step.run_id.in_(batch))) or 0
        # Steps, attempts, results and artifact links go by ON DELETE CASCADE.
        session.execute(delete(Run).where(Run.id.in_(batch)))
    unreferenced = select(Artifact.sha256, Artifact.size_bytes).where(
        Artifact.created_at < cutoff,
        ~exists().where(StepArtifact.sha256 == Artifact.sha256),
    )
    doomed = list(session.execute(unreferenced))
    for start in range(0, len(doomed), _BATCH):
        shas = [row.sha256 for row in doomed[start : start + _BATCH]]
        session.execute(delete(Artifact).where(Artifact.sha256.in_(shas)))
    return PruneReport(
        cutoff=cutoff,
        runs=len(run_ids),
        steps=steps,
        artifacts=len(doomed),
        bytes_freed=sum(row.size_bytes for row in doomed),
    )


@dataclass(frozen=True)
class FilesFreed:
    """What `remove_unreferenced_files` deleted from a node's artifact directory."""

    files: int
    size_bytes: int


def remove_unreferenced_files(
    session: Session,
    *,
    node: str,
    root: Path,
    min_age_s: float = 3600.0,
    now_s: float | None = None,
) -> FilesFreed:
    """Delete the files in a node's artifact directory that no location row names.

    Files younger than `min_age_s` are kept: a writer puts the file in place before
    it inserts the row, and rewriting a blob refreshes its mtime. Stale partial files
    (left by a crash) go too.

    Args:
        node: this node's name, as in `artifact_locations.node`.
        root: this node's artifact directory.
        now_s: the current time (epoch seconds), for tests.
    """
    if not root.is_dir():
        return FilesFreed(0, 0)
    referenced = set(
        session.scalars(select(ArtifactLocation.sha256).where(ArtifactLocation.node == node))
    )
    newest_allowed = (time.time() if now_s is None else now_s) - min_age_s
    files = size = 0
    for path in root.glob("*/*"):
        in_partial = path.parent.name == PARTIAL
        if not in_partial and (not _SHA256.match(path.name) or path.name in referenced):
            continue
        try:
            info = path.stat()
            if not path.is_file() or info.st_mtime > newest_allowed:
                continue
            path.unlink()
        except FileNotFoundError:  # another collector got there first
            continue
        files += 1
        size += info.st_size
    return FilesFreed(files, size)
