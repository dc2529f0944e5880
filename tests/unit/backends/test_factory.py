"""client_for picks the client of each service kind."""

from __future__ import annotations

import pytest

from sparkjobs.backends import (
    OllamaClient,
    OpenAIClient,
    OrpheusClient,
    QwenCloneClient,
    client_for,
)
from sparkjobs.errors import BadInput
from tests.support.sim import sim_config


@pytest.mark.parametrize(
    ("name", "kind"),
    [("gemma", OpenAIClient), ("qwen", OllamaClient), ("orpheus", OrpheusClient),
     ("clone", QwenCloneClient)],
)  # fmt: skip
def test_client_for_picks_the_client_of_each_kind(name: str, kind: type) -> None:
    with client_for(sim_config().services[name], name=name) as client:
        assert type(client) is kind
        assert client.name == name


def test_timeouts_come_from_the_config() -> None:
    config = sim_config(gemma={"timeouts": {"connect_s": 1.5, "first_byte_s": 7, "total_s": 9}})
    with client_for(config.services["gemma"]) as client:
        timeout = client._http.timeout
        assert (timeout.connect, timeout.read) == (1.5, 7)


def test_a_call_without_a_model_and_none_configured_is_bad_input() -> None:
    service = sim_config(gemma={"models": []}).services["gemma"]
    with OpenAIClient(service, name="gemma") as client, pytest.raises(BadInput, match="models"):
        client.chat([{"role": "user", "content": "hi"}])
