"""Audio artifacts of steps: writing a WAV into this node's store, reading one back.

Every WAV gets what the artifact package's registration gives a file (the blob, its
rows, the digest of its chunk manifest), so another node can pull it over the bond.
Writing is split in two so that a step records the rows in the same transaction that
finishes it: `store_wav` puts the file on disk (no SQL), `record_wav` writes the rows
in the caller's transaction. `store_wav_soon` writes the file on a background thread,
so that its fsync overlaps the step's SQL, the WAV's own rows included: the rows'
values come from the bytes, and only the commit waits for the disk. Reads fall back to
`ensure_local`, which fetches a copy this node does not hold.
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sparkjobs.artifacts.manifest import (
    MIN_CHUNK_BYTES,
    Manifest,
    ManifestBuilder,
    write_manifest,
)
from sparkjobs.artifacts.register import node_root
from sparkjobs.backends.audio import parse_wav
from sparkjobs.errors import BadAudio
from sparkjobs.execution.context import sessions_for
from sparkjobs.store.artifacts import StoredFile, artifact_path, write_artifact_rows, write_file

if TYPE_CHECKING:
    from sparkjobs.config import Config
    from sparkjobs.store.direct import Executor

WAV = "audio/wav"
# Writing a WAV is mostly waiting for the disk: a few threads per process suffice.
_writers = ThreadPoolExecutor(max_workers=4, thread_name_prefix="sparkjobs-wav")


@dataclass(frozen=True)
class StoredWav:
    """A WAV on a node's disk (blob and manifest) whose rows are not written yet."""

    file: StoredFile
    node: str
    manifest_sha256: str
    duration_s: float | None
    sample_rate_hz: int | None

    @property
    def sha256(self) -> str:
        return self.file.sha256


def describe_wav(config: Config, node: str, wav: bytes) -> tuple[StoredWav, Manifest]:
    """What `store_wav` stores for `wav` (its rows' values, its manifest), from the bytes
    alone: nothing is written."""
    builder = ManifestBuilder(len(wav))
    builder.update(wav)
    manifest = builder.finish()
    sha256 = manifest.sha256  # the builder digests the whole file as well as its chunks
    try:
        info = parse_wav(wav)
        duration_s, rate = info.duration_s, info.sample_rate
    except BadAudio:  # a malformed WAV is still stored; its figures stay unknown
        duration_s, rate = None, None
    file = StoredFile(sha256, len(wav), artifact_path(node_root(config, node), sha256))
    return StoredWav(file, node, manifest.digest(), duration_s, rate), manifest


def store_wav(config: Config, node: str, wav: bytes) -> StoredWav:
    """Put `wav` into `node`'s store (durable on return), with no SQL.

    The blob goes through the store's writer (partial file, fsync, rename). Its chunk
    manifest is digested from the bytes in hand, and its file is written only for a WAV
    of more than one chunk: for a smaller one, the node's artifact server describes the
    blob on the first request (as it does any blob without a manifest), and the digest
    recorded in SQL checks that description; a step saves a file write and its fsync.
    """
    stored, manifest = describe_wav(config, node, wav)
    root = node_root(config, node)
    write_file(root, wav)
    if manifest.size_bytes > MIN_CHUNK_BYTES:
        write_manifest(root, manifest)
    return stored


@dataclass(frozen=True)
class PendingWav:
    """A WAV being written to disk on a background thread; its rows known already."""

    wav: StoredWav
    writes: tuple[Future[Any], ...]  # the blob, and its manifest if it has one

    @property
    def sha256(self) -> str:
        return self.wav.sha256

    def durable(self) -> StoredWav:
        """The WAV, once its files are on disk (raises what writing them raised)."""
        for write in self.writes:
            write.result()
        return self.wav


def store_wav_soon(config: Config, node: str, wav: bytes) -> PendingWav:
    """Start writing `wav` on a background thread; return with its rows' values.

    The caller writes the rows (`record_wav(session, pending.wav)`) while the file's
    fsync runs, and calls `pending.durable()` last before its commit: a row never
    commits naming a file that is not on disk yet.
    """
    root = node_root(config, node)
    writes: list[Future[Any]] = [_writers.submit(write_file, root, wav)]  # its fsync first
    stored, manifest = describe_wav(config, node, wav)
    if manifest.size_bytes > MIN_CHUNK_BYTES:
        writes.append(_writers.submit(write_manifest, root, manifest))
    return PendingWav(stored, tuple(writes))


def record_wav(session: Executor, wav: StoredWav) -> None:
    """Write the rows of a stored WAV (artifact with its manifest digest, location) in
    the caller's transaction; repeats change nothing but the location's freshness
    (and give an artifact row recorded without a manifest digest this one)."""
    write_artifact_rows(
        session, wav.file, node=wav.node, media_type=WAV, duration_s=wav.duration_s,
        sample_rate_hz=wav.sample_rate_hz, manifest_sha256=wav.manifest_sha256,
    )  # fmt: skip


def save_wav(config: Config, node: str, wav: bytes) -> str:
    """Store `wav` in `node`'s artifact store (file, manifest, rows); its sha256."""
    stored = store_wav(config, node, wav)
    with sessions_for(config.database).begin() as session:
        record_wav(session, stored)
    return stored.sha256


def read_artifact(config: Config, node: str, sha256: str) -> bytes:
    """The bytes of an artifact, from `node`'s store, fetched there first if needed."""
    path = artifact_path(node_root(config, node), sha256)
    try:
        return path.read_bytes()
    except FileNotFoundError:
        from sparkjobs.artifacts.ensure import ensure_local

        return ensure_local(config, sha256, node).read_bytes()
