"""The run page and API against real workers on simulated servers, and Flower beside them."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest

from tests.support.cluster import Cluster

pytestmark = pytest.mark.redis

HANG_GUARD_S = 120.0


def finished_run(base: str, run_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + HANG_GUARD_S
    while time.monotonic() < deadline:
        run: dict[str, Any] = httpx.get(f"{base}/api/runs/{run_id}", timeout=5).json()
        if run["status"] not in ("queued", "running"):
            return run
        time.sleep(0.2)
    pytest.fail(f"run {run_id} did not finish in {HANG_GUARD_S} s (hang guard)")


def test_a_speak_submitted_through_the_api_runs_and_its_audio_seeks(serving: Cluster) -> None:
    config = serving.config
    base = f"http://127.0.0.1:{config.web.port}"
    bad = httpx.post(f"{base}/api/speak", json={"text": "Hi", "voice": "tarra"}, timeout=10)
    assert bad.status_code == 400
    assert "did you mean 'tara'?" in bad.json()["error"]
    queued = httpx.post(f"{base}/api/speak", json={"text": "Good morning, Berlin."}, timeout=10)
    assert queued.status_code == 201
    run = finished_run(base, queued.json()["run_id"])
    assert run["status"] == "succeeded", run
    assert run["trigger"] == "api"
    (step,) = run["steps"]
    (audio,) = [a for a in step["artifacts"] if a["sha256"] == step["data"]["artifact"]]
    part = httpx.get(f"{base}/audio/{audio['sha256']}", headers={"Range": "bytes=0-43"}, timeout=10)
    assert part.status_code == 206
    assert part.content[:4] == b"RIFF"
    assert part.headers["content-range"] == f"bytes 0-43/{audio['size_bytes']}"
    page = httpx.get(f"{base}/runs/{run['run_id']}", timeout=10).text
    assert f'src="/audio/{audio["sha256"]}"' in page


def test_run_now_fires_a_job_and_flower_names_its_steps(serving: Cluster) -> None:
    config = serving.config
    base = f"http://127.0.0.1:{config.web.port}"
    pressed = httpx.post(f"{base}/jobs/morning-briefing/run", timeout=10)
    assert pressed.status_code == 303
    run_id = pressed.headers["location"].split("/runs/")[1].split("?")[0]
    run = finished_run(base, run_id)
    assert run["status"] == "succeeded", run
    assert run["trigger"] == "manual"
    assert run["steps"][0]["text"]
    flower = f"http://127.0.0.1:{config.flower.port}"
    deadline = time.monotonic() + HANG_GUARD_S
    labels: list[str] = []
    while time.monotonic() < deadline and len(labels) < 2:
        tasks = httpx.get(f"{flower}/api/tasks", timeout=5).json()
        labels = [t["kwargs"] for t in tasks.values() if run_id in str(t.get("kwargs"))]
        time.sleep(0.3)
    assert any("morning-briefing · step 1/2 chat on gemma@spark1" in label for label in labels)
    # The speech is streamed from the chat (docs/streaming.md): its work is pieces and
    # a join, each named for the step.
    assert any(label.startswith("morning-briefing · step 2/2 speak ")
               and " on orpheus@spark2 · " in label for label in labels), labels  # fmt: skip
    assert "flower_events_total" in httpx.get(f"{flower}/metrics", timeout=5).text


def test_a_runs_speech_streams_from_the_api_while_it_is_made(serving: Cluster) -> None:
    from sparkjobs.backends.audio import parse_wav
    from tests.integration.jobs.test_runs import SENTENCES

    base = f"http://127.0.0.1:{serving.config.web.port}"
    text = " ".join(SENTENCES)
    queued = httpx.post(f"{base}/api/speak", json={"text": text}, timeout=10)
    assert queued.status_code == 201
    run_id = queued.json()["run_id"]
    with httpx.stream("GET", f"{base}/api/runs/{run_id}/audio", timeout=HANG_GUARD_S) as heard:
        assert heard.status_code == 200
        assert heard.headers["content-type"] == "audio/wav"
        assert "content-length" not in heard.headers  # chunked: made as it goes
        streamed = b"".join(heard.iter_bytes())
    run = finished_run(base, run_id)
    assert run["status"] == "succeeded", run
    (step,) = run["steps"]
    whole = httpx.get(f"{base}/audio/{step['data']['artifact']}", timeout=10).content
    info, joined = parse_wav(streamed), parse_wav(whole)
    assert info.frames == joined.frames
    assert streamed[info.data_offset :] == whole[joined.data_offset :]


def test_a_stream_of_a_chat_only_run_is_a_400_that_says_why(serving: Cluster) -> None:
    base = f"http://127.0.0.1:{serving.config.web.port}"
    queued = httpx.post(f"{base}/api/chat", json={"prompt": "Hello."}, timeout=10)
    assert queued.status_code == 201
    answer = httpx.get(f"{base}/api/runs/{queued.json()['run_id']}/audio", timeout=10)
    assert answer.status_code == 400
    assert "no speak or clone step" in answer.json()["error"]


def test_post_speak_with_stream_answers_with_the_speech_itself(serving: Cluster) -> None:
    from sparkjobs.backends.audio import parse_wav
    from tests.integration.jobs.test_runs import SENTENCES

    base = f"http://127.0.0.1:{serving.config.web.port}"
    text = " ".join(SENTENCES[:6])
    body = {"text": text, "stream": True}
    with httpx.stream("POST", f"{base}/api/speak", json=body, timeout=HANG_GUARD_S) as heard:
        assert heard.status_code == 201
        assert heard.headers["content-type"] == "audio/wav"
        run_id = heard.headers["x-sparkjobs-run-id"]
        streamed = b"".join(heard.iter_bytes())
    run = finished_run(base, run_id)
    assert (run["status"], run["trigger"]) == ("succeeded", "api")
    (step,) = run["steps"]
    whole = httpx.get(f"{base}/audio/{step['data']['artifact']}", timeout=10).content
    info, joined = parse_wav(streamed), parse_wav(whole)
    assert streamed[info.data_offset :] == whole[joined.data_offset :]
