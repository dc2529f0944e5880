"""The partial file of a fetch and its resume sidecar: where they live, the checkpoint
that lists the chunks already on disk, and the last check before the rename."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from sparkjobs.artifacts.fetch_state import FetchState
from sparkjobs.artifacts.manifest import Manifest
from sparkjobs.artifacts.streams import BUFFER_BYTES
from sparkjobs.errors import CorruptArtifact
from sparkjobs.store.durable import drop_cache


def partial_paths(dest: Path, sha256: str, partial_dir: Path | None = None) -> tuple[Path, Path]:
    """The hidden partial file of a fetch into `dest`, and its resume sidecar."""
    folder = partial_dir or dest.parent
    stem = f"{sha256}.fetch" if partial_dir else f".{dest.name}.{sha256[:12]}.partial"
    return folder / stem, folder / f"{stem}.json"


def checkpoint(fd: int, sidecar: Path, plan: FetchState) -> None:
    with plan.cond:
        verified = sorted(plan.verified)
    os.fdatasync(fd)
    state = {
        "sha256": plan.manifest.sha256,
        "manifest_sha256": plan.manifest.digest(),
        "verified": verified,
    }
    temporary = sidecar.with_suffix(".tmp")
    temporary.write_text(json.dumps(state))
    os.replace(temporary, sidecar)


def load_sidecar(sidecar: Path, manifest: Manifest) -> set[int]:
    try:
        state = json.loads(sidecar.read_text())
        if state["sha256"] != manifest.sha256 or state["manifest_sha256"] != manifest.digest():
            return set()
        return {int(i) for i in state["verified"] if 0 <= int(i) < manifest.chunk_count}
    except (OSError, ValueError, KeyError, TypeError):
        return set()


def check_whole(fd: int, manifest: Manifest, partial: Path, sidecar: Path) -> None:
    digest = hashlib.sha256()
    buffer = bytearray(BUFFER_BYTES * 4)
    view = memoryview(buffer)
    position = 0
    while position < manifest.size_bytes:
        count = os.preadv(fd, [view[: min(len(view), manifest.size_bytes - position)]], position)
        if not count:
            break
        digest.update(view[:count])
        position += count
    drop_cache(fd)
    if digest.hexdigest() != manifest.sha256:
        remove(partial, sidecar)
        raise CorruptArtifact(
            f"artifact {manifest.sha256} arrived whole but hashes to {digest.hexdigest()}: "
            "its (unrecorded) manifest was wrong; nothing was stored"
        )


def remove(*paths: Path) -> None:
    for path in paths:
        path.unlink(missing_ok=True)
