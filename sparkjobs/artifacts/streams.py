"""One stream of a fetch: a thread with its own keep-alive connection that takes a
chunk, asks for exactly that byte range, and runs `recv_into` a reused buffer -> chunk
digest -> `os.pwrite` into the partial file, so memory stays flat and nothing is read
twice. A source that fails or serves bad bytes is reported to the fetch state."""

from __future__ import annotations

import http.client
import os

from sparkjobs.artifacts.fetch_state import FetchState, SourceError, SourceState
from sparkjobs.artifacts.locate import Endpoint
from sparkjobs.artifacts.manifest import new_hasher
from sparkjobs.artifacts.spread import spread_connection
from sparkjobs.errors import ArtifactUnavailable, CorruptArtifact
from sparkjobs.store.durable import disk_full, is_disk_full

BUFFER_BYTES = 1 << 20


CONNECT_TIMEOUT_S = 5.0


READ_TIMEOUT_S = 30.0


def stream(plan: FetchState, number: int, fd: int, token: str | None) -> None:
    buffer = bytearray(min(BUFFER_BYTES, max(1, plan.manifest.chunk_bytes)))
    connection: http.client.HTTPConnection | None = None
    current: SourceState | None = None
    try:
        while (index := plan.take()) is not None:
            picked = plan.pick(number)
            if picked is None:
                plan.retry(index)
                break
            source, slot = picked
            if source is not current or connection is None:
                if connection is not None:
                    connection.close()
                connection, current = open_spread(source, slot), source
            try:
                fetch_chunk(connection, source.endpoint, plan, index, fd, buffer, token)
            except SourceError as exc:
                connection.close()
                connection = None
                plan.fail(source, str(exc), fatal=exc.fatal, corrupt=exc.corrupt)
                plan.retry(index)
                continue
            except OSError as exc:
                if is_disk_full(exc):
                    plan.abort(disk_full(plan.dest, plan.manifest.size_bytes, exc))
                    plan.retry(index)
                    return
                connection.close()
                connection = None
                plan.fail(source, f"{source.endpoint.url}: {exc}", fatal=False)
                plan.retry(index)
                continue
            except http.client.HTTPException as exc:
                connection.close()
                connection = None
                plan.fail(source, f"{source.endpoint.url}: {exc!r}", fatal=False)
                plan.retry(index)
                continue
            with plan.cond:
                plan.used.add(source.endpoint.node)
            plan.done(index, plan.manifest.chunk_span(index)[1])
    except BaseException as exc:
        plan.abort(exc)
    finally:
        if connection is not None:
            connection.close()
        plan.stopped()


def connect(endpoint: Endpoint) -> http.client.HTTPConnection:
    return http.client.HTTPConnection(endpoint.host, endpoint.port, timeout=CONNECT_TIMEOUT_S)


def open_spread(source: SourceState, slot: int) -> http.client.HTTPConnection:
    endpoint = source.endpoint
    return spread_connection(
        endpoint.host, endpoint.port, CONNECT_TIMEOUT_S, source.ports.candidates(slot)
    )


def fetch_chunk(
    connection: http.client.HTTPConnection,
    endpoint: Endpoint,
    plan: FetchState,
    index: int,
    fd: int,
    buffer: bytearray,
    token: str | None,
) -> None:
    manifest = plan.manifest
    offset, length = manifest.chunk_span(index)
    headers = {"Range": f"bytes={offset}-{offset + length - 1}"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    connection.request("GET", f"/v1/blobs/{manifest.sha256}", headers=headers)
    if connection.sock is not None:
        connection.sock.settimeout(READ_TIMEOUT_S)
        local_port = int(connection.sock.getsockname()[1])
        with plan.cond:
            plan.local_ports.add(local_port)
    response = connection.getresponse()
    if response.status != 206 or response.length != length:
        body = response.read(4096)
        fatal = response.status in (401, 403, 404)
        raise SourceError(
            f"{endpoint.node} ({endpoint.url}): HTTP {response.status} for chunk {index}"
            f" {first_line(body)}".rstrip(),
            fatal=fatal,
        )
    hasher = new_hasher(manifest.algo)
    view = memoryview(buffer)
    position, remaining = offset, length
    while remaining:
        count = response.readinto(view[: min(remaining, len(view))])
        if not count:
            raise SourceError(f"{endpoint.node} ({endpoint.url}): connection closed mid-chunk")
        hasher.update(view[:count])
        written = 0
        while written < count:
            written += os.pwrite(fd, view[written:count], position + written)
        position += count
        remaining -= count
        with plan.cond:
            plan.bytes_received += count
    if hasher.hexdigest() != manifest.digests[index]:
        # The bytes are on disk but not listed as verified: they are fetched again.
        raise SourceError(
            f"{endpoint.node} ({endpoint.url}): chunk {index} does not match the manifest",
            fatal=True,
            corrupt=True,
        )


def unavailable(plan: FetchState) -> BaseException:
    reasons = "; ".join(
        f"{s.endpoint.node}: {s.banned}" for s in plan.sources if s.banned is not None
    )
    missing = plan.manifest.chunk_count - len(plan.verified)
    sha256 = plan.manifest.sha256
    if plan.sources and all(s.corrupt for s in plan.sources):
        return CorruptArtifact(
            f"every location served corrupt bytes of artifact {sha256} ({reasons}); "
            "nothing was stored"
        )
    return ArtifactUnavailable(
        f"could not fetch {missing} of {plan.manifest.chunk_count} chunks of artifact "
        f"{sha256}: {reasons or 'no location'}. The verified chunks are kept: run the "
        "same fetch again to resume"
    )


def http_get(endpoint: Endpoint, path: str, token: str | None) -> tuple[int, bytes]:
    connection = connect(endpoint)
    try:
        headers = {} if token is None else {"Authorization": f"Bearer {token}"}
        connection.request("GET", path, headers=headers)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def first_line(body: bytes) -> str:
    text = body.decode(errors="replace").strip()
    return text.splitlines()[0] if text else ""
