"""A server's model list, read from every shape it comes in, against the configured models."""

from __future__ import annotations

import json

import pytest

from sparkjobs.backends.served import check_served, read_model_list, serves
from sparkjobs.config.sections import ServiceConfig

URL = "http://127.0.0.1:8002"


def gemma(*models: str, kind: str = "openai") -> ServiceConfig:
    return ServiceConfig(node="spark1", kind=kind, url=URL, models=models)  # type: ignore[arg-type]


def openai_list(*ids: str) -> bytes:
    return json.dumps(
        {"object": "list", "data": [{"id": i, "object": "model"} for i in ids]}
    ).encode()


def test_an_openai_list_gives_its_ids_and_says_what_was_seen() -> None:
    listed = read_model_list("openai", 200, openai_list("gemma-3-270m"))
    assert listed.models == ("gemma-3-270m",)
    assert listed.said == "GET /v1/models answers 200 with gemma-3-270m"


def test_an_ollama_list_gives_its_names() -> None:
    body = json.dumps({"models": [{"name": "qwen2.5:32b", "model": "qwen2.5:32b"}]}).encode()
    listed = read_model_list("ollama", 200, body)
    assert listed.models == ("qwen2.5:32b",)
    assert listed.route == "/api/tags"


def test_a_long_list_is_said_in_part() -> None:
    listed = read_model_list("openai", 200, openai_list(*(f"m{n}" for n in range(8))))
    assert listed.names == "m0, m1, m2, m3, m4 and 3 more"


@pytest.mark.parametrize(
    ("status", "body", "said"),
    [
        (200, openai_list(), "GET /v1/models answers 200 with no model listed"),
        (404, b'{"detail":"Not Found"}', "GET /v1/models answers 404: Not Found"),
        (200, b"<html><head><title>Welcome to nginx!</title></head></html>",
         'GET /v1/models answers 200 with an HTML page ("Welcome to nginx!"), not JSON'),
        (200, b"ok", "GET /v1/models answers 200 with a body that is not JSON: b'ok'"),
        (200, b'{"models": []}', "GET /v1/models answers 200 with JSON that holds no model list"),
    ],
)  # fmt: skip
def test_what_is_no_model_list_says_what_came_instead(status: int, body: bytes, said: str) -> None:
    listed = read_model_list("openai", status, body)
    assert listed.said == said
    assert listed.models == (() if "no model listed" in said else None)


def test_a_server_serving_another_model_is_a_mismatch_worded_with_its_fix() -> None:
    listed = read_model_list("openai", 200, openai_list("gemma-3-270m"))
    mismatch = check_served("gemma", gemma("gemma-4-26b-a4b"), listed)
    assert mismatch is not None
    assert mismatch.detail == (
        f"services.gemma.models lists gemma-4-26b-a4b; the server at {URL} serves gemma-3-270m"
    )
    assert mismatch.fix.startswith(
        'set models = ["gemma-3-270m"] or start the server with --served-model-name gemma-4-26b-a4b'
    )


def test_the_configured_models_served_are_no_mismatch_and_nothing_configured_takes_any() -> None:
    listed = read_model_list("openai", 200, openai_list("a", "b"))
    assert check_served("gemma", gemma("b"), listed) is None
    assert check_served("gemma", gemma(), listed) is None


def test_a_name_without_a_tag_is_its_latest_as_ollama_names_models() -> None:
    assert serves(["llama3:latest"], "llama3")
    assert serves(["llama3"], "llama3:latest")
    assert not serves(["llama3:8b"], "llama3")
    body = json.dumps({"models": [{"name": "qwen2.5:32b"}]}).encode()
    mismatch = check_served(
        "qwen", gemma("llama3", kind="ollama"), read_model_list("ollama", 200, body)
    )
    assert mismatch is not None
    assert "ollama pull llama3" in mismatch.fix


def test_an_empty_list_or_no_list_is_a_mismatch_that_says_what_was_seen() -> None:
    empty = check_served("gemma", gemma("g"), read_model_list("openai", 200, openai_list()))
    assert empty is not None
    assert "answers 200 with no model listed" in empty.detail
    assert "serves no model" in empty.detail
    page = read_model_list("openai", 200, b"<!DOCTYPE html><title>Router</title>")
    wrong = check_served("gemma", gemma("g"), page)
    assert wrong is not None
    assert f"no OpenAI-compatible server answers at {URL}" in wrong.detail
    assert "point services.gemma.url at the OpenAI-compatible server's root" in wrong.fix
    locked = check_served("gemma", gemma("g"), read_model_list("openai", 401, b""))
    assert locked is not None
    assert "API key" in locked.fix
