"""A folder made for an artifact is itself durable: its parent is fsynced once it exists."""

from __future__ import annotations

from pathlib import Path

import pytest

from sparkjobs.store import durable as commit
from sparkjobs.store.artifacts import artifact_path, write_file


@pytest.fixture
def fsynced(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    synced: list[Path] = []
    real = commit.fsync_dir

    def recording(folder: Path) -> None:
        synced.append(folder)
        real(folder)

    monkeypatch.setattr(commit, "fsync_dir", recording)
    return synced


def test_each_folder_made_has_its_parent_fsynced(tmp_path: Path, fsynced: list[Path]) -> None:
    commit.make_dirs(tmp_path / "a" / "b" / "c")
    assert (tmp_path / "a" / "b" / "c").is_dir()
    assert fsynced == [tmp_path, tmp_path / "a", tmp_path / "a" / "b"]


def test_folders_that_exist_cost_no_fsync(tmp_path: Path, fsynced: list[Path]) -> None:
    (tmp_path / "a").mkdir()
    commit.make_dirs(tmp_path / "a")
    assert fsynced == []


def test_a_blob_in_a_new_shard_makes_the_shards_entry_durable(
    tmp_path: Path, fsynced: list[Path]
) -> None:
    root = tmp_path / "store"
    root.mkdir()
    (root / ".partial").mkdir()
    stored = write_file(root, b"first blob of its shard")
    assert artifact_path(root, stored.sha256).read_bytes() == b"first blob of its shard"
    assert fsynced == [root]  # the new shard folder's own entry
