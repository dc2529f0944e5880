"""A step's WAV: its rows are written while its file's fsync runs; they commit after it.

The rows' values (size, digests, duration, path) come from the bytes alone, so they
are the ones the file on disk has; and when the file cannot be written the step's
transaction fails with it, leaving no row that names a missing file.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from sparkjobs.config import Config
from sparkjobs.execution.audio import record_wav, store_wav, store_wav_soon
from sparkjobs.store.models import Artifact, ArtifactLocation
from tests.support.audio import silent_wav
from tests.support.sim import sim_config


def _config(data_dir: Path) -> Config:
    return sim_config().model_copy(update={"data_dir": data_dir})


def test_the_rows_written_before_the_fsync_describe_the_file_on_disk(tmp_path: Path) -> None:
    wav = silent_wav(1.5)
    pending = store_wav_soon(_config(tmp_path / "a"), "n1", wav)
    described = pending.wav
    assert pending.durable() == described
    assert described.file.path.read_bytes() == wav
    # The same bytes stored the slow way (write, then describe) give the same rows.
    stored = store_wav(_config(tmp_path / "b"), "n1", wav)
    assert (stored.sha256, stored.file.size_bytes, stored.manifest_sha256) == (
        described.sha256, described.file.size_bytes, described.manifest_sha256,
    )  # fmt: skip
    assert (stored.duration_s, stored.sample_rate_hz) == (1.5, 24000)
    assert (described.duration_s, described.sample_rate_hz) == (1.5, 24000)


def test_a_file_that_cannot_be_written_leaves_no_row(
    tmp_path: Path, sessions: sessionmaker[Session]
) -> None:
    config = _config(tmp_path)
    (tmp_path / "artifacts").write_text("a file where the store's folder belongs")
    pending = store_wav_soon(config, "n1", silent_wav(0.5))

    def finish_step() -> None:
        with sessions.begin() as session:
            record_wav(session, pending.wav)  # written while the file is being written
            pending.durable()  # as a step does last: the write failed, so no commit

    with pytest.raises(OSError, match="artifacts"):  # not a folder, or it exists
        finish_step()
    with sessions() as session:
        assert session.scalars(select(Artifact)).all() == []
        assert session.scalars(select(ArtifactLocation)).all() == []
