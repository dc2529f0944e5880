"""The node's content-addressed directory and its rows."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from sparkjobs.store.artifacts import (
    PARTIAL,
    artifact_path,
    artifact_root,
    store_artifact,
    write_file,
)
from sparkjobs.store.models import Artifact, ArtifactLocation
from tests.support.audio import silent_wav


def test_a_blob_lands_under_its_sha256_with_no_partial_file_left(tmp_path: Path) -> None:
    root = artifact_root(tmp_path, "spark2")
    stored = write_file(root, [b"hello ", b"world"])
    digest = hashlib.sha256(b"hello world").hexdigest()
    assert (stored.sha256, stored.size_bytes) == (digest, 11)
    assert stored.path == artifact_path(root, digest)
    assert stored.path.read_bytes() == b"hello world"
    assert list((root / PARTIAL).iterdir()) == []


def test_the_same_audio_stored_twice_is_one_row_and_one_file(
    sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    root = artifact_root(tmp_path, "spark2")
    audio = silent_wav(1.5)
    with sessions.begin() as session:
        first = store_artifact(session, root, audio, node="spark2", media_type="audio/wav")
    with sessions.begin() as session:
        again = store_artifact(
            session, root, io.BytesIO(audio), node="spark2", media_type="audio/wav"
        )
    assert again.sha256 == first.sha256
    with sessions() as session:
        artifact = session.scalars(select(Artifact)).one()
        location = session.scalars(select(ArtifactLocation)).one()
    assert artifact.size_bytes == len(audio)
    assert artifact.duration_s == 1.5
    assert artifact.sample_rate_hz == 24000
    assert (location.node, location.path) == ("spark2", str(artifact_path(root, first.sha256)))
    assert [path.name for path in root.glob("*/*") if path.parent.name != PARTIAL] == [first.sha256]


def test_two_nodes_holding_one_blob_have_two_locations(
    sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    with sessions.begin() as session:
        for node in ("spark1", "spark2"):
            store_artifact(
                session,
                artifact_root(tmp_path, node),
                b"voice",
                node=node,
                media_type="audio/wav",
            )
    with sessions() as session:
        nodes = sorted(session.scalars(select(ArtifactLocation.node)))
        # Not a WAV after all: stored anyway, with no audio figures.
        artifact = session.scalars(select(Artifact)).one()
    assert nodes == ["spark1", "spark2"]
    assert artifact.duration_s is None


def test_speech_of_one_piece_links_that_piece_as_the_step_output(
    sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    from sparkjobs.store.artifacts import link_artifact
    from sparkjobs.store.models import ArtifactRole, RunKind, StepArtifact, Trigger
    from sparkjobs.store.runs import add_step, create_run

    with sessions.begin() as session:
        run, _ = create_run(session, job="speak", kind=RunKind.SPEAK, trigger=Trigger.SUBMIT)
        step = add_step(session, run.id, 0, service="orpheus", node="spark2")
        sha = store_artifact(
            session, artifact_root(tmp_path, "spark2"), silent_wav(0.5), node="spark2",
            media_type="audio/wav",
        ).sha256  # fmt: skip
        assert link_artifact(session, step.id, sha, role=ArtifactRole.PIECE)
        # the join of a single piece is that very piece
        assert link_artifact(session, step.id, sha, name="audio")
        assert not link_artifact(session, step.id, sha, name="audio")  # once only
    with sessions() as session:
        links = session.scalars(select(StepArtifact)).all()
    assert [(link.role, link.name) for link in links] == [(ArtifactRole.OUTPUT, "audio")]


def test_a_manifest_digest_is_recorded_on_a_row_that_lacks_one_and_never_replaced(
    sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    from sparkjobs.store.artifacts import record_artifact

    stored = write_file(artifact_root(tmp_path, "spark2"), b"voice")
    with sessions.begin() as session:  # recorded first without a digest (as a step's piece)
        record_artifact(session, stored, node="spark2", media_type="audio/wav")
    digests = []
    for digest in ("a" * 64, "b" * 64):
        with sessions.begin() as session:
            record_artifact(
                session, stored, node="spark1", media_type="audio/wav", manifest_sha256=digest
            )
        with sessions() as session:
            digests.append(session.scalars(select(Artifact.manifest_sha256)).one())
    assert digests == ["a" * 64, "a" * 64]
    with sessions() as session:
        assert sorted(session.scalars(select(ArtifactLocation.node))) == ["spark1", "spark2"]
