"""Audio artifacts of steps: writing a WAV into this node's store, reading one back.

Writes go through the artifact package's registration, so every WAV gets its chunk
manifest and can be pulled over the bond by another node; reads fall back to
`ensure_local`, which fetches a copy this node does not hold.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sparkjobs.artifacts.register import node_root, register_file
from sparkjobs.execution.state import sessions_for
from sparkjobs.store.artifacts import artifact_path

if TYPE_CHECKING:
    from sparkjobs.config import Config

WAV = "audio/wav"


def save_wav(config: Config, node: str, wav: bytes) -> str:
    """Store `wav` in `node`'s artifact store (file, manifest, rows); its sha256."""
    sessions = sessions_for(config.database)
    return register_file(sessions, node_root(config, node), node, wav, media_type=WAV).sha256


def read_artifact(config: Config, node: str, sha256: str) -> bytes:
    """The bytes of an artifact, from `node`'s store, fetched there first if needed."""
    path = artifact_path(node_root(config, node), sha256)
    try:
        return path.read_bytes()
    except FileNotFoundError:
        from sparkjobs.artifacts.ensure import ensure_local

        return ensure_local(config, sha256, node).read_bytes()
