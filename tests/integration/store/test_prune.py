"""Retention: old runs go, referenced artifacts stay, unreferenced ones are freed."""

from __future__ import annotations

import os
import time
from datetime import timedelta
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from sparkjobs.store.artifacts import (
    PARTIAL,
    artifact_path,
    artifact_root,
    link_artifact,
    record_artifact,
    write_file,
)
from sparkjobs.store.attempts import record_result
from sparkjobs.store.models import (
    Artifact,
    ArtifactLocation,
    Result,
    Run,
    RunKind,
    Status,
    Step,
    Trigger,
)
from sparkjobs.store.prune import prune, remove_unreferenced_files
from sparkjobs.store.runs import add_step, create_run, utc_now

NODE = "spark2"


def _run_with(
    session: Session, root: Path, *, age: timedelta, blobs: list[bytes], status: Status
) -> None:
    when = utc_now() - age
    run, _ = create_run(
        session, job="speak", kind=RunKind.SPEAK, trigger=Trigger.SUBMIT, status=status, now=when
    )
    step = add_step(session, run.id, 0, service="orpheus", node=NODE, now=when)
    record_result(session, step.id, text="said", now=when)
    for blob in blobs:
        stored = write_file(root, blob)
        record_artifact(session, stored, node=NODE, media_type="audio/wav", now=when)
        link_artifact(session, step.id, stored.sha256)


def _orphan(session: Session, root: Path, blob: bytes, *, age: timedelta) -> None:
    stored = write_file(root, blob)
    record_artifact(session, stored, node=NODE, media_type="audio/wav", now=utc_now() - age)


def test_prune_keeps_referenced_artifacts_and_frees_the_rest(
    sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    root = artifact_root(tmp_path, NODE)
    old, recent = timedelta(days=40), timedelta(days=1)
    with sessions.begin() as session:
        _run_with(session, root, age=old, blobs=[b"old-only", b"shared"], status=Status.SUCCEEDED)
        _run_with(session, root, age=recent, blobs=[b"shared", b"new"], status=Status.SUCCEEDED)
        # Old but still queued: not finished, so not pruned, and its blob stays.
        _run_with(session, root, age=old, blobs=[b"stuck"], status=Status.QUEUED)
        _orphan(session, root, b"orphan-old", age=old)
        _orphan(session, root, b"just-put", age=timedelta(0))

    with sessions.begin() as session:
        report = prune(session, older_than=timedelta(days=30))

    assert (report.runs, report.steps, report.artifacts) == (1, 1, 2)
    assert report.bytes_freed == len(b"old-only") + len(b"orphan-old")
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(Run)) == 2
        assert session.scalar(select(func.count()).select_from(Step)) == 2
        assert session.scalar(select(func.count()).select_from(Result)) == 2
        kept = set(session.scalars(select(Artifact.size_bytes)))
        locations = session.scalar(select(func.count()).select_from(ArtifactLocation))
    assert kept == {len(b"shared"), len(b"new"), len(b"stuck"), len(b"just-put")}
    assert locations == 4

    # Then the node's worker frees the files no row names any more.
    with sessions() as session:
        freed = remove_unreferenced_files(session, node=NODE, root=root, min_age_s=0)
    assert (freed.files, freed.size_bytes) == (2, report.bytes_freed)
    remaining = {path.read_bytes() for path in root.glob("*/*") if path.parent.name != PARTIAL}
    assert remaining == {b"shared", b"new", b"stuck", b"just-put"}


def test_pruning_twice_frees_nothing_the_second_time(
    sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    root = artifact_root(tmp_path, NODE)
    with sessions.begin() as session:
        _run_with(session, root, age=timedelta(days=40), blobs=[b"a"], status=Status.FAILED)
    with sessions.begin() as session:
        assert prune(session, older_than=timedelta(days=30)).runs == 1
    with sessions.begin() as session:
        again = prune(session, older_than=timedelta(days=30))
    assert (again.runs, again.artifacts, again.bytes_freed) == (0, 0, 0)


def test_file_collection_spares_young_files_and_removes_stale_partials(
    sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    root = artifact_root(tmp_path, NODE)
    unreferenced = write_file(root, b"written, row not yet inserted")
    partial = root / PARTIAL / "crashed.part"
    partial.write_bytes(b"half")
    with sessions() as session:
        spared = remove_unreferenced_files(session, node=NODE, root=root, min_age_s=3600)
    assert (spared.files, unreferenced.path.exists(), partial.exists()) == (0, True, True)

    hour_ago = time.time() - 7200
    for path in (unreferenced.path, partial):
        os.utime(path, (hour_ago, hour_ago))
    with sessions() as session:
        freed = remove_unreferenced_files(session, node=NODE, root=root, min_age_s=3600)
    assert freed.files == 2
    assert not unreferenced.path.exists()
    assert not partial.exists()
    assert not artifact_path(root, unreferenced.sha256).exists()
