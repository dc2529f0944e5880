"""The JSON API never crashes on what a client sends: any body, any path parameter,
any query gets a JSON answer with a 4xx that says what is wrong (or 503: the test's
broker does not exist), never a 500 or a traceback."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import assume, event, given
from hypothesis import strategies as st
from starlette.testclient import TestClient

from sparkjobs.config import load_config
from sparkjobs.web.app import create_app
from tests.unit.fuzz.support import FUZZ
from tests.unit.web.conftest import Store, fake_readings, fill, write_config

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=10), inner, max_size=3)
    ),
    max_leaves=10,
)
FIELDS = [
    "text",
    "voice",
    "service",
    "ref_audio",
    "ref_text",
    "prompt",
    "model",
    "system",
    "max_tokens",
    "temperature",
    "params",
    "extra",
]
# Bodies: objects with the fields the routes know (values of any type), any JSON, any bytes.
BODIES = st.one_of(
    st.dictionaries(st.sampled_from(FIELDS), JSON, max_size=4).map(
        lambda d: json.dumps(d).encode()
    ),
    JSON.map(lambda value: json.dumps(value).encode()),
    st.binary(max_size=40),
    st.sampled_from(
        [
            b"",
            b"{",
            b'{"text": "a"',
            b"[]" * 200,
            b"[" * 5000,
            b'{"text": NaN}',
            b'{"params": {"city": Infinity}}',
            b"\xff\xfe",
            b'{"text": "\\ud800"}',
        ]
    ),
)
IDS = st.sampled_from(
    [
        "morning-briefing",
        "nope",
        "00000000-0000-0000-0000-000000000000",
        "not-a-uuid",
        "%00",
        "..",
        "%2e%2e",
        "a" * 300,
    ]
) | st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="/?#"), max_size=15
)
ROUTES = [
    "/api/speak",
    "/api/clone",
    "/api/chat",
    "/api/jobs/{id}/runs",
    "/api/jobs/{id}/pause",
    "/api/jobs/{id}/{id}",
    "/api/runs/{id}/cancel",
    "/api/runs/{id}/rerun",
]
QUERIES = st.dictionaries(
    st.sampled_from(["job", "status", "node", "limit", "x"]),
    st.text(max_size=10) | st.sampled_from(["-1", "0", "99999999999999999999", "failed", "1e3"]),
    max_size=3,
)


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, Store]]:
    tmp_path: Path = tmp_path_factory.mktemp("api")
    config = load_config(write_config(tmp_path))
    store = fill(config)
    with TestClient(create_app(config, readings=fake_readings), raise_server_exceptions=False) as c:
        yield c, store


def answered(response: Any) -> dict[str, Any] | list[Any]:
    """The JSON of an answer that is not a server error."""
    event(f"HTTP {response.status_code}")
    assert response.status_code < 500 or response.status_code == 503, response.text
    assert "Traceback" not in response.text
    data: Any = response.json()
    if response.status_code >= 400:
        assert isinstance(data, dict), data
        assert data["error"], data
    return data  # type: ignore[no-any-return]


@FUZZ
@given(route=st.sampled_from(ROUTES), name=IDS, body=BODIES)
def test_any_post_is_answered_with_json_and_never_a_500(
    client: tuple[TestClient, Store], route: str, name: str, body: bytes
) -> None:
    test_client, _ = client
    response = test_client.post(
        route.replace("{id}", quote(name, safe="%")),
        content=body,
        headers={"Content-Type": "application/json"},
    )
    if not response.headers.get("content-type", "").startswith("application/json"):
        # No route matched ('..' resolves to another path): Starlette's plain answer.
        assert response.status_code in (404, 405), response.text
        return
    answered(response)


@FUZZ
@given(run_id=IDS, query=QUERIES)
def test_any_run_lookup_or_listing_is_answered_with_json(
    client: tuple[TestClient, Store], run_id: str, query: dict[str, str]
) -> None:
    test_client, _ = client
    listing = answered(test_client.get("/api/runs", params=query))
    assert isinstance(listing, list | dict)
    one = test_client.get(f"/api/runs/{quote(run_id, safe='%')}")
    if one.headers.get("content-type", "").startswith("application/json"):
        answered(one)
    else:
        assert one.status_code == 404


@FUZZ
@given(
    sha256=IDS | st.text(alphabet="0123456789abcdef", min_size=64, max_size=64),
    ranges=st.none()
    | st.text(max_size=20)
    | st.sampled_from(["bytes=0-1", "bytes=5-", "bytes=-9"]),
)
def test_any_audio_request_is_a_4xx_or_502_never_a_500(
    client: tuple[TestClient, Store], sha256: str, ranges: str | None
) -> None:
    test_client, _ = client
    assume(sha256 not in (".", ".."))  # the client resolves those to another page
    headers = (
        {"Range": ranges}
        if ranges is not None and ranges.isascii() and ranges.isprintable()
        else {}
    )
    response = test_client.get(f"/audio/{quote(sha256, safe='%')}", headers=headers)
    event(f"HTTP {response.status_code}")
    assert response.status_code in (404, 502), response.text


def test_numbers_json_does_not_have_are_refused_with_422(client: tuple[TestClient, Store]) -> None:
    test_client, _ = client
    for route, body in (
        ("/api/jobs/morning-briefing/runs", b'{"params": {"city": NaN}}'),
        ("/api/jobs/morning-briefing/runs", b'{"params": {"city": [1, -Infinity]}}'),
        ("/api/chat", b'{"prompt": "Hi", "temperature": Infinity}'),
    ):
        response = test_client.post(route, content=body)
        assert response.status_code == 422, (body, response.text)
        assert "invalid request" in response.json()["error"]


def test_an_oversized_body_is_refused_unread_with_413(client: tuple[TestClient, Store]) -> None:
    from sparkjobs.web.api import MAX_BODY_BYTES

    test_client, _ = client
    text = "a" * (MAX_BODY_BYTES + 1)
    response = test_client.post("/api/speak", content=json.dumps({"text": text}).encode())
    assert response.status_code == 413
    assert "larger than 2 MiB" in response.json()["error"]
