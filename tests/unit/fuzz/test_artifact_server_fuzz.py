"""The artifact server's request parsing never crashes and never leaks: any path,
Range header, token or raw request line gets a 4xx without the blob's bytes unless it
is a well-formed request with the right token, and then exactly the bytes asked for."""

from __future__ import annotations

import http.client
import re
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import pytest
from hypothesis import event, given
from hypothesis import strategies as st

from sparkjobs.artifacts.register import node_root, register_file
from sparkjobs.artifacts.server import ServerThread
from sparkjobs.config import Config
from sparkjobs.store.engine import open_store
from sparkjobs.store.schema import upgrade
from tests.support.services import free_port
from tests.unit.fuzz.support import FUZZ

TOKEN = "fuzz-token-of-the-artifact-server"
CONTENT = bytes(range(256)) * 40  # 10240 bytes, every byte value
SIZE = len(CONTENT)


@dataclass(frozen=True)
class Served:
    port: int
    sha256: str

    def get(self, path: str, headers: dict[str, str]) -> tuple[int, bytes, dict[str, str]]:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            connection.putrequest("GET", path, skip_accept_encoding=True)
            for name, value in headers.items():
                connection.putheader(name, value)
            connection.endheaders()
            response = connection.getresponse()
            return response.status, response.read(), dict(response.getheaders())
        finally:
            connection.close()


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    tmp_path: Path = tmp_path_factory.mktemp("artifacts")
    database = f"sqlite:///{tmp_path / 'db.sqlite'}"
    upgrade(database)
    port = free_port()
    config = Config(
        data_dir=tmp_path / "data",
        database_url=database,
        nodes={"spark1": {"bond_address": "127.0.0.1", "artifacts_port": port}},
        artifacts={"token": TOKEN},
    )
    sessions = open_store(database)
    sha256 = register_file(sessions, node_root(config, "spark1"), "spark1", CONTENT).sha256
    server = ServerThread(config, "spark1").start()
    try:
        yield Served(port, sha256)
    finally:
        server.stop()


AUTH = "Bearer " + TOKEN
HEADER_TEXT = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=30)
RANGES = st.one_of(
    st.builds(
        lambda a, b: f"bytes={a}-{b}",
        st.integers(-5, SIZE + 5) | st.just(""),
        st.integers(-5, SIZE + 5) | st.just(""),
    ),
    st.builds(lambda n: f"bytes=-{n}", st.integers(0, SIZE + 5)),
    st.sampled_from(
        [
            "bytes=0-1,3-4",
            "bytes=0-0, 1-1",
            "bytes =0-1",
            "BYTES=0-1",
            "bytes=0x1-2",
            "bytes=1-2-3",
            "bytes=--1",
            "bytes=99999999999999999999999-",
        ]
    ),
    HEADER_TEXT,
)
_SIMPLE = re.compile(r"^bytes=(\d*)-(\d*)$")


def expected_slice(value: str) -> bytes | None:
    """The bytes a one-range request for CONTENT may get, or None when it must be refused."""
    match = _SIMPLE.match(value)
    if match is None:
        return None
    first, last = match.groups()
    if not first and not last:
        return None
    if not first:
        return CONTENT[-int(last) :] if int(last) > 0 else None
    start = int(first)
    end = min(int(last), SIZE - 1) if last else SIZE - 1
    if start >= SIZE or (last and int(last) < start):
        return None
    return CONTENT[start : end + 1]


@FUZZ
@given(value=RANGES)
def test_a_range_gets_exactly_its_bytes_or_a_4xx_with_none(served: Served, value: str) -> None:
    status, body, headers = served.get(
        f"/v1/blobs/{served.sha256}", {"Authorization": AUTH, "Range": value}
    )
    event(f"HTTP {status}")
    wanted = expected_slice(value)
    if status == 206:
        assert wanted is not None, value
        assert body == wanted, value
        assert headers["Content-Range"].endswith(f"/{SIZE}")
    elif status == 200:
        # aiohttp ignores a Range header it does not recognize as bytes ranges at all.
        assert body == CONTENT, value
        assert not value.strip().lower().startswith("bytes"), value
    else:
        assert 400 <= status < 500, (value, status)
        assert CONTENT[:16] not in body


PATH_PARTS = st.sampled_from(
    [
        "v1",
        "blobs",
        "manifests",
        "..",
        ".",
        "%2e%2e",
        "%2F",
        "etc",
        "passwd",
        "",
        "sparkjobs.db",
        ".partial",
        "%00",
        "health",
    ]
)


@FUZZ
@given(
    parts=st.lists(PATH_PARTS | st.text(max_size=8).map(lambda s: quote(s, safe="")), max_size=5),
    with_sha=st.booleans(),
)
def test_no_path_but_a_blobs_own_serves_anything(
    served: Served, parts: list[str], with_sha: bool
) -> None:
    path = "/" + "/".join(parts + ([served.sha256] if with_sha else []))
    status, body, _ = served.get(path, {"Authorization": AUTH})
    event(f"HTTP {status}")
    assert status < 500, path
    if path in (f"/v1/blobs/{served.sha256}",):
        assert body == CONTENT
    elif status == 200:
        assert path in ("/v1/health", f"/v1/manifests/{served.sha256}"), path
    assert b"root:" not in body
    if status != 200 or path != f"/v1/blobs/{served.sha256}":
        assert CONTENT[:64] not in body, path


@FUZZ
@given(
    authorization=st.none()
    | HEADER_TEXT
    | st.builds(lambda s: f"Bearer {TOKEN}{s}", HEADER_TEXT)
    | st.sampled_from(
        [
            f"bearer {TOKEN}",
            f"Bearer  {TOKEN}",
            f"Bearer {TOKEN} ",
            TOKEN,
            f"Basic {TOKEN}",
            "Bearer",
            "Bearer ",
            f"Bearer {TOKEN[:-1]}",
        ]
    )
)
def test_only_the_exact_token_opens_the_store(served: Served, authorization: str | None) -> None:
    headers = {} if authorization is None else {"Authorization": authorization}
    status, body, _ = served.get(f"/v1/blobs/{served.sha256}", headers)
    event(f"HTTP {status}")
    # HTTP strips the spaces around a header value; inside it, they count.
    scheme, _, given_token = (authorization or "").strip().partition(" ")
    if scheme.lower() == "bearer" and given_token == TOKEN:  # exactly: no stray spaces
        assert (status, body) == (200, CONTENT)
    else:
        assert status == (401 if not (authorization or "").strip() else 403), authorization
        assert CONTENT[:16] not in body


@FUZZ
@given(
    line=st.binary(max_size=60)
    | st.sampled_from(
        [
            b"GET /v1/blobs/x HTTP/9.9",
            b"GET",
            b"GET /" + b"a" * 9000 + b" HTTP/1.1",
            b"GET /v1/health HTTP/1.1\r\nX: " + b"b" * 9000,
            b"\x16\x03\x01\x00\xa5",
            b"GET /v1/health HTTP/1.1\r\nContent-Length: -1",
            b"PUT /v1/blobs HTTP/1.1\r\nContent-Length: x",
        ]
    )
)
def test_a_malformed_request_gets_a_4xx_or_a_closed_connection_and_the_server_stays(
    served: Served, line: bytes
) -> None:
    with socket.create_connection(("127.0.0.1", served.port), timeout=10) as raw:
        raw.sendall(line + b"\r\nAuthorization: " + AUTH.encode() + b"\r\n\r\n")
        raw.shutdown(socket.SHUT_WR)
        answer = b""
        while chunk := raw.recv(65536):
            answer += chunk
    status_line = answer.split(b"\r\n", 1)[0]
    event(status_line.decode("latin-1")[:20] or "closed")
    if answer:
        code = int(status_line.split()[1])
        assert code < 500 or code == 505, answer[:200]  # 505: HTTP/9.9
        assert CONTENT[:16] not in answer
    assert served.get("/v1/health", {"Authorization": AUTH})[0] == 200
