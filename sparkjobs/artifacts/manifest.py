"""Chunk manifests: a digest per fixed-size chunk, so each chunk is checked as it arrives.

A manifest is canonical JSON; its own sha256 is recorded in SQL next to the artifact's
sha256, so a fetch can trust neither the node that serves the bytes nor the manifest.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import xxhash

from sparkjobs.errors import CorruptArtifact

ALGO = "xxh3-128"
MIN_CHUNK_BYTES = 1 << 20
MAX_CHUNK_BYTES = 64 << 20
TARGET_CHUNKS = 64
MANIFESTS = ".manifests"
_READ_BYTES = 4 << 20


class Hasher(Protocol):
    def update(self, data: bytes | bytearray | memoryview, /) -> None: ...
    def hexdigest(self) -> str: ...


# XXH3-128 catches corruption at ~30 GB/s; sha256 is there for callers that want a
# cryptographic chunk digest. The manifest itself is always bound by a sha256.
HASHERS: dict[str, Callable[[], Hasher]] = {
    "xxh3-128": xxhash.xxh3_128,
    "sha256": hashlib.sha256,
}


def chunk_bytes_for(size_bytes: int) -> int:
    """The chunk size for a file: about 64 chunks, a power of two from 1 to 64 MiB.

    Enough chunks for many parallel streams on small files, few requests on large ones.
    """
    chunk = MIN_CHUNK_BYTES
    while chunk < MAX_CHUNK_BYTES and chunk * TARGET_CHUNKS < size_bytes:
        chunk *= 2
    return chunk


def new_hasher(algo: str) -> Hasher:
    try:
        return HASHERS[algo]()
    except KeyError:
        raise CorruptArtifact(
            f"manifest names chunk digest {algo!r}; known: {', '.join(sorted(HASHERS))}"
        ) from None


@dataclass(frozen=True)
class Manifest:
    """The per-chunk digests of one artifact."""

    sha256: str
    size_bytes: int
    chunk_bytes: int
    algo: str
    digests: tuple[str, ...]

    @property
    def chunk_count(self) -> int:
        return len(self.digests)

    def chunk_span(self, index: int) -> tuple[int, int]:
        """(offset, length) of chunk `index` in the file."""
        offset = index * self.chunk_bytes
        return offset, min(self.chunk_bytes, self.size_bytes - offset)

    def to_json(self) -> bytes:
        """The canonical encoding, the one whose sha256 is recorded."""
        document = {
            "algo": self.algo,
            "chunk_bytes": self.chunk_bytes,
            "digests": list(self.digests),
            "sha256": self.sha256,
            "size_bytes": self.size_bytes,
        }
        return json.dumps(document, sort_keys=True, separators=(",", ":")).encode()

    def digest(self) -> str:
        """The sha256 of the canonical encoding."""
        return hashlib.sha256(self.to_json()).hexdigest()

    @classmethod
    def from_json(cls, data: bytes, *, sha256: str, expected_digest: str | None) -> Manifest:
        """Parse a manifest that claims to describe artifact `sha256`.

        Raises:
            CorruptArtifact: its digest differs from `expected_digest`, or it is malformed
                or inconsistent (wrong artifact, size, chunk count).
        """
        if expected_digest is not None and hashlib.sha256(data).hexdigest() != expected_digest:
            raise CorruptArtifact(
                f"the manifest served for {sha256} does not match the digest the store "
                f"records ({expected_digest[:16]}...)"
            )
        try:
            raw = json.loads(data)
            manifest = cls(
                sha256=str(raw["sha256"]),
                size_bytes=int(raw["size_bytes"]),
                chunk_bytes=int(raw["chunk_bytes"]),
                algo=str(raw["algo"]),
                digests=tuple(str(d) for d in raw["digests"]),
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise CorruptArtifact(f"the manifest served for {sha256} is malformed: {exc}") from exc
        expected_chunks = (
            -(-manifest.size_bytes // manifest.chunk_bytes) if manifest.chunk_bytes > 0 else -1
        )
        if manifest.sha256 != sha256 or manifest.chunk_count != expected_chunks:
            raise CorruptArtifact(f"the manifest served for {sha256} describes another file")
        new_hasher(manifest.algo)
        return manifest


class ManifestBuilder:
    """Digests a file fed in any pieces: its sha256 and its chunk digests in one pass."""

    def __init__(self, size_bytes: int | None = None, algo: str = ALGO, chunk_bytes: int = 0):
        self._algo = algo
        self._chunk_bytes = chunk_bytes or chunk_bytes_for(size_bytes or 0)
        self._whole = hashlib.sha256()
        self._chunk = new_hasher(algo)
        self._in_chunk = 0
        self._digests: list[str] = []
        self.size_bytes = 0

    def update(self, data: bytes | bytearray | memoryview) -> None:
        view = memoryview(data)
        self._whole.update(view)
        self.size_bytes += len(view)
        while view:
            take = min(len(view), self._chunk_bytes - self._in_chunk)
            self._chunk.update(view[:take])
            self._in_chunk += take
            view = view[take:]
            if self._in_chunk == self._chunk_bytes:
                self._close_chunk()

    def finish(self) -> Manifest:
        if self._in_chunk or not self._digests:
            self._close_chunk()
        return Manifest(
            sha256=self._whole.hexdigest(),
            size_bytes=self.size_bytes,
            chunk_bytes=self._chunk_bytes,
            algo=self._algo,
            digests=tuple(self._digests) if self.size_bytes else (),
        )

    def _close_chunk(self) -> None:
        self._digests.append(self._chunk.hexdigest())
        self._chunk = new_hasher(self._algo)
        self._in_chunk = 0


def build_manifest(path: Path, algo: str = ALGO) -> Manifest:
    """Read `path` once: its sha256 and its chunk digests."""
    builder = ManifestBuilder(path.stat().st_size, algo)
    buffer = bytearray(_READ_BYTES)
    view = memoryview(buffer)
    with path.open("rb", buffering=0) as handle:
        while count := handle.readinto(buffer):
            builder.update(view[:count])
    return builder.finish()


def chunk_digest(algo: str, data: bytes | bytearray | memoryview) -> str:
    hasher = new_hasher(algo)
    hasher.update(data)
    return hasher.hexdigest()


def manifest_path(root: Path, sha256: str) -> Path:
    """Where a node keeps an artifact's manifest (outside the blob folders GC walks)."""
    return root / MANIFESTS / f"{sha256}.json"


def write_manifest(root: Path, manifest: Manifest) -> Path:
    """Store `manifest` next to the blobs (write, fsync, rename)."""
    path = manifest_path(root, manifest.sha256)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Unique per call: two threads of one server may build the same manifest at once.
    partial = path.with_suffix(f".{os.getpid()}.{secrets.token_hex(4)}.tmp")
    with partial.open("wb") as handle:
        handle.write(manifest.to_json())
        handle.flush()
        os.fsync(handle.fileno())
    partial.replace(path)
    return path


def read_manifest(root: Path, sha256: str) -> Manifest | None:
    """The stored manifest of `sha256` on this node, or None (unchecked: for serving)."""
    try:
        data = manifest_path(root, sha256).read_bytes()
    except FileNotFoundError:
        return None
    return Manifest.from_json(data, sha256=sha256, expected_digest=None)
