"""Registering a file in a node's store: the blob (the store's own writer), its chunk
manifest, and the SQL rows, the manifest's digest included."""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING

from sparkjobs.artifacts.manifest import Manifest, ManifestBuilder, build_manifest, write_manifest
from sparkjobs.errors import CorruptArtifact
from sparkjobs.store.artifacts import PARTIAL, StoredFile, artifact_path, artifact_root, write_file
from sparkjobs.store.artifacts import record_artifact as record_row
from sparkjobs.store.durable import commit, disk_full, is_disk_full, preallocate

if TYPE_CHECKING:
    from sqlalchemy.orm import Session, sessionmaker

    from sparkjobs.config import Config

DEFAULT_MEDIA_TYPE = "application/octet-stream"


@dataclass(frozen=True)
class Registered:
    """An artifact now held by a node, with its rows in SQL."""

    sha256: str
    size_bytes: int
    node: str
    path: Path
    manifest_sha256: str


def node_root(config: Config, node: str) -> Path:
    """The node's artifact directory (the store's layout)."""
    return artifact_root(config.data_dir, node)


def register_file(
    sessions: sessionmaker[Session],
    root: Path,
    node: str,
    content: bytes | IO[bytes] | Path,
    *,
    media_type: str = DEFAULT_MEDIA_TYPE,
) -> Registered:
    """Copy `content` into the node's store, build its manifest, and record both.

    The second read (for the manifest) is local and happens once, at registration.
    """
    if isinstance(content, Path):
        with content.open("rb") as handle:
            stored = write_file(root, handle)
    else:
        stored = write_file(root, content)
    return record(sessions, root, node, stored, build_manifest(stored.path), media_type)


def record(
    sessions: sessionmaker[Session],
    root: Path,
    node: str,
    stored: StoredFile,
    manifest: Manifest,
    media_type: str,
) -> Registered:
    """Write the manifest next to the blob and record artifact, location and digest."""
    write_manifest(root, manifest)
    digest = manifest.digest()
    with sessions.begin() as session:
        record_row(session, stored, node=node, media_type=media_type, manifest_sha256=digest)
    return Registered(stored.sha256, stored.size_bytes, node, stored.path, digest)


class Upload:
    """A blob arriving in pieces (an HTTP upload): digested as it is written, then
    renamed into the store only when whole and, if a sha256 was claimed, matching."""

    def __init__(self, root: Path, size_bytes: int | None = None):
        self.root = root
        folder = root / PARTIAL
        folder.mkdir(parents=True, exist_ok=True)
        self.partial = folder / f"{uuid.uuid4().hex}.upload"
        self._fd = os.open(self.partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        self._builder = ManifestBuilder(size_bytes)
        self._closed = False
        try:
            if size_bytes:
                preallocate(self._fd, size_bytes, self.partial)
        except BaseException:
            self.discard()
            raise

    def write(self, data: bytes) -> None:
        try:
            self._write_all(data)
        except OSError as exc:
            self.discard()
            if is_disk_full(exc):
                raise disk_full(self.root, self._builder.size_bytes + len(data), exc) from exc
            raise
        self._builder.update(data)

    def _write_all(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(self._fd, view) :]

    def finish(self, expected_sha256: str | None = None) -> tuple[StoredFile, Manifest]:
        """Truncate to what arrived, verify, fsync and rename into the store.

        Raises:
            CorruptArtifact: the bytes do not hash to `expected_sha256`.
        """
        try:
            manifest = self._builder.finish()
            os.ftruncate(self._fd, manifest.size_bytes)
            if expected_sha256 is not None and manifest.sha256 != expected_sha256:
                raise CorruptArtifact(
                    f"the upload hashes to {manifest.sha256}, not the {expected_sha256} "
                    "it claimed; nothing was stored"
                )
            dest = artifact_path(self.root, manifest.sha256)
            commit(self._fd, self.partial, dest)
        except BaseException:
            self.discard()
            raise
        os.close(self._fd)
        self._closed = True
        return StoredFile(manifest.sha256, manifest.size_bytes, dest), manifest

    def discard(self) -> None:
        """Forget the upload: close and remove its partial file."""
        if not self._closed:
            self._closed = True
            os.close(self._fd)
        self.partial.unlink(missing_ok=True)
