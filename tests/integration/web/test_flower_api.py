"""Flower's REST API is closed unless the config opens it, and never open to any origin."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.integration.web.conftest import wait_for_http
from tests.support.cluster import Cluster

pytestmark = [pytest.mark.redis, pytest.mark.e2e]


def test_flower_on_loopback_refuses_its_api_to_a_caller_without_auth_and_any_origin(
    cluster: Cluster, tmp_path: Path
) -> None:
    cluster.env["FLOWER_UNAUTHENTICATED_API"] = "true"  # inherited: must not open it
    cluster.start("flower", log=tmp_path / "flower.log")
    flower = f"http://127.0.0.1:{cluster.config.flower.port}"
    wait_for_http(f"{flower}/healthcheck", cluster)

    api = httpx.get(f"{flower}/api/workers", headers={"Origin": "http://evil.test"}, timeout=10)
    assert api.status_code == 401
    assert "access-control-allow-origin" not in api.headers
    page = httpx.get(f"{flower}/tasks", timeout=10)
    assert page.status_code == 200
    assert "access-control-allow-origin" not in page.headers


def test_open_api_opens_it_on_loopback(cluster: Cluster, tmp_path: Path) -> None:
    cluster.env["SPARKJOBS_FLOWER__OPEN_API"] = "true"
    cluster.start("flower", log=tmp_path / "flower.log")
    flower = f"http://127.0.0.1:{cluster.config.flower.port}"
    wait_for_http(f"{flower}/healthcheck", cluster)

    assert httpx.get(f"{flower}/api/workers", timeout=10).status_code == 200
