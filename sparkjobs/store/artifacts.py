"""A node's local content-addressed artifact directory, and the rows that index it.

A blob lives at `<root>/<sha[:2]>/<sha>`. It is written to a partial file in
`<root>/.partial`, fsynced and renamed into place, so a reader never sees half a file
and a crash leaves only a partial that garbage collection removes.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import uuid
import wave
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, cast

from sqlalchemy import CursorResult, Table, select, update
from sqlalchemy.orm import Session

from sparkjobs.store.durable import fsync_dir, make_dirs
from sparkjobs.store.keyed import (
    insert_ignoring_conflicts,
    insert_or_fill,
    named_params,
    typed_param,
    upsert,
)
from sparkjobs.store.models import (
    Artifact,
    ArtifactLocation,
    ArtifactRole,
    StepArtifact,
)
from sparkjobs.store.runs import utc_now

if TYPE_CHECKING:
    from sparkjobs.store.direct import Executor

PARTIAL = ".partial"
_CHUNK_BYTES = 1 << 20
WAV_TYPES = frozenset({"audio/wav", "audio/x-wav", "audio/wave"})


@dataclass(frozen=True)
class StoredFile:
    """A blob now in a node's artifact directory."""

    sha256: str
    size_bytes: int
    path: Path


def artifact_root(data_dir: Path, node: str) -> Path:
    """A node's artifact directory; per node, so that nodes sharing a machine never clash."""
    return data_dir / "artifacts" / node


def artifact_path(root: Path, sha256: str) -> Path:
    return root / sha256[:2] / sha256


def write_file(root: Path, content: bytes | IO[bytes] | Iterable[bytes]) -> StoredFile:
    """Put a blob into the directory under its sha256 (partial file, fsync, rename).

    Args:
        content: the bytes, a binary file object, or an iterable of chunks.
    """
    partial_dir = root / PARTIAL
    make_dirs(partial_dir)
    partial = partial_dir / f"{uuid.uuid4().hex}.part"
    digest = hashlib.sha256()
    size = 0
    try:
        with partial.open("wb") as handle:
            for chunk in _chunks(content):
                digest.update(chunk)
                handle.write(chunk)
                size += len(chunk)
            handle.flush()
            os.fsync(handle.fileno())
        sha256 = digest.hexdigest()
        final = artifact_path(root, sha256)
        make_dirs(final.parent)
        # Same content, same name: replacing an existing copy is harmless, and it
        # refreshes the mtime that garbage collection's grace period looks at.
        partial.replace(final)
        fsync_dir(final.parent)
    finally:
        partial.unlink(missing_ok=True)
    return StoredFile(sha256, size, final)


def record_artifact(
    session: Session,
    stored: StoredFile,
    *,
    node: str,
    media_type: str,
    duration_s: float | None = None,
    sample_rate_hz: int | None = None,
    manifest_sha256: str | None = None,
    now: datetime | None = None,
) -> Artifact:
    """Insert the artifact's row (once) and this node's location (refreshed each time).

    For WAV audio, the duration and sample rate are read from the file when not given.
    A `manifest_sha256` is recorded on a row that has none yet, in the same statement
    (a digest already recorded is never replaced).
    """
    if media_type in WAV_TYPES and (duration_s is None or sample_rate_hz is None):
        duration_s, sample_rate_hz = _wav_info(stored.path, duration_s, sample_rate_hz)
    write_artifact_rows(
        session, stored, node=node, media_type=media_type, duration_s=duration_s,
        sample_rate_hz=sample_rate_hz, manifest_sha256=manifest_sha256, now=now,
    )  # fmt: skip
    return session.scalars(select(Artifact).where(Artifact.sha256 == stored.sha256)).one()


def write_artifact_rows(
    session: Executor,
    stored: StoredFile,
    *,
    node: str,
    media_type: str,
    duration_s: float | None,
    sample_rate_hz: int | None,
    manifest_sha256: str | None,
    now: datetime | None = None,
) -> None:
    """The statements of `record_artifact`, with every value given: the file is not
    read (it may still be on its way to the disk), and nothing is read back."""
    now = now or utc_now()
    values = {
        "sha256": stored.sha256,
        "size_bytes": stored.size_bytes,
        "media_type": media_type,
        "duration_s": duration_s,
        "sample_rate_hz": sample_rate_hz,
        "created_at": now,
    }
    if manifest_sha256 is None:
        insert_ignoring_conflicts(session, Artifact, values)
    else:
        values["manifest_sha256"] = manifest_sha256
        insert_or_fill(session, Artifact, values, keys=("sha256",), fill=("manifest_sha256",))
    location = {"sha256": stored.sha256, "node": node, "path": str(stored.path), "verified_at": now}
    upsert(session, ArtifactLocation, location, keys=("sha256", "node"))


def store_artifact(
    session: Session,
    root: Path,
    content: bytes | IO[bytes] | Iterable[bytes],
    *,
    node: str,
    media_type: str,
    duration_s: float | None = None,
    sample_rate_hz: int | None = None,
) -> Artifact:
    """Write a blob into `root` (the node's directory) and record it: `write_file`, then
    `record_artifact`. The file is in place before its row exists."""
    stored = write_file(root, content)
    return record_artifact(
        session,
        stored,
        node=node,
        media_type=media_type,
        duration_s=duration_s,
        sample_rate_hz=sample_rate_hz,
    )


def link_artifact(
    session: Executor,
    step_id: uuid.UUID,
    sha256: str,
    *,
    role: ArtifactRole = ArtifactRole.OUTPUT,
    name: str | None = None,
) -> bool:
    """Record that a step produced (or read) an artifact; True if this call linked it.

    A linked artifact is kept by `sparkjobs db prune` for as long as the run is.
    """
    values = {"step_id": step_id, "sha256": sha256, "role": ArtifactRole(role), "name": name}
    if insert_ignoring_conflicts(session, StepArtifact, values):
        return True
    if ArtifactRole(role) != ArtifactRole.OUTPUT:
        return False
    # Speech of one piece joins into the piece itself: its link becomes the output.
    promoted = session.execute(_promote(), named_params(step_id=step_id, sha256=sha256, name=name))
    return bool(cast("CursorResult[Any]", promoted).rowcount)


@functools.cache
def _promote() -> Any:
    """UPDATE a step's piece link to an artifact into its output. Parameters: step_id,
    sha256, name."""
    links = cast(Table, StepArtifact.__table__)
    return (
        update(links)
        .where(links.c.step_id == typed_param(links, "step_id"),
               links.c.sha256 == typed_param(links, "sha256"),
               links.c.role == ArtifactRole.PIECE)
        .values(role=ArtifactRole.OUTPUT, name=typed_param(links, "name"))
    )  # fmt: skip


def _chunks(content: bytes | IO[bytes] | Iterable[bytes]) -> Iterable[bytes]:
    if isinstance(content, bytes | bytearray | memoryview):
        yield bytes(content)
    elif hasattr(content, "read"):
        while chunk := content.read(_CHUNK_BYTES):
            yield chunk
    else:
        yield from content


def _wav_info(
    path: Path, duration_s: float | None, sample_rate_hz: int | None
) -> tuple[float | None, int | None]:
    # A malformed WAV still gets stored; its figures stay unknown.
    with contextlib.suppress(wave.Error, EOFError), wave.open(str(path), "rb") as audio:
        rate = audio.getframerate()
        length = audio.getnframes() / rate if rate else None
        return (duration_s if duration_s is not None else length), sample_rate_hz or rate
    return duration_s, sample_rate_hz
