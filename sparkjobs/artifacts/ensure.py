"""Getting an artifact where it is needed: into a node's store (`ensure_local`, what
workers call before a step) or into any file (`get_artifact`), from the nodes that SQL
says hold it, and recording the new copy."""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from sparkjobs.artifacts.fetch import DEFAULT_STREAMS, Fetched, Progress, fetch_manifest, fetch_to
from sparkjobs.artifacts.locate import (
    ArtifactInfo,
    check_sha256,
    endpoint,
    find,
    set_manifest_digest,
    store_sessions,
)
from sparkjobs.artifacts.manifest import Manifest, write_manifest
from sparkjobs.artifacts.register import node_root
from sparkjobs.errors import ArtifactUnavailable
from sparkjobs.observe.counters import record_transfer
from sparkjobs.store.artifacts import PARTIAL, StoredFile, artifact_path
from sparkjobs.store.artifacts import record_artifact as record_row

if TYPE_CHECKING:
    from sqlalchemy.orm import Session, sessionmaker

    from sparkjobs.config import Config


def ensure_local(
    config: Config,
    sha256: str,
    node: str,
    *,
    streams: int = DEFAULT_STREAMS,
    progress: Progress | None = None,
) -> Path:
    """The path of artifact `sha256` in `node`'s store, pulling it over the bond first
    when only other nodes hold it. Call it on `node` itself (its disk is the target).

    Raises:
        UnknownArtifact: SQL holds no such artifact.
        UnknownNode: `node` is not in the config.
        ArtifactUnavailable: no other node could deliver it (verified chunks are kept).
        CorruptArtifact: every location served bad bytes; nothing was stored.
        DiskFull: no room on this node; nothing partial is left.
    """
    sha256 = check_sha256(sha256)
    endpoint(config, node)
    root = node_root(config, node)
    dest = artifact_path(root, sha256)
    with store_sessions(config) as sessions:
        info = find(sessions, sha256)
        if _holds(info, node, dest):
            return dest
        with _fetch_lock(root, sha256):
            info = find(sessions, sha256)
            if _holds(info, node, dest):
                return dest
            started = time.monotonic()
            fetched, manifest = _fetch(
                config, info, dest, streams=streams, exclude=node,
                partial_dir=root / PARTIAL, progress=progress,
            )  # fmt: skip
            record_transfer(node, fetched.bytes_received, time.monotonic() - started)
            write_manifest(root, manifest)
            with sessions.begin() as session:
                stored = StoredFile(sha256, fetched.size_bytes, dest)
                record_row(session, stored, node=node, media_type=info.media_type,
                           manifest_sha256=manifest.digest())  # fmt: skip
    return dest


def get_artifact(
    config: Config,
    sha256: str,
    out: Path,
    *,
    streams: int = DEFAULT_STREAMS,
    progress: Progress | None = None,
    sessions: sessionmaker[Session] | None = None,
) -> Fetched:
    """Fetch artifact `sha256` into the file `out` (not recorded as a location).

    Raises: as `ensure_local`.
    """
    sha256 = check_sha256(sha256)
    if sessions is None:
        with store_sessions(config) as own:
            return get_artifact(
                config, sha256, out, streams=streams, progress=progress, sessions=own
            )
    info = find(sessions, sha256)
    fetched, manifest = _fetch(config, info, out, streams=streams, progress=progress)
    if info.manifest_sha256 is None:
        with sessions.begin() as session:
            set_manifest_digest(session, sha256, manifest.digest())
    return fetched


def _fetch(
    config: Config,
    info: ArtifactInfo,
    dest: Path,
    *,
    streams: int,
    exclude: str | None = None,
    partial_dir: Path | None = None,
    progress: Progress | None = None,
) -> tuple[Fetched, Manifest]:
    sources = [
        endpoint(config, node) for node in info.nodes if node != exclude and node in config.nodes
    ]
    if not sources:
        where = ", ".join(info.nodes) or "no node"
        raise ArtifactUnavailable(
            f"artifact {info.sha256} is held by {where}, and no other configured node "
            "has it to fetch from"
        )
    token = config.artifacts.token.get_secret_value() if config.artifacts.token else None
    manifest = fetch_manifest(sources, info.sha256, info.manifest_sha256, token)
    fetched = fetch_to(
        sources, manifest, dest, token=token, streams=streams, partial_dir=partial_dir,
        trusted_manifest=info.manifest_sha256 is not None, progress=progress,
    )  # fmt: skip
    return fetched, manifest


def _holds(info: ArtifactInfo, node: str, dest: Path) -> bool:
    try:
        return node in info.nodes and dest.stat().st_size == info.size_bytes
    except FileNotFoundError:
        return False


@contextmanager
def _fetch_lock(root: Path, sha256: str) -> Iterator[None]:
    # One fetch of an artifact into a node's store at a time, across processes: the
    # second waits, then finds the file in place.
    folder = root / PARTIAL
    folder.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(folder / f"{sha256}.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        yield
    finally:
        os.close(descriptor)
