"""A worker's one client per service: reused by every step, replaced when unusable."""

from __future__ import annotations

import sys
from collections.abc import Iterator

import pytest

from sparkjobs.backends.shared import close_shared, shared_client
from tests.support.sim import sim_config


@pytest.fixture(autouse=True)
def _fresh() -> Iterator[None]:
    close_shared()
    yield
    close_shared()


def test_steps_of_one_service_share_one_client() -> None:
    config = sim_config()
    first = shared_client(config.services["orpheus"], name="orpheus")
    assert shared_client(config.services["orpheus"], name="orpheus") is first
    assert shared_client(config.services["gemma"], name="gemma") is not first


def test_a_client_a_custom_step_closed_is_replaced() -> None:
    service = sim_config().services["gemma"]
    first = shared_client(service, name="gemma")
    first.close()
    second = shared_client(service, name="gemma")
    assert second is not first
    assert not second.closed


def test_another_config_under_the_same_name_gets_its_own_client() -> None:
    first = shared_client(sim_config().services["gemma"], name="gemma")
    moved = sim_config(gemma={"url": "http://127.0.0.1:9"}).services["gemma"]
    second = shared_client(moved, name="gemma")
    assert second is not first
    assert second.base_url == "http://127.0.0.1:9"


def test_closing_the_shared_clients_closes_each_one() -> None:
    config = sim_config()
    clients = [shared_client(config.services[name], name=name) for name in ("gemma", "qwen")]
    close_shared()
    assert all(client.closed for client in clients)


def test_the_pool_keeps_as_many_connections_as_the_server_may_serve() -> None:
    service = sim_config(gemma={"max_in_flight": 64}).services["gemma"]
    client = shared_client(service, name="gemma")
    pool = client._http._transport._pool  # httpx's connection pool
    assert pool._max_connections == sys.maxsize  # unbounded: the in-flight lease bounds them
    assert pool._max_keepalive_connections == 64
