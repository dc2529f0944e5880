"""Speech delivered as it is made: `submit speak --out FILE --stream` and `--out -` write
a WAV piece by piece, against real workers; what they write is the step's whole WAV."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from sparkjobs.artifacts.ensure import get_artifact
from sparkjobs.backends.audio import parse_wav
from sparkjobs.runs.info import audio_of
from sparkjobs.runs.wait import wait_for_run
from tests.integration.cli.support import ok, run_count
from tests.integration.jobs.test_runs import SENTENCES
from tests.support.cluster import Cluster

pytestmark = pytest.mark.redis

LONG = " ".join(SENTENCES)  # several pieces


def pcm_of(data: bytes) -> bytes:
    info = parse_wav(data)
    return data[info.data_offset : info.data_offset + info.frames * info.channels * 2]


def joined_wav(cluster: Cluster, run_id: str, tmp_path: Path) -> bytes:
    run = wait_for_run(cluster.config, uuid.UUID(run_id), timeout_s=0)
    found = audio_of(run)
    assert found is not None
    whole = tmp_path / "joined.wav"
    get_artifact(cluster.config, found[0], whole)
    return whole.read_bytes()


def test_a_long_speech_streamed_to_a_file_is_the_steps_whole_wav(
    workers: Cluster, tmp_path: Path
) -> None:
    out = tmp_path / "streamed.wav"
    result = workers.sparkjobs("submit", "speak", LONG, "--out", str(out), "--stream", "--json")
    run = json.loads(ok(result))
    assert run["status"] == "succeeded"
    assert run["steps"][0]["pieces"] > 1
    streamed, joined = out.read_bytes(), joined_wav(workers, run["run_id"], tmp_path)
    assert pcm_of(streamed) == pcm_of(joined)  # same samples, seams faded alike
    assert parse_wav(streamed).frames == parse_wav(joined).frames  # its true sizes


def test_out_dash_streams_the_wav_to_stdout_and_reports_on_stderr(
    workers: Cluster, tmp_path: Path
) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "sparkjobs", "submit", "speak", LONG, "--out", "-"],
        env=workers.env, capture_output=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr.decode(errors="replace")
    assert result.stdout[:4] == b"RIFF"
    assert parse_wav(result.stdout).frames > 0  # a header of unknown size, then the PCM
    said = result.stderr.decode()
    assert "succeeded: run " in said
    run_id = said.split("succeeded: run ", 1)[1].split()[0].rstrip(",")
    assert pcm_of(result.stdout) == pcm_of(joined_wav(workers, run_id, tmp_path))


def test_play_pipes_the_speech_to_a_local_player_as_it_is_made(
    workers: Cluster, tmp_path: Path
) -> None:
    # A stand-in for aplay: it keeps what it is given to play.
    players = tmp_path / "bin"
    players.mkdir()
    heard = tmp_path / "heard.wav"
    aplay = players / "aplay"
    aplay.write_text(
        f"#!{sys.executable}\nimport sys\n"
        f"open({str(heard)!r}, 'wb').write(sys.stdin.buffer.read())\n"
    )
    aplay.chmod(0o755)
    result = subprocess.run(
        [sys.executable, "-m", "sparkjobs", "submit", "speak", LONG, "--play"],
        env={**workers.env, "PATH": str(players)}, capture_output=True, timeout=120,
        check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr.decode(errors="replace")
    said = result.stderr.decode()
    run_id = said.split("succeeded: run ", 1)[1].split()[0].rstrip(",")
    assert pcm_of(heard.read_bytes()) == pcm_of(joined_wav(workers, run_id, tmp_path))


def test_play_without_a_player_says_what_to_install_and_queues_nothing(
    workers: Cluster, tmp_path: Path
) -> None:
    empty = tmp_path / "bin"
    empty.mkdir()
    result = subprocess.run(
        [sys.executable, "-m", "sparkjobs", "submit", "speak", "Hi.", "--play"],
        env={**workers.env, "PATH": str(empty)}, capture_output=True, text=True, timeout=60,
        check=False,
    )  # fmt: skip
    assert result.returncode == 2
    assert "none of ffplay, paplay or aplay is installed" in result.stderr
    assert "apt install" in result.stderr
    assert run_count(workers) == 0


def test_play_with_json_is_refused_before_anything_is_queued(workers: Cluster) -> None:
    result = workers.sparkjobs("submit", "speak", "Hi.", "--play", "--json")
    assert result.returncode == 2
    assert "--play plays the audio; leave out --json" in result.stderr
    assert run_count(workers) == 0


def test_wait_streams_a_running_speech_to_a_file(workers: Cluster, tmp_path: Path) -> None:
    run_id = workers.sparkjobs("submit", "speak", LONG).stdout.strip()
    out = tmp_path / "waited.wav"
    ok(workers.sparkjobs("wait", run_id, "--out", str(out), "--stream"))
    assert pcm_of(out.read_bytes()) == pcm_of(joined_wav(workers, run_id, tmp_path))


def test_a_stream_of_a_chat_only_run_is_refused_with_what_to_do(workers: Cluster) -> None:
    run_id = workers.sparkjobs("submit", "chat", "Hello there.").stdout.strip()
    result = workers.sparkjobs("wait", run_id, "--out", "-")
    assert result.returncode == 2
    assert "has no speak or clone step: there is no audio to stream" in result.stderr
