"""Auth of the run page and API: loopback is open, anything else needs the token or
basic auth; cross-site posts are refused; no secret is ever rendered."""

from __future__ import annotations

import base64
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from sparkjobs.config import load_config
from sparkjobs.errors import ConfigError
from tests.unit.web.conftest import write_config

TOKEN = "tok-3f9a1c77e2b64d0c9e"
SECRETS = (TOKEN, "pw-0b7e2d9f5a", "art-6c1d8e3b2a", "hook-9f2e7c1d4b")
LAN = f"""
[web]
address = "0.0.0.0"
token = "{TOKEN}"
basic_auth = ["ops:{SECRETS[1]}"]

[artifacts]
token = "{SECRETS[2]}"

[alerts]
webhook_url = "http://127.0.0.1:9/alerts?auth={SECRETS[3]}"
"""


def basic(user: str, password: str) -> dict[str, str]:
    pair = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {pair}"}


def test_off_loopback_without_a_token_or_basic_auth_the_config_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"web.address.*without authentication"):
        load_config(write_config(tmp_path, '[web]\naddress = "0.0.0.0"\n'))


def test_off_loopback_every_page_and_api_route_needs_credentials(
    make_client: Callable[..., Any],
) -> None:
    client, store = make_client(LAN)
    for path in (
        "/",
        f"/runs/{store.speak_run}",
        "/jobs",
        "/health",
        f"/audio/{store.audio_sha256}",
    ):
        refused = client.get(path)
        assert refused.status_code == 401, path
        assert refused.headers["www-authenticate"].startswith("Basic")
    api = client.get("/api/runs")
    assert api.status_code == 401
    assert api.json() == {"error": "authentication required"}
    assert client.get("/healthz").status_code == 200


def test_the_token_works_as_bearer_and_as_the_password_of_basic_auth(
    make_client: Callable[..., Any],
) -> None:
    client, _ = make_client(LAN)
    assert client.get("/api/runs", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
    assert client.get("/", headers=basic("phone", TOKEN)).status_code == 200
    assert client.get("/", headers=basic("ops", SECRETS[1])).status_code == 200
    for wrong in (basic("ops", "nope"), basic("other", SECRETS[1]), {"Authorization": "Bearer x"},
                  {"Authorization": "Basic !!!"}):  # fmt: skip
        assert client.get("/", headers=wrong).status_code == 401


def test_a_configured_token_is_required_on_loopback_too(make_client: Callable[..., Any]) -> None:
    client, _ = make_client(f'[web]\ntoken = "{TOKEN}"\n')
    assert client.get("/api/runs").status_code == 401
    assert client.get("/api/runs", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200


def test_on_loopback_without_secrets_the_page_is_open(make_client: Callable[..., Any]) -> None:
    client, _ = make_client()
    assert client.get("/").status_code == 200
    assert client.get("/api/runs").status_code == 200


def test_a_cross_site_post_is_refused_and_a_same_site_one_accepted(
    make_client: Callable[..., Any],
) -> None:
    client, _ = make_client()
    evil = client.post("/jobs/morning-briefing/pause", headers={"Origin": "http://evil.example"})
    assert evil.status_code == 403
    fetch = client.post("/jobs/morning-briefing/pause", headers={"Sec-Fetch-Site": "cross-site"})
    assert fetch.status_code == 403
    own = client.post(
        "/jobs/morning-briefing/pause", headers={"Origin": "http://testserver"},
        follow_redirects=False,
    )  # fmt: skip
    assert own.status_code == 303


def test_no_secret_is_ever_rendered(make_client: Callable[..., Any]) -> None:
    client, store = make_client(LAN)
    auth = {"Authorization": f"Bearer {TOKEN}"}
    paths = ("/", f"/runs/{store.speak_run}", f"/runs/{store.failed_run}", "/jobs", "/health",
             "/api/runs", f"/api/runs/{store.speak_run}", "/api/jobs", "/api/health")  # fmt: skip
    for path in paths:
        page = client.get(path, headers=auth)
        assert page.status_code == 200, path
        for secret in SECRETS:
            assert secret not in page.text, (path, secret)
