"""Inserts built once per shape (`sparkjobs.store.keyed`) write what a call gives.

A statement is reused for every call with the same table and columns, so these check
that each call's own values are written (none leaks from the call that built it),
that typed values (aware times, enums, JSON) round-trip, and that an upsert changes
exactly the non-key columns.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from sparkjobs.store import keyed
from sparkjobs.store.models import Artifact, ArtifactLocation, Run, RunKind, Status, Step, Trigger
from sparkjobs.store.runs import run_values, step_values

NOW = datetime(2026, 11, 27, 18, 0, tzinfo=UTC)


def _artifact(sha256: str, size_bytes: int) -> dict[str, object]:
    return {"sha256": sha256, "size_bytes": size_bytes, "media_type": "audio/wav",
            "created_at": NOW}  # fmt: skip


def test_a_second_insert_of_the_same_shape_writes_its_own_values(
    sessions: sessionmaker[Session],
) -> None:
    with sessions.begin() as session:
        assert keyed.insert_ignoring_conflicts(session, Artifact, _artifact("a" * 64, 10))
        assert keyed.insert_ignoring_conflicts(session, Artifact, _artifact("b" * 64, 20))
    with sessions() as session:
        sizes = {a.sha256: a.size_bytes for a in session.scalars(select(Artifact))}
    assert sizes == {"a" * 64: 10, "b" * 64: 20}


def test_an_insert_that_meets_its_key_changes_nothing_and_says_so(
    sessions: sessionmaker[Session],
) -> None:
    with sessions.begin() as session:
        assert keyed.insert_ignoring_conflicts(session, Artifact, _artifact("a" * 64, 10))
    with sessions.begin() as session:
        assert not keyed.insert_ignoring_conflicts(session, Artifact, _artifact("a" * 64, 99))
    with sessions() as session:
        assert session.scalar(select(Artifact.size_bytes)) == 10


def test_an_upsert_updates_the_non_key_columns_of_the_row_with_its_keys(
    sessions: sessionmaker[Session],
) -> None:
    keys = ("sha256", "node")
    with sessions.begin() as session:
        keyed.insert_ignoring_conflicts(session, Artifact, _artifact("a" * 64, 10))
        for node, path in (("spark1", "/x/1"), ("spark2", "/x/2"), ("spark1", "/y/1")):
            location = {"sha256": "a" * 64, "node": node, "path": path, "verified_at": NOW}
            keyed.upsert(session, ArtifactLocation, location, keys=keys)
    with sessions() as session:
        rows = session.scalars(select(ArtifactLocation))
        assert {row.node: row.path for row in rows} == {"spark1": "/y/1", "spark2": "/x/2"}


def test_insert_or_fill_gives_a_row_only_the_values_it_lacks(
    sessions: sessionmaker[Session],
) -> None:
    def write(sha256: str, size_bytes: int, digest: str) -> None:
        values = {**_artifact(sha256, size_bytes), "manifest_sha256": digest}
        with sessions.begin() as session:
            keyed.insert_or_fill(session, Artifact, values, keys=("sha256",),
                                 fill=("manifest_sha256",))  # fmt: skip

    with sessions.begin() as session:  # a row recorded without a digest
        keyed.insert_ignoring_conflicts(session, Artifact, _artifact("a" * 64, 10))
    write("a" * 64, 99, "d1")  # fills the digest, keeps the size
    write("a" * 64, 99, "d2")  # a digest is never replaced
    write("b" * 64, 20, "d3")  # a new row goes in whole
    with sessions() as session:
        found = session.scalars(select(Artifact))
        rows = {a.sha256: (a.size_bytes, a.manifest_sha256) for a in found}
    assert rows == {"a" * 64: (10, "d1"), "b" * 64: (20, "d3")}


def test_new_rows_go_in_with_their_types_in_one_batch(sessions: sessionmaker[Session]) -> None:
    later = NOW + timedelta(minutes=1)
    runs = [
        run_values(job="speak", kind=RunKind.SPEAK, trigger=Trigger.SUBMIT,
                   params={"voice": "tara", "n": 1}, now=NOW),
        run_values(job="chat", kind=RunKind.PIPELINE, trigger=Trigger.API, interactive=True,
                   params={"nested": {"list": [1, 2]}}, now=later),
    ]  # fmt: skip
    steps = [step_values(run["id"], 0, service="gemma", node="spark1", now=NOW) for run in runs]
    with sessions.begin() as session:
        keyed.insert_new(session, Run, runs)
        keyed.insert_new(session, Step, steps)
        keyed.insert_new(session, Step, [])  # nothing to insert: no statement
    with sessions() as session:
        stored = {run.id: run for run in session.scalars(select(Run))}
        assert set(stored) == {run["id"] for run in runs}
        for given in runs:
            run = stored[given["id"]]
            assert (run.job, run.kind, run.trigger, run.status, run.params, run.interactive) == (
                given["job"], given["kind"], given["trigger"], Status.QUEUED, given["params"],
                given["interactive"],
            )  # fmt: skip
            assert run.created_at.replace(tzinfo=UTC) == given["created_at"]
        assert {step.run_id for step in session.scalars(select(Step))} == set(stored)


def test_each_shape_is_built_once_and_then_reused(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as session:
        dialect = keyed.dialect_name(session)
        first = {"sha256": uuid.uuid4().hex * 2, "size_bytes": 1, "media_type": "audio/wav",
                 "created_at": NOW}  # fmt: skip
        keyed.insert_ignoring_conflicts(session, Artifact, first)
    table = Artifact.__table__
    built = keyed._insert_ignoring(dialect, table, tuple(first))  # type: ignore[arg-type]
    again = keyed._insert_ignoring(dialect, table, tuple(first))  # type: ignore[arg-type]
    fewer = keyed._insert_ignoring(dialect, table, ("sha256", "size_bytes", "created_at"))  # type: ignore[arg-type]
    assert built is again
    assert fewer is not built
