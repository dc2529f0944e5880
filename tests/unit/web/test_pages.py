"""The run page over rows in SQLite: lists, filters, one run, the jobs, the health."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sparkjobs.store.jobs import job_records


def test_runs_are_listed_newest_first_with_status_and_trigger(
    make_client: Callable[..., Any],
) -> None:
    client, store = make_client()
    page = client.get("/")
    assert page.status_code == 200
    text = page.text
    order = [text.index(str(run)) for run in (store.queued_run, store.failed_run, store.speak_run)]
    assert order == sorted(order)
    assert "step 1 failed: 500" in text
    assert 'name="viewport"' in text  # phone-friendly


def test_the_filters_narrow_by_status_node_and_job_and_name_a_bad_status(
    make_client: Callable[..., Any],
) -> None:
    client, store = make_client()
    failed = client.get("/", params={"status": "failed"}).text
    assert str(store.failed_run) in failed
    assert str(store.speak_run) not in failed
    on_spark1 = client.get("/", params={"node": "spark1"}).text
    assert str(store.queued_run) in on_spark1
    assert str(store.speak_run) in on_spark1
    assert str(store.failed_run) not in on_spark1
    by_job = client.get("/", params={"job": "morning-briefing"}).text
    assert str(store.speak_run) in by_job
    assert str(store.queued_run) not in by_job
    bad = client.get("/", params={"status": "broken"}).text
    assert "unknown status &#39;broken&#39;; known: queued, running" in bad


def test_a_run_shows_its_text_a_player_for_its_audio_and_each_step(
    make_client: Callable[..., Any],
) -> None:
    client, store = make_client()
    page = client.get(f"/runs/{store.speak_run}").text
    assert "Grey skies over the river; markets quiet." in page
    assert f'<audio controls preload="metadata" src="/audio/{store.audio_sha256}"' in page
    assert "on gemma@spark1" in page
    assert "on orpheus@spark2" in page
    assert "1.2 s" in page
    assert "2.4 s" in page


def test_a_queued_step_says_what_it_waits_for(make_client: Callable[..., Any]) -> None:
    client, store = make_client()
    page = client.get(f"/runs/{store.queued_run}").text
    assert "queued for gemma on spark1, at most 8 at once" in page
    assert 'http-equiv="refresh"' in page  # an unfinished run refreshes itself


def test_an_unknown_run_is_a_404_page_that_says_how_to_find_runs(
    make_client: Callable[..., Any],
) -> None:
    client, _ = make_client()
    page = client.get("/runs/not-a-uuid")
    assert page.status_code == 404
    assert "is not a run id" in page.text


def test_jobs_show_schedule_next_fire_and_paused_and_the_buttons_pause_and_resume(
    make_client: Callable[..., Any],
) -> None:
    client, store = make_client()
    page = client.get("/jobs").text
    assert "morning-briefing" in page
    assert "news, read aloud" in page
    assert "cron 0 7 * * *" in page
    assert 'action="/jobs/morning-briefing/run"' in page
    assert 'action="/jobs/evening-digest/resume"' in page  # paused in its file
    done = client.post("/jobs/morning-briefing/pause", follow_redirects=False)
    assert done.status_code == 303
    assert done.headers["location"].startswith("/jobs?message=morning-briefing+paused")
    with store.sessions() as session:
        assert job_records(session)["morning-briefing"].paused
    client.post("/jobs/morning-briefing/resume")
    with store.sessions() as session:
        assert not job_records(session)["morning-briefing"].paused
    unknown = client.post("/jobs/morning-brefing/pause", follow_redirects=False)
    assert "did+you+mean" in unknown.headers["location"]


def test_the_health_page_shows_each_node_and_which_service_is_down(
    make_client: Callable[..., Any],
) -> None:
    client, _ = make_client()
    page = client.get("/health").text
    assert "spark1" in page
    assert "spark2" in page
    assert "connection refused" in page
    assert page.count("pill s-down") == 2  # the clone service, and its node as degraded


def test_the_health_page_says_busy_for_a_busy_serial_server_and_unknown_without_a_worker(
    make_client: Callable[..., Any],
) -> None:
    client, _ = make_client()
    page = client.get("/health").text
    assert '<tr data-service="orpheus" data-state="busy">' in page
    assert '<span class="pill s-busy">busy</span>' in page
    assert '<tr data-service="qwen" data-state="unknown">' in page
    assert "no worker publishes readings for spark1" in page


def test_every_page_links_to_flower(make_client: Callable[..., Any]) -> None:
    client, store = make_client()
    port = store.config.flower.port
    assert f'href="http://127.0.0.1:{port}/tasks"' in client.get("/").text
