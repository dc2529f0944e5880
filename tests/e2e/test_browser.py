"""The run page and Flower in a real browser: Debian's chromium, headless, via Playwright
pointed at that binary (no browser is ever downloaded). Screenshots go to test-artifacts/.

Chromium missing: the test fails under CI=true (`.ci/run` installs it) and skips elsewhere.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.web.conftest import cluster_sims, serving, wait_for_http, workers
from tests.support.cluster import Cluster, start_workers, wait_for_workers
from tests.support.mute import MuteOrpheus, serve_orpheus_from

__all__ = ["cluster_sims", "serving", "workers"]

pytestmark = [pytest.mark.e2e, pytest.mark.redis]

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
HANG_GUARD_MS = 120_000
PHONE = {"width": 390, "height": 844}


def chromium_binary() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        reason = "chromium is not installed (`.ci/run` installs Debian's package)"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    return found


@pytest.fixture
def browser() -> Iterator[Any]:
    executable = chromium_binary()
    from playwright.sync_api import sync_playwright

    args = ["--autoplay-policy=no-user-gesture-required"]
    if os.geteuid() == 0:
        args.append("--no-sandbox")  # chromium refuses to run as root with its sandbox
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=executable, headless=True, args=args)
        yield launched
        launched.close()


def shot(page: Any, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def test_a_person_runs_a_job_reads_its_text_plays_its_audio_and_finds_it_in_flower(
    serving: Cluster, browser: Any
) -> None:
    config = serving.config
    base = f"http://127.0.0.1:{config.web.port}"
    page = browser.new_page(viewport=PHONE, device_scale_factor=2)
    page.set_default_timeout(HANG_GUARD_MS)

    page.goto(f"{base}/jobs")
    card = page.locator('[data-job="morning-briefing"]')
    assert "cron 0 7 * * *" in card.inner_text()
    shot(page, "jobs-phone")
    card.get_by_role("button", name="Run now").click()

    page.wait_for_url(f"{base}/runs/**")
    run_id = page.url.split("/runs/")[1].split("?")[0]
    page.wait_for_function(
        "document.querySelector('#run-status')?.textContent === 'succeeded'",
        polling=500,
    )
    assert page.locator("#run-text").inner_text().strip()
    audio = page.locator("audio").first
    audio.wait_for()
    # Playable: the browser fetched the WAV's header through the page (with Range) and
    # knows its length; then it plays and seeks.
    duration = page.evaluate(
        """async () => {
            const a = document.querySelector('audio');
            if (a.readyState < 1) await new Promise(r => a.addEventListener('loadedmetadata', r));
            await a.play();
            a.currentTime = a.duration / 2;
            await new Promise(r => a.addEventListener('seeked', r, {once: true}));
            return a.duration;
        }"""
    )
    assert duration > 0
    shot(page, "run-phone")

    page.goto(f"{base}/")
    assert page.locator(f'[data-run="{run_id}"]').is_visible()
    shot(page, "runs-phone")
    wide = browser.new_page(viewport={"width": 1280, "height": 900})
    wide.goto(f"{base}/runs/{run_id}")
    shot(wide, "run-desktop")
    wide.goto(f"{base}/health")
    shot(wide, "health-desktop")

    flower = f"http://127.0.0.1:{config.flower.port}"
    wide.goto(f"{flower}/tasks")
    try:
        wide.wait_for_function(
            "document.body.innerText.includes('sparkjobs.step')", polling=500,
            timeout=HANG_GUARD_MS,
        )  # fmt: skip
    finally:
        shot(wide, "flower-tasks")
    # The run page links each attempt to its task in Flower, which names the job there.
    wide.goto(f"{base}/runs/{run_id}")
    link = wide.locator("a", has_text="Flower ↗").nth(1)  # the first attempt's task
    href = link.get_attribute("href")
    assert href is not None
    assert href.startswith(f"{flower}/task/")
    wide.goto(href)
    try:
        wide.wait_for_function(
            "document.body.innerText.includes('morning-briefing')", polling=500,
            timeout=HANG_GUARD_MS,
        )  # fmt: skip
    finally:
        shot(wide, "flower-task")
    text = wide.inner_text("body")
    assert "sparkjobs.step" in text
    assert "morning-briefing · step 1/2 chat on gemma@spark1" in text


@pytest.fixture
def saturated(cluster: Cluster, tmp_path: Path) -> Iterator[Cluster]:
    """spark2's worker and the run page, while Orpheus (serial) is held by a long call:
    its lease is taken and its front-end keeps every probe waiting, as it does while it
    synthesizes."""
    from sparkjobs.broker.app import create_app
    from sparkjobs.broker.client import key
    from sparkjobs.dispatch.leases import Leases

    orpheus = MuteOrpheus()
    serve_orpheus_from(cluster.path, orpheus)
    config = cluster.config
    leases = Leases(create_app(config).redis, functools.partial(key, config), ttl_s=600.0)
    lease, _ = leases.try_acquire("orpheus", 1)
    assert lease is not None
    cluster.start("worker", "--node", "spark2")
    cluster.start("web", log=tmp_path / "web.log")
    wait_for_workers(cluster, ["spark2"])
    wait_for_http(f"http://127.0.0.1:{config.web.port}/healthz", cluster)
    try:
        yield cluster
    finally:
        cluster.stop_all()
        orpheus.close()


def test_the_health_page_during_saturation_shows_busy_and_the_line_as_doctor_does(
    saturated: Cluster, browser: Any
) -> None:
    from sparkjobs.jobs.define import job, speak
    from sparkjobs.runs.submit import submit_job

    config = saturated.config
    base = f"http://127.0.0.1:{config.web.port}"
    speech = job("speech", steps=[speak("Good morning.", voice="tara", service="orpheus")])
    runs = [submit_job(config, speech, trigger="submit").run_id for _ in range(2)]

    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.set_default_timeout(HANG_GUARD_MS)
    row = page.locator('tr[data-service="orpheus"]')
    deadline = time.monotonic() + HANG_GUARD_MS / 1000
    while True:  # until spark2's worker has published its first reading of Orpheus
        page.goto(f"{base}/health")
        if row.get_attribute("data-state") != "unknown":
            break
        assert time.monotonic() < deadline, "no reading of orpheus published (hang guard)"
        page.wait_for_timeout(250)
    shot(page, "health-busy")
    assert row.get_attribute("data-state") == "busy"
    assert row.locator(".pill").inner_text() == "busy"
    assert row.locator("td.line").inner_text() == "2"

    doctor = saturated.sparkjobs("doctor", "--json", "--node", "spark2", timeout_s=120)
    findings = {f["name"]: f for f in json.loads(doctor.stdout)["findings"]}
    assert findings["service orpheus"]["status"] == "ok", findings["service orpheus"]
    assert findings["service orpheus"]["detail"].startswith("busy at ")

    page.goto(f"{base}/runs/{runs[1]}")
    assert "2nd in line for orpheus" in page.locator(".waiting").inner_text()
    shot(page, "run-in-line")


@pytest.fixture
def slow_serving(cluster: Cluster, tmp_path: Path) -> Iterator[Cluster]:
    """Workers, the run page and simulators slow enough that a speech takes seconds."""
    from tests.support.sim import simulating

    with simulating(cluster.config, 25.0):
        start_workers(cluster)
        cluster.start("web", log=tmp_path / "web.log")
        wait_for_http(f"http://127.0.0.1:{cluster.config.web.port}/healthz", cluster)
        yield cluster


def test_the_run_page_plays_a_speech_while_it_is_being_made(
    slow_serving: Cluster, browser: Any
) -> None:
    import httpx

    base = f"http://127.0.0.1:{slow_serving.config.web.port}"
    text = " ".join(
        f"The morning opens grey over the river, and tram {n} crosses the bridge."
        for n in range(40)
    )
    queued = httpx.post(f"{base}/api/speak", json={"text": text}, timeout=10)
    assert queued.status_code == 201
    run_id = queued.json()["run_id"]
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.set_default_timeout(HANG_GUARD_MS)
    page.goto(f"{base}/runs/{run_id}")
    page.locator("#live-audio").wait_for()
    # The audio element plays the speech made so far while the run still runs.
    playing = page.evaluate(
        """async () => {
            const a = document.querySelector('#live-audio');
            if (a.paused) await a.play();
            await new Promise(r => a.currentTime > 0
                ? r() : a.addEventListener('timeupdate', r, {once: true}));
            const status = document.querySelector('#run-status').textContent;
            return {time: a.currentTime, status: status};
        }"""
    )
    assert playing["time"] > 0
    assert playing["status"] in ("queued", "running")  # before the run ended
    shot(page, "run-speech-live")
    # Playing goes on at the speed of speech (minutes); the run itself ends well before.
    deadline = time.monotonic() + HANG_GUARD_MS / 1000
    while httpx.get(f"{base}/api/runs/{run_id}", timeout=10).json()["status"] in (
        "queued", "running",
    ):  # fmt: skip
        assert time.monotonic() < deadline, "the run did not end (hang guard)"
        time.sleep(0.5)
    assert httpx.get(f"{base}/api/runs/{run_id}", timeout=10).json()["status"] == "succeeded"
