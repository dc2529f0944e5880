"""The artifact server's edges: the token, traversal, ranges, uploads, pre-staging."""

from __future__ import annotations

import hashlib
import http.client
import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from sparkjobs.artifacts.client import push, put_file
from sparkjobs.artifacts.ensure import get_artifact
from sparkjobs.artifacts.locate import endpoint, find
from sparkjobs.artifacts.register import node_root
from sparkjobs.errors import ConfigError, DiskFull
from sparkjobs.store.artifacts import PARTIAL, artifact_path
from tests.integration.artifacts.conftest import TOKEN, Nodes

MiB = 1 << 20


def request(
    nodes: Nodes, path: str, headers: dict[str, str] | None = None, method: str = "GET"
) -> tuple[int, bytes]:
    server = endpoint(nodes.config, "spark1")
    connection = http.client.HTTPConnection(server.host, server.port, timeout=10)
    try:
        connection.request(method, path, headers=headers or {})
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def authed(**extra: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKEN}", **extra}


@pytest.fixture
def blob(nodes: Nodes, payload: Callable[[int], bytes]) -> tuple[str, bytes]:
    content = payload(100_000)
    return nodes.register("spark1", content).sha256, content


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({}, 401),
        ({"Authorization": "Bearer wrong"}, 403),
        ({"Authorization": f"Bearer {TOKEN}x"}, 403),
        ({"Authorization": f"Basic {TOKEN}"}, 403),
        ({"Authorization": f"Bearer {TOKEN[:-1]}"}, 403),
    ],
)
def test_every_route_wants_the_token(
    nodes: Nodes, blob: tuple[str, bytes], headers: dict[str, str], status: int
) -> None:
    sha256, content = blob
    for path in ("/v1/health", f"/v1/blobs/{sha256}", f"/v1/manifests/{sha256}", "/nothing"):
        code, body = request(nodes, path, headers)
        assert code == status, path
        assert content[:64] not in body


def test_the_right_token_gets_the_blob_and_a_range(nodes: Nodes, blob: tuple[str, bytes]) -> None:
    sha256, content = blob
    assert request(nodes, f"/v1/blobs/{sha256}", authed()) == (200, content)
    assert request(nodes, f"/v1/blobs/{sha256}", authed(Range="bytes=10-19")) == (
        206,
        content[10:20],
    )


@pytest.mark.parametrize(
    "path",
    [
        "/v1/blobs/../../../../etc/passwd",
        "/v1/blobs/..%2F..%2F..%2Fetc%2Fpasswd",
        "/v1/blobs/%2e%2e/%2e%2e/etc/passwd",
        "/v1/blobs/%2Fetc%2Fpasswd",
        "/v1/blobs/{sha}%00",
        "/v1/blobs/{SHA}",
        "/v1/blobs/{sha}/../{sha}",
        "/v1/blobs/.partial",
        "/v1/manifests/../sparkjobs.db",
        "//etc/passwd",
    ],
)
def test_nothing_outside_the_store_is_served_whatever_the_path(
    nodes: Nodes, blob: tuple[str, bytes], path: str
) -> None:
    sha256, _ = blob
    status, body = request(nodes, path.format(sha=sha256, SHA=sha256.upper()), authed())
    assert 400 <= status < 500
    assert b"root:" not in body


def test_a_symlink_in_the_store_is_not_followed(nodes: Nodes, tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("not for the network")
    sha256 = hashlib.sha256(b"x").hexdigest()
    link = artifact_path(node_root(nodes.config, "spark1"), sha256)
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(secret)

    status, body = request(nodes, f"/v1/blobs/{sha256}", authed())

    assert status == 404
    assert b"not for the network" not in body


@pytest.mark.parametrize(
    "value",
    ["bytes=abc", "bytes=20-10", "bytes=0-1,5-6", "items=0-5", "bytes=", "bytes=99999999-"],
)
def test_malformed_or_unsatisfiable_ranges_get_a_4xx_and_no_bytes(
    nodes: Nodes, blob: tuple[str, bytes], value: str
) -> None:
    sha256, content = blob
    status, body = request(nodes, f"/v1/blobs/{sha256}", authed(Range=value))
    assert 400 <= status < 500, value
    assert content[:32] not in body


def test_put_uploads_a_file_that_any_node_can_then_fetch(
    nodes: Nodes, payload: Callable[[int], bytes], tmp_path: Path
) -> None:
    voice = tmp_path / "me.wav"
    voice.write_bytes(payload(3 * MiB + 1))
    sha256 = hashlib.sha256(voice.read_bytes()).hexdigest()

    answer = put_file(nodes.config, voice, "spark2")

    assert answer["sha256"] == sha256
    info = find(nodes.sessions, sha256)
    assert info.nodes == ("spark2",)
    assert info.media_type == "audio/x-wav"
    assert info.manifest_sha256 == answer["manifest_sha256"]
    get_artifact(nodes.config, sha256, tmp_path / "back.wav", sessions=nodes.sessions)
    assert (tmp_path / "back.wav").read_bytes() == voice.read_bytes()
    assert not list((node_root(nodes.config, "spark2") / PARTIAL).glob("*.upload"))


def test_an_upload_that_does_not_match_its_claimed_sha256_is_not_stored(nodes: Nodes) -> None:
    wrong = "0" * 64
    status, _ = request(nodes, "/v1/blobs", authed(**{"X-Sparkjobs-Sha256": wrong}), method="PUT")
    assert status == 422
    assert not artifact_path(node_root(nodes.config, "spark1"), wrong).exists()


def test_put_with_a_wrong_token_is_a_config_error(nodes: Nodes, tmp_path: Path) -> None:
    other = nodes.config.model_copy(
        update={"artifacts": nodes.config.artifacts.model_copy(update={"token": None})}
    )
    (tmp_path / "f").write_bytes(b"abc")
    with pytest.raises(ConfigError, match="token"):
        put_file(other, tmp_path / "f", "spark1")


def test_push_makes_the_target_node_pull_and_hold_the_artifact(
    nodes: Nodes, payload: Callable[[int], bytes]
) -> None:
    sha256 = nodes.register("spark1", payload(2 * MiB)).sha256

    answer = push(nodes.config, sha256, "spark3")

    assert answer["node"] == "spark3"
    assert set(find(nodes.sessions, sha256).nodes) == {"spark1", "spark3"}
    assert artifact_path(node_root(nodes.config, "spark3"), sha256).is_file()


@pytest.fixture
def small_tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A 4 MiB tmpfs (needs root to mount; skipped elsewhere)."""
    mount = tmp_path / "small"
    mount.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)],
        capture_output=True, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=True)


def test_a_full_disk_is_a_clear_error_and_leaves_no_partial_file(
    nodes: Nodes, payload: Callable[[int], bytes], small_tmpfs: Path
) -> None:
    sha256 = nodes.register("spark1", payload(6 * MiB)).sha256
    out = small_tmpfs / "big.bin"

    with pytest.raises(DiskFull, match="no space") as caught:
        get_artifact(nodes.config, sha256, out, sessions=nodes.sessions)

    assert str(small_tmpfs) in str(caught.value)
    assert list(small_tmpfs.iterdir()) == []
