"""`sparkjobs submit`, `runs`, `show`, `wait`, `rerun` as subprocesses, against real workers."""

from __future__ import annotations

import json
import re
import uuid
import wave
from pathlib import Path

import pytest

from sparkjobs.backends.audio import encode_wav
from tests.integration.cli.support import ok, shown, with_jobs
from tests.integration.jobs.test_runs import SENTENCES
from tests.support.cluster import Cluster

pytestmark = pytest.mark.redis

RUN_KEYS = {
    "run_id",
    "job",
    "kind",
    "trigger",
    "status",
    "created_at",
    "started_at",
    "finished_at",
    "scheduled_for",
    "error",
    "params",
    "rerun_of",
}
STEP_KEYS = {
    "index",
    "kind",
    "service",
    "node",
    "status",
    "queued_at",
    "started_at",
    "finished_at",
    "latency_ms",
    "ttft_ms",
    "tokens_in",
    "tokens_out",
    "tokens_per_s",
    "audio_s",
    "rtf",
    "pieces",
    "error",
    "waiting_for",
    "waiting_since",
    "text",
    "data",
    "artifacts",
    "attempts",
}
ATTEMPT_KEYS = {
    "number",
    "piece",
    "worker",
    "task_id",
    "status",
    "started_at",
    "finished_at",
    "error",
}
ARTIFACT_KEYS = {"sha256", "role", "name", "size_bytes", "media_type", "nodes"}
ISO_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?\+00:00$")


def seconds_of(path: Path) -> float:
    with wave.open(str(path), "rb") as audio:
        assert (audio.getframerate(), audio.getnchannels()) == (24000, 1)
        return audio.getnframes() / 24000


def test_speak_waits_and_writes_the_audio_fetched_from_the_tts_node(
    workers: Cluster, tmp_path: Path
) -> None:
    out = tmp_path / "hello.wav"
    result = workers.sparkjobs(
        "submit",
        "speak",
        "Hello there, this is a test.",
        "--voice",
        "tara",
        "--wait",
        "--out",
        str(out),
    )
    ok(result)
    assert seconds_of(out) > 0
    assert "running on spark2" in result.stderr
    assert "s of audio" in result.stderr
    run_id = re.findall(r"run ([0-9a-f-]{36})", result.stderr)[-1]
    run = shown(workers, run_id)
    assert set(run) == RUN_KEYS | {"steps"}
    assert (run["job"], run["kind"], run["trigger"], run["status"]) == (
        "speak",
        "speak",
        "submit",
        "succeeded",
    )
    assert all(ISO_UTC.match(run[key]) for key in ("created_at", "started_at", "finished_at"))
    [step] = run["steps"]
    assert set(step) == STEP_KEYS
    assert (step["waiting_for"], step["waiting_since"]) == (None, None)  # it waits no more
    assert (step["node"], step["service"]) == ("spark2", "orpheus")
    assert step["audio_s"] == pytest.approx(seconds_of(out))
    assert step["attempts"]
    assert all(set(attempt) == ATTEMPT_KEYS for attempt in step["attempts"])
    assert [set(a) for a in step["artifacts"]] == [ARTIFACT_KEYS] * len(step["artifacts"])
    [audio] = [a for a in step["artifacts"] if a["sha256"] == step["data"]["artifact"]]
    assert audio["nodes"] == ["spark2"]
    listed = json.loads(ok(workers.sparkjobs("runs", "--json", "--job", "speak")))
    assert isinstance(listed, list)
    assert [entry["run_id"] for entry in listed] == [run_id]
    assert set(listed[0]) == RUN_KEYS | {"waiting_for", "waiting_since"}
    assert (listed[0]["waiting_for"], listed[0]["waiting_since"]) == (None, None)


def test_without_wait_the_run_id_is_printed_and_wait_delivers_later(
    workers: Cluster, tmp_path: Path
) -> None:
    text = tmp_path / "long.txt"
    text.write_text(" ".join(SENTENCES[:8]))
    submitted = json.loads(ok(workers.sparkjobs("submit", "speak", "--file", str(text), "--json")))
    assert set(submitted) == {"run_id", "job", "status", "kind"}
    assert (submitted["job"], submitted["status"]) == ("speak", "queued")
    run_id = str(uuid.UUID(submitted["run_id"]))
    plain = ok(workers.sparkjobs("submit", "speak", "Short one."))
    uuid.UUID(plain.strip())  # the run id alone, for scripts
    out = tmp_path / "long.wav"
    waited = json.loads(ok(workers.sparkjobs("wait", run_id, "--out", str(out), "--json")))
    assert set(waited) == RUN_KEYS | {"steps", "out"}
    assert waited["out"] == str(out)
    [step] = waited["steps"]
    assert step["pieces"] >= 2  # long text is split as jobs split it
    assert seconds_of(out) == pytest.approx(step["audio_s"])


def test_chat_prints_the_reply_and_streams_the_same_text(workers: Cluster) -> None:
    waited = workers.sparkjobs(
        "submit", "chat", "Say hello {politely}.", "--max-tokens", "24", "--wait"
    )
    reply = ok(waited).strip()
    assert reply
    streamed = workers.sparkjobs(
        "submit",
        "chat",
        "Tell me about rivers.",
        "--model",
        "qwen2.5:32b",
        "--stream",
        "--max-tokens",
        "40",
    )
    text = ok(streamed).strip()
    run_id = re.findall(r"run ([0-9a-f-]{36})", streamed.stderr)[-1]
    run = shown(workers, run_id)
    [step] = run["steps"]
    assert step["service"] == "qwen"
    assert text == step["text"].strip()
    assert step["tokens_out"]


def test_clone_puts_the_reference_on_the_tts_node_and_speaks(
    workers: Cluster, tmp_path: Path
) -> None:
    reference = tmp_path / "me.wav"
    reference.write_bytes(encode_wav(b"\x10\x00\xf0\xff" * 24000))
    out = tmp_path / "cloned.wav"
    result = workers.sparkjobs(
        "submit",
        "clone",
        "Hello in my own voice.",
        "--ref-audio",
        str(reference),
        "--ref-text",
        "A reference.",
        "--wait",
        "--out",
        str(out),
        "--json",
    )
    run = json.loads(ok(result))
    assert run["kind"] == "clone"
    assert seconds_of(out) > 0
    [step] = run["steps"]
    assert (step["node"], step["service"]) == ("spark2", "clone")
    [used] = [a for a in step["artifacts"] if a["role"] == "input"]
    assert used["nodes"] == ["spark2"]  # put on the clone node: it never crossed the broker


def test_submit_job_runs_a_job_file_job_with_params_and_reports_failure(
    workers: Cluster, tmp_path: Path
) -> None:
    cluster = with_jobs(workers, tmp_path)
    result = cluster.sparkjobs(
        "submit", "job", "greeting", "--param", "times=2", "--wait", "--json"
    )
    run = json.loads(ok(result))
    assert (run["job"], run["trigger"], run["params"]) == (
        "greeting",
        "manual",
        {"name": "Ada", "times": 2},
    )
    failed = cluster.sparkjobs("submit", "job", "doomed", "--wait")
    assert failed.returncode == 1
    assert "failed" in failed.stderr
    # The workers started before the job folder existed, so the step cannot even be
    # imported there: either way the run fails, and the reason is printed.
    assert "step 0 (custom on gemma)" in failed.stderr


def test_rerun_submits_the_same_inputs_as_a_new_run(workers: Cluster) -> None:
    first = json.loads(
        ok(
            workers.sparkjobs(
                "submit",
                "chat",
                "Name three {birds}.",
                "--service",
                "gemma",
                "--max-tokens",
                "20",
                "--wait",
                "--json",
            )
        )
    )
    again = json.loads(ok(workers.sparkjobs("rerun", first["run_id"], "--json")))
    assert set(again) == {"run_id", "rerun_of", "status"}
    assert again["rerun_of"] == first["run_id"]
    assert again["run_id"] != first["run_id"]
    second = json.loads(ok(workers.sparkjobs("wait", again["run_id"], "--json")))
    assert (second["trigger"], second["rerun_of"], second["status"]) == (
        "retry",
        first["run_id"],
        "succeeded",
    )
    assert second["steps"][0]["service"] == first["steps"][0]["service"] == "gemma"
    assert second["steps"][0]["text"]
