"""Fetching over real artifact servers: parallel, verified, resumable, never half-stored."""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from sparkjobs.artifacts import fetch
from sparkjobs.artifacts.ensure import ensure_local, get_artifact
from sparkjobs.artifacts.fetch import fetch_manifest, fetch_to, partial_paths
from sparkjobs.artifacts.locate import Endpoint, endpoint, find
from sparkjobs.artifacts.manifest import manifest_path
from sparkjobs.artifacts.register import node_root
from sparkjobs.artifacts.spread import bond_member
from sparkjobs.errors import ArtifactUnavailable, CorruptArtifact
from tests.integration.artifacts.conftest import TOKEN, Nodes

MiB = 1 << 20


def test_a_parallel_fetch_verifies_every_chunk_and_matches_the_sha256(
    nodes: Nodes, payload: Callable[[int], bytes], tmp_path: Path
) -> None:
    content = payload(9 * MiB + 12345)
    sha256 = nodes.register("spark1", content).sha256
    out = tmp_path / "out.bin"

    fetched = get_artifact(nodes.config, sha256, out, streams=8, sessions=nodes.sessions)

    assert hashlib.sha256(out.read_bytes()).hexdigest() == sha256
    assert fetched.streams == 8
    assert fetched.bytes_received == len(content)
    assert fetched.sources == ("spark1",)
    assert not list(tmp_path.glob(".*partial*"))


def test_the_streams_connect_from_ports_that_split_evenly_over_a_two_member_bond(
    nodes: Nodes, payload: Callable[[int], bytes], tmp_path: Path
) -> None:
    sha256 = nodes.register("spark1", payload(24 * MiB)).sha256
    server = endpoint(nodes.config, "spark1")

    fetched = get_artifact(nodes.config, sha256, tmp_path / "o", streams=8, sessions=nodes.sessions)

    # A stream that starts after the last chunk was taken never connects, so count
    # at most 4 per member rather than exactly 4 (random ports: 8/0 to 5/3 in 73 %).
    assert 2 <= len(fetched.local_ports) <= 8
    members = Counter(
        bond_member("127.0.0.1", server.host, port, server.port) for port in fetched.local_ports
    )
    assert set(members) == {0, 1}
    assert max(members.values()) <= 4, members


def test_a_fetch_returns_once_its_streams_stop_not_at_the_next_checkpoint(
    nodes: Nodes, payload: Callable[[int], bytes], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # With an hour between progress reports, a fetch that waited for the next one
    # after its last chunk would hang here; the bound below only stops such a hang.
    # Closing a connection is made slow, so streams are still winding down when the
    # last chunk is in (as on a loaded machine).
    monkeypatch.setattr(fetch, "PROGRESS_EVERY_S", 3600.0)
    close = http.client.HTTPConnection.close

    def slow_close(self: http.client.HTTPConnection) -> None:
        time.sleep(0.2)
        close(self)

    monkeypatch.setattr(http.client.HTTPConnection, "close", slow_close)
    sha256 = nodes.register("spark1", payload(2 * MiB + 1)).sha256
    done: list[Path] = []
    worker = threading.Thread(
        target=lambda: done.append(
            get_artifact(
                nodes.config, sha256, tmp_path / "o", streams=4, sessions=nodes.sessions
            ).path
        ),
        daemon=True,
    )
    worker.start()
    worker.join(timeout=60)

    assert done == [tmp_path / "o"]
    assert hashlib.sha256((tmp_path / "o").read_bytes()).hexdigest() == sha256


def test_an_empty_artifact_and_a_one_chunk_artifact_arrive_whole(
    nodes: Nodes, tmp_path: Path
) -> None:
    for content in (b"", b"one small voice"):
        sha256 = nodes.register("spark1", content).sha256
        out = tmp_path / f"{len(content)}.bin"
        get_artifact(nodes.config, sha256, out, sessions=nodes.sessions)
        assert out.read_bytes() == content


def test_ensure_local_pulls_from_the_node_that_holds_it_and_records_the_copy(
    nodes: Nodes, payload: Callable[[int], bytes]
) -> None:
    sha256 = nodes.register("spark1", payload(3 * MiB)).sha256

    path = ensure_local(nodes.config, sha256, "spark2")

    assert path.is_relative_to(node_root(nodes.config, "spark2"))
    assert hashlib.sha256(path.read_bytes()).hexdigest() == sha256
    assert set(find(nodes.sessions, sha256).nodes) == {"spark1", "spark2"}
    assert manifest_path(node_root(nodes.config, "spark2"), sha256).is_file()
    # Already there: no second fetch, even with every server gone.
    nodes.stop("spark1")
    assert ensure_local(nodes.config, sha256, "spark2") == path


def test_a_corrupted_byte_at_the_only_source_is_detected_and_nothing_is_stored(
    nodes: Nodes, payload: Callable[[int], bytes], tmp_path: Path
) -> None:
    registered = nodes.register("spark1", payload(4 * MiB))
    _flip_byte(registered.path, 3 * MiB + 7)
    out = tmp_path / "out.bin"

    with pytest.raises(CorruptArtifact, match="corrupt"):
        get_artifact(nodes.config, registered.sha256, out, sessions=nodes.sessions)

    assert not out.exists()


def test_bad_bytes_from_one_location_are_fetched_again_from_another(
    nodes: Nodes, payload: Callable[[int], bytes], tmp_path: Path
) -> None:
    content = payload(4 * MiB)
    registered = nodes.register("spark1", content)
    nodes.register("spark3", content)
    _flip_byte(registered.path, 5)

    path = ensure_local(nodes.config, registered.sha256, "spark2")

    assert path.read_bytes() == content


def test_a_manifest_that_does_not_match_the_recorded_digest_is_refused(
    nodes: Nodes, payload: Callable[[int], bytes], tmp_path: Path
) -> None:
    registered = nodes.register("spark1", payload(2 * MiB))
    manifest = manifest_path(node_root(nodes.config, "spark1"), registered.sha256)
    manifest.write_bytes(manifest.read_bytes().replace(b'"digests":["', b'"digests":["0'))

    with pytest.raises(CorruptArtifact, match="manifest"):
        get_artifact(nodes.config, registered.sha256, tmp_path / "o", sessions=nodes.sessions)


def test_a_source_that_dies_mid_transfer_is_replaced_by_another_location(
    nodes: Nodes, payload: Callable[[int], bytes], tmp_path: Path
) -> None:
    content = payload(8 * MiB)
    sha256 = nodes.register("spark1", content).sha256
    nodes.register("spark3", content)
    manifest = fetch_manifest([endpoint(nodes.config, "spark1")], sha256, None, TOKEN)
    with _dying_proxy(endpoint(nodes.config, "spark1"), budget_bytes=3 * MiB) as dying:
        sources = [dying, endpoint(nodes.config, "spark3")]
        fetched = fetch_to(sources, manifest, tmp_path / "out", token=TOKEN, streams=2)

    assert (tmp_path / "out").read_bytes() == content
    assert "spark3" in fetched.sources


def test_a_fetch_cut_short_resumes_later_without_refetching_verified_chunks(
    nodes: Nodes, payload: Callable[[int], bytes], tmp_path: Path
) -> None:
    content = payload(8 * MiB)
    sha256 = nodes.register("spark1", content).sha256
    good = endpoint(nodes.config, "spark1")
    manifest = fetch_manifest([good], sha256, None, TOKEN)
    out = tmp_path / "out"
    with _dying_proxy(good, budget_bytes=5 * MiB) as dying, pytest.raises(ArtifactUnavailable):
        fetch_to([dying], manifest, out, token=TOKEN, streams=1)
    partial, sidecar = partial_paths(out, sha256)
    assert sidecar.is_file()
    assert not out.exists()

    fetched = fetch_to([good], manifest, out, token=TOKEN, streams=2)

    assert out.read_bytes() == content
    assert fetched.resumed_chunks >= 3
    assert fetched.bytes_received <= len(content) - fetched.resumed_chunks * manifest.chunk_bytes
    assert not partial.exists()
    assert not sidecar.exists()


def test_no_reachable_location_is_unavailable_and_says_which(
    nodes: Nodes, payload: Callable[[int], bytes], tmp_path: Path
) -> None:
    sha256 = nodes.register("spark1", payload(MiB)).sha256
    nodes.stop("spark1")

    with pytest.raises(ArtifactUnavailable, match="spark1") as caught:
        get_artifact(nodes.config, sha256, tmp_path / "o", sessions=nodes.sessions)
    assert caught.value.exit_code == 3


def test_an_artifact_stored_without_a_manifest_is_checked_whole_and_gains_its_digest(
    nodes: Nodes, payload: Callable[[int], bytes], tmp_path: Path
) -> None:
    from sparkjobs.store.artifacts import store_artifact

    content = payload(3 * MiB)
    with nodes.sessions.begin() as session:
        sha256 = store_artifact(
            session, node_root(nodes.config, "spark1"), content,
            node="spark1", media_type="application/octet-stream",
        ).sha256  # fmt: skip
    assert find(nodes.sessions, sha256).manifest_sha256 is None

    get_artifact(nodes.config, sha256, tmp_path / "o", sessions=nodes.sessions)

    assert (tmp_path / "o").read_bytes() == content
    assert find(nodes.sessions, sha256).manifest_sha256 is not None


def _flip_byte(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


class _Proxy:
    """Relays TCP to `target` until `budget_bytes` went back to clients, then dies:
    every connection is cut and no new one is accepted (a source that crashed)."""

    def __init__(self, target: Endpoint, budget_bytes: int):
        self.target, self.budget = target, budget_bytes
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.listener.getsockname()[1])
        self.dead = threading.Event()
        self.lock = threading.Lock()
        self.sockets: list[socket.socket] = []
        self.threads: list[threading.Thread] = []
        self._spawn(self._accept)

    def _spawn(self, target: Callable[..., None], *args: object) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        self.threads.append(thread)
        thread.start()

    def _accept(self) -> None:
        while not self.dead.is_set():
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if self.dead.is_set():
                client.close()
                return
            upstream = socket.create_connection((self.target.host, self.target.port))
            with self.lock:
                self.sockets += [client, upstream]
            self._spawn(self._pipe, client, upstream, False)
            self._spawn(self._pipe, upstream, client, True)

    def _pipe(self, source: socket.socket, sink: socket.socket, counted: bool) -> None:
        try:
            while data := source.recv(256 * 1024):
                if counted:
                    with self.lock:
                        allowed = max(0, min(len(data), self.budget))
                        self.budget -= allowed
                    sink.sendall(data[:allowed])
                    if allowed < len(data):
                        self.die()
                        return
                else:
                    sink.sendall(data)
        except OSError:
            return

    def die(self) -> None:
        self.dead.set()
        # close() alone does not wake a thread blocked in accept() on Linux;
        # shutdown() does, so the accept thread ends and can be joined.
        with contextlib.suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)
        self.listener.close()
        with self.lock:
            for sock in self.sockets:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()


class _dying_proxy:
    def __init__(self, target: Endpoint, budget_bytes: int):
        self.proxy = _Proxy(target, budget_bytes)

    def __enter__(self) -> Endpoint:
        return Endpoint(self.proxy.target.node, "127.0.0.1", self.proxy.port)

    def __exit__(self, *exc: object) -> None:
        self.proxy.die()
        for thread in self.proxy.threads:
            thread.join()
