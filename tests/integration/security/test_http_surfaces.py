"""The run page, the API and the artifact server, as real processes, refuse requests
without the right token (401/403) and answer oversized, malformed or escaping requests
with a 4xx that serves nothing, storing nothing."""

from __future__ import annotations

import hashlib
import http.client
import json
import re
import socket
import tomllib
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import tomli_w

from sparkjobs.artifacts.register import node_root, register_file
from sparkjobs.store.artifacts import PARTIAL, artifact_path
from sparkjobs.store.engine import make_engine, session_factory
from sparkjobs.web.api import MAX_BODY_BYTES
from tests.integration.security.conftest import ARTIFACT_TOKEN, WEB_TOKEN, wait_for
from tests.support.cluster import Cluster
from tests.support.tables import merge

pytestmark = pytest.mark.redis

SECRET_FILE_TEXT = "not for the network"


@dataclass
class Surfaces:
    """The cluster with tokens set and one blob stored on spark1; nothing started yet."""

    cluster: Cluster
    tmp_path: Path
    blob: str
    content: bytes
    root: Path

    @property
    def web(self) -> str:
        return f"http://127.0.0.1:{self.cluster.config.web.port}"

    @property
    def web_port(self) -> int:
        return int(self.cluster.config.web.port)

    @property
    def artifacts_port(self) -> int:
        return self.cluster.config.artifacts_port("spark1")

    def start_web(self) -> None:
        self.cluster.start("web", log=self.tmp_path / "web.log")
        wait_for(
            "the run page",
            lambda: httpx.get(f"{self.web}/healthz").status_code == 200,
            self.cluster,
        )

    def start_artifacts(self) -> None:
        self.cluster.start(
            "artifacts", "serve", "--node", "spark1", log=self.tmp_path / "artifacts.log"
        )
        hello = b"GET /v1/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        wait_for("the artifact server", lambda: raw(self.artifacts_port, hello), self.cluster)


@pytest.fixture
def surfaces(cluster: Cluster, tmp_path: Path) -> Surfaces:
    document = merge(
        tomllib.loads(cluster.path.read_text()),
        {"web": {"token": WEB_TOKEN}, "artifacts": {"token": ARTIFACT_TOKEN}},
    )
    cluster.path.write_text(tomli_w.dumps(document))
    config = cluster.config
    content = bytes(range(256)) * 400
    root = node_root(config, "spark1")
    engine = make_engine(config.database)
    try:
        blob = register_file(session_factory(engine), root, "spark1", content).sha256
    finally:
        engine.dispose()
    (tmp_path / "secret.txt").write_text(SECRET_FILE_TEXT)
    return Surfaces(cluster, tmp_path, blob, content, root)


def raw(port: int, request: bytes, *, half_close: bool = False) -> bytes:
    """Send bytes as they are; read the answer until its end, or until the server closes.

    With `half_close` the request ends with a half-close: a body cut short.
    """
    with socket.create_connection(("127.0.0.1", port), 10) as conn:
        conn.sendall(request)
        if half_close:
            conn.shutdown(socket.SHUT_WR)
        answer = b""
        while chunk := conn.recv(65536):
            answer += chunk
            head, sep, body = answer.partition(b"\r\n\r\n")
            length = re.search(rb"(?im)^content-length: *(\d+)", head)
            if sep and length and len(body) >= int(length.group(1)):
                break
    return answer


def status_of(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1])


def stored(surfaces: Surfaces) -> tuple[set[Path], list[Path]]:
    blobs = {p for p in surfaces.root.rglob("*") if p.is_file() and PARTIAL not in p.parts}
    return blobs, list((surfaces.root / PARTIAL).glob("*"))


BEARER = {"Authorization": f"Bearer {WEB_TOKEN}"}


def test_the_run_page_and_api_refuse_missing_or_wrong_credentials(surfaces: Surfaces) -> None:
    surfaces.start_web()
    surfaces.start_artifacts()
    for headers in (
        {},
        {"Authorization": "Bearer wrong"},
        {"Authorization": f"Bearer {WEB_TOKEN}x"},
        {"Authorization": f"Basic {WEB_TOKEN}"},
        {"Authorization": WEB_TOKEN},
    ):
        for path in ("/", "/jobs", "/health", "/api/runs", "/api/jobs", f"/audio/{surfaces.blob}"):
            answer = httpx.get(surfaces.web + path, headers=headers, timeout=10)
            assert answer.status_code == 401, (path, headers)
            assert surfaces.content[:64] not in answer.content
        posted = httpx.post(f"{surfaces.web}/api/speak", headers=headers, json={"text": "Hi"})
        assert posted.status_code == 401
    assert httpx.get(f"{surfaces.web}/api/runs", headers=BEARER).status_code == 200
    # The audio comes through the page with the artifact token, which the browser never sees.
    audio = httpx.get(f"{surfaces.web}/audio/{surfaces.blob}", headers=BEARER, timeout=10)
    assert audio.content == surfaces.content
    assert ARTIFACT_TOKEN not in str(audio.headers)


def test_the_run_page_refuses_oversized_malformed_and_escaping_requests(
    surfaces: Surfaces,
) -> None:
    surfaces.start_web()
    url = f"{surfaces.web}/api/speak"
    big = httpx.post(url, headers=BEARER, content=b'{"text": "' + b"a" * MAX_BODY_BYTES + b'"}')
    assert big.status_code == 413
    assert "MiB" in big.json()["error"]
    # A declared length past the limit is refused before a byte of the body is read.
    answer = raw(
        surfaces.web_port,
        b"POST /api/speak HTTP/1.1\r\nHost: x\r\nAuthorization: "
        b"Bearer " + WEB_TOKEN.encode() + b"\r\nContent-Length: 99999999999\r\n\r\n{",
    )
    assert status_of(answer) == 413
    for body in (
        b"{",
        b"[1, 2]",
        b'"text"',
        b"\xff\xfe",
        b'{"text": 5}',
        b'{"txt": "Hi"}',
        b"[" * 100_000,
        b'{"text": "Hi", "text": {"a": 1}}',
    ):
        refused = httpx.post(url, headers=BEARER, content=body, timeout=10)
        assert refused.status_code == 422, (body[:20], refused.text)
        assert refused.json()["error"].startswith("invalid request")
    huge_header = httpx.get(f"{surfaces.web}/api/runs", headers={**BEARER, "X-Big": "b" * 100_000})
    assert huge_header.status_code == 431
    runs = httpx.get(f"{surfaces.web}/api/runs", headers=BEARER).json()
    assert runs == []  # nothing was submitted
    # Nothing but the page's own files is served, however the path is spelled.
    for path in (
        "/static/../app.py",
        "/static/%2e%2e/app.py",
        "/static/..%2fapp.py",
        "/audio/..%2f..%2fetc",
        "/audio/../../etc/passwd",
        "/runs/..%2f..%2fsparkjobs.toml",
        "//etc/passwd",
        "/static/../../config/default.toml",
    ):
        answer = raw(
            surfaces.web_port,
            f"GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
            f"{WEB_TOKEN}\r\nConnection: close\r\n\r\n".encode(),
        )
        assert 400 <= status_of(answer) < 500, (path, answer[:300])
        for leaked in (b"import", b"root:", b"[nodes"):
            assert leaked not in answer, path


def test_the_artifact_server_wants_its_token_serves_only_blobs_and_stores_only_whole_uploads(
    surfaces: Surfaces,
) -> None:
    surfaces.start_artifacts()

    def get(path: str, **headers: str) -> tuple[int, bytes]:
        connection = http.client.HTTPConnection("127.0.0.1", surfaces.artifacts_port, timeout=10)
        try:
            connection.request("GET", path, headers=headers)
            response = connection.getresponse()
            return response.status, response.read()
        finally:
            connection.close()

    path = f"/v1/blobs/{surfaces.blob}"
    assert get(path)[0] == 401
    assert get(path, Authorization="Bearer nope")[0] == 403
    assert get(path, Authorization=f"Bearer {WEB_TOKEN}")[0] == 403  # another secret: no
    token = f"Bearer {ARTIFACT_TOKEN}"
    assert get(path, Authorization=token) == (200, surfaces.content)
    secret = surfaces.tmp_path / "secret.txt"
    link = artifact_path(surfaces.root, hashlib.sha256(b"link").hexdigest())
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(secret)
    for bad in (
        f"/v1/blobs/{link.name}",
        "/v1/blobs/../../sparkjobs.db",
        "/v1/blobs/..%2F..%2Fx",
        f"/v1/blobs/{surfaces.blob.upper()}",
        "/v1/blobs/" + "a" * 5000,
    ):
        status, body = get(bad, Authorization=token)
        assert 400 <= status < 500, bad
        assert SECRET_FILE_TEXT.encode() not in body
        assert b"root:" not in body
    for ranges in ("bytes=-0", "bytes=5-2", "bytes=0-1,4-5", "bytes=x-", "lines=0-1"):
        status, body = get(path, Authorization=token, Range=ranges)
        assert status == 416, ranges
        assert surfaces.content[:32] not in body

    # Uploads: oversized, cut short or malformed ones store nothing and leave nothing.
    before = stored(surfaces)[0]
    auth = b"Authorization: Bearer " + ARTIFACT_TOKEN.encode() + b"\r\n"
    cases = {
        # More than any disk holds: refused before a byte is written.
        "oversized": b"PUT /v1/blobs HTTP/1.1\r\nHost: x\r\n"
        + auth
        + b"Content-Length: 9000000000000000\r\n\r\n",
        # The client stops after 10 of the 1000 bytes it announced.
        "cut short": b"PUT /v1/blobs HTTP/1.1\r\nHost: x\r\n"
        + auth
        + b"Content-Length: 1000\r\n\r\n0123456789",
        "bad sha256": b"PUT /v1/blobs HTTP/1.1\r\nHost: x\r\n"
        + auth
        + b"X-Sparkjobs-Sha256: ../../x\r\nContent-Length: 3\r\n\r\nabc",
        "huge header": b"PUT /v1/blobs HTTP/1.1\r\nHost: x\r\n"
        + auth
        + b"X-Big: "
        + b"b" * 100_000
        + b"\r\nContent-Length: 3\r\n\r\nabc",
        "bad length": b"PUT /v1/blobs HTTP/1.1\r\nHost: x\r\n"
        + auth
        + b"Content-Length: -3\r\n\r\nabc",
        "no token": b"PUT /v1/blobs HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc",
    }
    for name, sent in cases.items():
        # A half-close ends the body early (aiohttp then drops any answer); the others
        # wait for theirs.
        request = sent.replace(b"Host: x\r\n", b"Host: x\r\nConnection: close\r\n")
        answer = raw(surfaces.artifacts_port, request, half_close=name == "cut short")
        if answer:  # a request cut short may just be dropped
            assert 400 <= status_of(answer) < 500 or status_of(answer) == 507, (name, answer[:300])
        else:
            assert name == "cut short", name
        # The server cleans up once it notices the client gone: wait for that.
        wait_for(
            f"the {name} upload's partial file to go",
            lambda: not stored(surfaces)[1],
            surfaces.cluster,
        )
        assert stored(surfaces)[0] == before, name
    health = raw(
        surfaces.artifacts_port,
        b"GET /v1/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n" + auth + b"\r\n",
    )
    assert json.loads(health.split(b"\r\n\r\n", 1)[1])["status"] == "ok"  # still serving
