"""Audio is streamed from the artifact server of the node that holds it, with Range."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from sparkjobs.artifacts.register import node_root
from sparkjobs.artifacts.server import ServerThread
from sparkjobs.store.artifacts import artifact_path


@pytest.fixture
def served(make_client: Callable[..., Any]) -> Iterator[tuple[Any, Any, bytes]]:
    client, store = make_client('[artifacts]\ntoken = "art-secret-1"\n')
    blob = artifact_path(node_root(store.config, "spark2"), store.audio_sha256).read_bytes()
    server = ServerThread(store.config, "spark2").start()
    try:
        yield client, store, blob
    finally:
        server.stop()


def test_a_range_request_gets_206_and_exactly_those_bytes(served: tuple[Any, Any, bytes]) -> None:
    client, store, blob = served
    part = client.get(f"/audio/{store.audio_sha256}", headers={"Range": "bytes=100-1099"})
    assert part.status_code == 206
    assert part.headers["content-range"] == f"bytes 100-1099/{len(blob)}"
    assert part.headers["accept-ranges"] == "bytes"
    assert part.headers["content-type"] == "audio/wav"
    assert part.content == blob[100:1100]
    tail = client.get(f"/audio/{store.audio_sha256}", headers={"Range": "bytes=-44"})
    assert tail.content == blob[-44:]


def test_without_range_the_whole_file_comes_and_ranges_are_advertised(
    served: tuple[Any, Any, bytes],
) -> None:
    client, store, blob = served
    whole = client.get(f"/audio/{store.audio_sha256}")
    assert whole.status_code == 200
    assert whole.content == blob
    assert whole.headers["accept-ranges"] == "bytes"
    assert "art-secret-1" not in str(whole.headers)


def test_an_unknown_artifact_is_404_and_an_unreachable_node_502(
    make_client: Callable[..., Any],
) -> None:
    client, store = make_client()
    assert client.get("/audio/" + "0" * 64).status_code == 404
    down = client.get(f"/audio/{store.audio_sha256}")  # no artifact server runs
    assert down.status_code == 502
    assert "held by spark2" in down.text
