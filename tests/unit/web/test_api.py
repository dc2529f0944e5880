"""The JSON API's validation, errors and shapes (nothing here reaches a broker)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from sparkjobs.errors import BadInput
from sparkjobs.runs.adhoc import chat_job, speak_job
from tests.unit.web.conftest import FAKE_FIXES


def test_a_payload_missing_a_field_is_a_422_that_names_it(make_client: Callable[..., Any]) -> None:
    client, _ = make_client()
    answer = client.post("/api/speak", json={"voice": "tara"})
    assert answer.status_code == 422
    body = answer.json()
    assert body["error"] == "invalid request: text: Field required"
    assert body["problems"] == [{"field": "text", "problem": "Field required"}]
    assert client.post("/api/chat", json={"prompt": "hi", "colour": 1}).status_code == 422
    assert client.post("/api/chat", content=b"not json").status_code == 422


@pytest.mark.parametrize(
    ("path", "payload", "build"),
    [
        ("/api/speak", {"text": "Hello", "voice": "tarra"},
         lambda c: speak_job(c, "Hello", voice="tarra")),
        ("/api/speak", {"text": "  "}, lambda c: speak_job(c, "  ")),
        ("/api/speak", {"text": "Hi", "service": "gemma"},
         lambda c: speak_job(c, "Hi", service="gemma")),
        ("/api/chat", {"prompt": "Hi", "service": "gemm"},
         lambda c: chat_job(c, "Hi", service="gemm")),
        ("/api/chat", {"prompt": "Hi", "model": "llama"},
         lambda c: chat_job(c, "Hi", model="llama")),
    ],
)  # fmt: skip
def test_bad_input_is_a_400_with_the_message_the_cli_gives(
    make_client: Callable[..., Any], path: str, payload: dict[str, Any], build: Any
) -> None:
    client, store = make_client()
    with pytest.raises(BadInput) as cli:
        build(store.config)
    answer = client.post(path, json=payload)
    assert answer.status_code == 400
    assert answer.json() == {"error": str(cli.value)}


def test_a_clone_needs_a_reference_by_sha256(make_client: Callable[..., Any]) -> None:
    client, _ = make_client()
    answer = client.post("/api/clone", json={"text": "Hi", "ref_audio": "me.wav"})
    assert answer.status_code == 400
    assert "sha256" in answer.json()["error"]


def test_runs_are_a_top_level_array_newest_first_in_the_cli_shape(
    make_client: Callable[..., Any],
) -> None:
    client, store = make_client()
    runs = client.get("/api/runs").json()
    assert [r["run_id"] for r in runs] == [
        str(store.queued_run), str(store.failed_run), str(store.speak_run),
    ]  # fmt: skip
    assert set(runs[0]) >= {"run_id", "job", "kind", "trigger", "status", "created_at", "error"}
    assert runs[2]["created_at"] == "2026-03-02T07:00:00+00:00"
    failed = client.get("/api/runs", params={"status": "failed", "limit": "5"}).json()
    assert [r["run_id"] for r in failed] == [str(store.failed_run)]
    assert client.get("/api/runs", params={"node": "spark1"}).json()[0]["job"] == "chat"
    bad = client.get("/api/runs", params={"status": "nope"})
    assert bad.status_code == 400
    assert bad.json()["error"].startswith("unknown status 'nope'; known: queued")
    assert client.get("/api/runs", params={"limit": "ten"}).status_code == 400


def test_a_run_in_full_has_steps_texts_and_artifacts(make_client: Callable[..., Any]) -> None:
    client, store = make_client()
    run = client.get(f"/api/runs/{store.speak_run}").json()
    assert run["run_id"] == str(store.speak_run)
    assert run["status"] == "succeeded"
    chat, speak = run["steps"]
    assert (chat["node"], chat["service"], chat["text"]) == (
        "spark1", "gemma", "Grey skies over the river; markets quiet.",
    )  # fmt: skip
    assert speak["artifacts"][0]["sha256"] == store.audio_sha256
    missing = client.get("/api/runs/00000000-0000-0000-0000-000000000000")
    assert missing.status_code == 404
    assert "sparkjobs runs" in missing.json()["error"]


def test_jobs_are_listed_and_paused_and_resumed(make_client: Callable[..., Any]) -> None:
    client, _ = make_client()
    jobs = {job["name"]: job for job in client.get("/api/jobs").json()}
    assert jobs["evening-digest"]["paused"] is True
    assert jobs["evening-digest"]["next_fire"] is None
    assert jobs["morning-briefing"]["schedule"] == "cron 0 7 * * *"
    paused = client.post("/api/jobs/morning-briefing/pause").json()
    assert paused == {"job": "morning-briefing", "paused": True, "changed": True}
    again = client.post("/api/jobs/morning-briefing/pause").json()
    assert again["changed"] is False
    unknown = client.post("/api/jobs/nope/resume")
    assert unknown.status_code == 404
    assert "known: evening-digest, morning-briefing" in unknown.json()["error"]


def test_service_health_is_listed_as_the_workers_published_it(
    make_client: Callable[..., Any],
) -> None:
    client, _ = make_client()
    health = {h["service"]: h for h in client.get("/api/health").json()}
    assert health["gemma"]["ok"] is True
    assert health["clone"] == {**health["clone"], "ok": False, "problem": "connection refused",
                               "state": "down", "fix": FAKE_FIXES["clone"]}  # fmt: skip
    assert health["orpheus"] == {**health["orpheus"], "ok": True, "state": "busy",
                                 "problem": None, "fix": ""}  # fmt: skip
    assert health["qwen"] == {
        **health["qwen"], "ok": False, "state": "unknown", "since": None, "checked_at": None,
        "detail": "no worker publishes readings for spark1",
    }  # fmt: skip


def test_cancel_marks_a_queued_run_cancelled_once_and_leaves_finished_ones(
    make_client: Callable[..., Any],
) -> None:
    client, store = make_client()
    done = client.post(f"/api/runs/{store.queued_run}/cancel").json()
    assert done == {
        "run_id": str(store.queued_run), "previous": "queued", "status": "cancelled",
        "changed": True,
    }  # fmt: skip
    assert client.get(f"/api/runs/{store.queued_run}").json()["status"] == "cancelled"
    assert client.post(f"/api/runs/{store.queued_run}/cancel").json()["changed"] is False
    finished = client.post(f"/api/runs/{store.speak_run}/cancel").json()
    assert (finished["status"], finished["changed"]) == ("succeeded", False)


def test_cancel_and_rerun_of_an_unknown_run_are_404(make_client: Callable[..., Any]) -> None:
    client, _ = make_client()
    for action in ("cancel", "rerun"):
        answer = client.post(f"/api/runs/00000000-0000-0000-0000-000000000000/{action}")
        assert answer.status_code == 404
        assert "sparkjobs runs" in answer.json()["error"]
