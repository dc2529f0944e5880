"""A node's janitor removes the artifact files no row references, and keeps the rest."""

from __future__ import annotations

import os
import time
from pathlib import Path

from sparkjobs.config import Config
from sparkjobs.store.artifacts import artifact_root, store_artifact
from sparkjobs.store.engine import shared_sessions
from sparkjobs.store.schema import upgrade
from sparkjobs.worker.janitor import Janitor


def test_a_sweep_removes_only_old_unreferenced_files(database_url: str, tmp_path: Path) -> None:
    upgrade(database_url)
    config = Config(
        data_dir=tmp_path,
        database_url=database_url,
        nodes={"spark1": {"bond_address": "127.0.0.1"}},
    )
    root = artifact_root(config.data_dir, "spark1")
    with shared_sessions(database_url).begin() as session:
        kept = store_artifact(
            session, root, b"kept bytes", node="spark1", media_type="application/octet-stream"
        )
    orphan = root / ("ab" * 32)[:2] / ("ab" * 32)
    orphan.parent.mkdir(parents=True, exist_ok=True)
    orphan.write_bytes(b"nobody names me")
    hour_ago = time.time() - 7200
    for path in (orphan, *root.glob(f"*/{kept.sha256}")):
        os.utime(path, (hour_ago, hour_ago))

    Janitor(config, "spark1").sweep()

    assert not orphan.exists()
    assert [p.name for p in root.glob("*/*")] == [kept.sha256]
