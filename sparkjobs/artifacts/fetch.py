"""Pulling an artifact in parallel verified ranges, from whichever nodes hold it.

Each stream is a thread with its own keep-alive connection. It takes a chunk of the
manifest, asks for exactly that byte range, and runs `recv_into` a reused buffer ->
chunk digest -> `os.pwrite` into a preallocated partial file, so memory stays flat
and nothing is read twice. With a layer3+4 bond, flows with different ports hash to
different links, so several streams use both; `spread` picks each stream's source port
so that the streams split evenly over the bond's members. A chunk whose digest is
wrong is fetched again from another location; verified chunks are listed in a sidecar
file, so an interrupted fetch resumes where it stopped. The file is renamed into place
only once every chunk verifies.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from sparkjobs.artifacts.locate import Endpoint
from sparkjobs.artifacts.manifest import Manifest, new_hasher
from sparkjobs.artifacts.spread import NO_PLAN, PortPlan, plan_ports, spread_connection
from sparkjobs.errors import ArtifactUnavailable, CorruptArtifact, DiskFull
from sparkjobs.store.durable import commit, disk_full, drop_cache, is_disk_full, preallocate

# Four flows per link of a two-link bond: one flow never fills a link on these CPUs.
# Source ports are chosen so the 8 split 4/4 on a layer3+4 bond (see `spread`).
DEFAULT_STREAMS = 8
MAX_STREAMS = 64
BUFFER_BYTES = 1 << 20
CONNECT_TIMEOUT_S = 5.0
READ_TIMEOUT_S = 30.0
SOURCE_FAILURES_ALLOWED = 3
PROGRESS_EVERY_S = 1.0
# A checkpoint fdatasyncs the partial file, which holds up the streams' writes while
# it runs (1 GiB over the test bed: 0.4-0.66 GB/s with one a second, mostly 1.1-1.5
# GB/s without). An interrupted fetch checkpoints anyway; this bounds what a hard
# crash (power, SIGKILL) costs: at most this many seconds of transfer.
CHECKPOINT_EVERY_S = 10.0

Progress = Callable[[int], None]


@dataclass(frozen=True)
class Fetched:
    """The outcome of a fetch."""

    sha256: str
    path: Path
    size_bytes: int
    bytes_received: int
    resumed_chunks: int
    streams: int
    sources: tuple[str, ...]
    # The source ports of the connections made, to check how the flows spread.
    local_ports: tuple[int, ...] = ()


@dataclass
class _SourceState:
    endpoint: Endpoint
    ports: PortPlan = NO_PLAN
    failures: int = 0
    banned: str | None = None
    corrupt: bool = False


@dataclass
class _Plan:
    """Shared state of one fetch: the chunks to do, the sources, and how it is going."""

    manifest: Manifest
    dest: Path
    sources: list[_SourceState]
    pending: list[int]
    verified: set[int]
    cond: threading.Condition = field(default_factory=threading.Condition)
    in_flight: int = 0
    running: int = 0
    bytes_done: int = 0
    bytes_received: int = 0
    fatal: BaseException | None = None
    used: set[str] = field(default_factory=set)
    local_ports: set[int] = field(default_factory=set)

    def take(self) -> int | None:
        with self.cond:
            while True:
                if self.fatal is not None or not self.live_sources():
                    return None
                if self.pending:
                    self.in_flight += 1
                    return self.pending.pop()
                if self.in_flight == 0:
                    return None
                self.cond.wait()

    def done(self, index: int, length: int) -> None:
        with self.cond:
            self.in_flight -= 1
            self.verified.add(index)
            self.bytes_done += length
            self.cond.notify_all()

    def retry(self, index: int) -> None:
        with self.cond:
            self.in_flight -= 1
            self.pending.append(index)
            self.cond.notify_all()

    def abort(self, exc: BaseException) -> None:
        with self.cond:
            if self.fatal is None:
                self.fatal = exc
            self.cond.notify_all()

    def live_sources(self) -> list[_SourceState]:
        return [source for source in self.sources if source.banned is None]

    def pick(self, stream: int) -> tuple[_SourceState, int] | None:
        """The source stream `stream` pulls from, and its slot among that source's streams."""
        with self.cond:
            live = self.live_sources()
            return (live[stream % len(live)], stream // len(live)) if live else None

    def stopped(self) -> None:
        with self.cond:
            self.running -= 1
            self.cond.notify_all()

    def fail(
        self, source: _SourceState, reason: str, *, fatal: bool, corrupt: bool = False
    ) -> None:
        with self.cond:
            source.failures += 1
            if corrupt:
                source.corrupt = True
            if fatal or source.failures > SOURCE_FAILURES_ALLOWED:
                source.banned = reason
            self.cond.notify_all()

    @property
    def complete(self) -> bool:
        return len(self.verified) == self.manifest.chunk_count


class _SourceError(Exception):
    def __init__(self, reason: str, *, fatal: bool = False, corrupt: bool = False):
        super().__init__(reason)
        self.fatal, self.corrupt = fatal, corrupt


def partial_paths(dest: Path, sha256: str, partial_dir: Path | None = None) -> tuple[Path, Path]:
    """The hidden partial file of a fetch into `dest`, and its resume sidecar."""
    folder = partial_dir or dest.parent
    stem = f"{sha256}.fetch" if partial_dir else f".{dest.name}.{sha256[:12]}.partial"
    return folder / stem, folder / f"{stem}.json"


def fetch_manifest(
    sources: Sequence[Endpoint], sha256: str, manifest_sha256: str | None, token: str | None
) -> Manifest:
    """The artifact's manifest from the first source that serves a valid one.

    Raises:
        CorruptArtifact: every source served one that does not match the recorded digest.
        ArtifactUnavailable: no source answered.
    """
    reasons: list[str] = []
    corrupt = False
    for source in sources:
        try:
            status, body = _get(source, f"/v1/manifests/{sha256}", token)
        except (OSError, http.client.HTTPException) as exc:
            reasons.append(f"{source.node} ({source.url}): {exc}")
            continue
        if status != 200:
            reasons.append(f"{source.node} ({source.url}): HTTP {status} {_first_line(body)}")
            continue
        try:
            return Manifest.from_json(body, sha256=sha256, expected_digest=manifest_sha256)
        except CorruptArtifact as exc:
            corrupt = True
            reasons.append(f"{source.node}: {exc}")
    detail = "; ".join(reasons) or "no location recorded"
    if corrupt:
        raise CorruptArtifact(f"no valid manifest for artifact {sha256}: {detail}")
    raise ArtifactUnavailable(f"no location could serve artifact {sha256}: {detail}")


def fetch_to(
    sources: Sequence[Endpoint],
    manifest: Manifest,
    dest: Path,
    *,
    token: str | None,
    trusted_manifest: bool = True,
    streams: int = DEFAULT_STREAMS,
    partial_dir: Path | None = None,
    progress: Progress | None = None,
) -> Fetched:
    """Fetch the artifact `manifest` describes into `dest`, verifying every chunk.

    Args:
        sources: the artifact servers to pull from, preferred first.
        trusted_manifest: False when SQL records no manifest digest: the finished file
            is then read once more and checked against its sha256 before the rename.
        streams: parallel range requests (connections), 1 to 64.
        partial_dir: where the partial file lives (same filesystem as `dest`); default
            a hidden file next to `dest`.
        progress: called with the bytes verified so far, from the calling thread.

    Raises:
        ArtifactUnavailable: no source could deliver the missing chunks (the verified
            ones are kept for a later resume).
        CorruptArtifact: every source served bad bytes.
        DiskFull: no room for the file; the partial file is removed.
    """
    streams = max(1, min(streams, MAX_STREAMS))
    partial, sidecar = partial_paths(dest, manifest.sha256, partial_dir)
    partial.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(partial, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        verified = _load_sidecar(sidecar, manifest) if os.fstat(fd).st_size else set()
        try:
            preallocate(fd, manifest.size_bytes, dest)
        except DiskFull:
            _remove(partial, sidecar)
            raise
        resumed = len(verified)
        pending = sorted(set(range(manifest.chunk_count)) - verified, reverse=True)
        count = min(streams, max(1, len(pending)))
        plan = _Plan(
            manifest=manifest,
            dest=dest,
            sources=[
                _SourceState(source, _ports(source, count, len(sources))) for source in sources
            ],
            pending=pending,
            verified=verified,
            bytes_done=sum(manifest.chunk_span(i)[1] for i in verified),
            running=count,
        )
        threads = [
            threading.Thread(
                target=_stream, args=(plan, n, fd, token), name=f"fetch-{n}", daemon=True
            )
            for n in range(count)
        ]
        for thread in threads:
            thread.start()
        try:
            _watch(plan, threads, fd, sidecar, progress)
        except BaseException as exc:  # an interrupt: keep what verified, for a resume
            plan.abort(exc)
            for thread in threads:
                thread.join()
            _checkpoint(fd, sidecar, plan)
            raise
        if plan.fatal is not None:
            if isinstance(plan.fatal, DiskFull):
                _remove(partial, sidecar)
            else:
                _checkpoint(fd, sidecar, plan)
            raise plan.fatal
        if not plan.complete:
            _checkpoint(fd, sidecar, plan)
            raise _unavailable(plan)
        if not trusted_manifest:
            _check_whole(fd, manifest, partial, sidecar)
        commit(fd, partial, dest)
        sidecar.unlink(missing_ok=True)
    except OSError as exc:
        if is_disk_full(exc):
            _remove(partial, sidecar)
            raise disk_full(dest, manifest.size_bytes, exc) from exc
        raise
    finally:
        os.close(fd)
    return Fetched(
        sha256=manifest.sha256,
        path=dest,
        size_bytes=manifest.size_bytes,
        bytes_received=plan.bytes_received,
        resumed_chunks=resumed,
        streams=len(threads),
        sources=tuple(sorted(plan.used)),
        local_ports=tuple(sorted(plan.local_ports)),
    )


def _ports(source: Endpoint, streams: int, sources: int) -> PortPlan:
    # Stream n pulls from source n % sources, as slot n // sources of that source;
    # if a source drops out the others take over its streams, with the kernel's ports
    # for the slots beyond those planned here.
    return plan_ports(source.host, source.port, -(-streams // sources))


def _watch(
    plan: _Plan,
    threads: list[threading.Thread],
    fd: int,
    sidecar: Path,
    progress: Progress | None,
) -> None:
    # The calling thread reports progress and checkpoints the sidecar; the streams
    # only fetch. A checkpoint lists a chunk only after its bytes are on disk. Each
    # stream says when it stops (`running`): waiting for the threads to look dead
    # could sleep a whole progress period after the last chunk.
    checkpointed = len(plan.verified)
    last_checkpoint = time.monotonic()
    while True:
        with plan.cond:
            if plan.running:
                plan.cond.wait(timeout=PROGRESS_EVERY_S)
            running, done, count = plan.running, plan.bytes_done, len(plan.verified)
        if progress is not None:
            progress(done)
        if not running:
            break
        now = time.monotonic()
        due = now - last_checkpoint >= CHECKPOINT_EVERY_S
        if due and count != checkpointed and not plan.complete:
            _checkpoint(fd, sidecar, plan)
            checkpointed, last_checkpoint = count, now
    for thread in threads:
        thread.join()


def _stream(plan: _Plan, number: int, fd: int, token: str | None) -> None:
    buffer = bytearray(min(BUFFER_BYTES, max(1, plan.manifest.chunk_bytes)))
    connection: http.client.HTTPConnection | None = None
    current: _SourceState | None = None
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
                connection, current = _open(source, slot), source
            try:
                _fetch_chunk(connection, source.endpoint, plan, index, fd, buffer, token)
            except _SourceError as exc:
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


def _connect(endpoint: Endpoint) -> http.client.HTTPConnection:
    return http.client.HTTPConnection(endpoint.host, endpoint.port, timeout=CONNECT_TIMEOUT_S)


def _open(source: _SourceState, slot: int) -> http.client.HTTPConnection:
    endpoint = source.endpoint
    return spread_connection(
        endpoint.host, endpoint.port, CONNECT_TIMEOUT_S, source.ports.candidates(slot)
    )


def _fetch_chunk(
    connection: http.client.HTTPConnection,
    endpoint: Endpoint,
    plan: _Plan,
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
        raise _SourceError(
            f"{endpoint.node} ({endpoint.url}): HTTP {response.status} for chunk {index}"
            f" {_first_line(body)}".rstrip(),
            fatal=fatal,
        )
    hasher = new_hasher(manifest.algo)
    view = memoryview(buffer)
    position, remaining = offset, length
    while remaining:
        count = response.readinto(view[: min(remaining, len(view))])
        if not count:
            raise _SourceError(f"{endpoint.node} ({endpoint.url}): connection closed mid-chunk")
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
        raise _SourceError(
            f"{endpoint.node} ({endpoint.url}): chunk {index} does not match the manifest",
            fatal=True,
            corrupt=True,
        )


def _unavailable(plan: _Plan) -> BaseException:
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


def _checkpoint(fd: int, sidecar: Path, plan: _Plan) -> None:
    with plan.cond:
        verified = sorted(plan.verified)
    os.fdatasync(fd)
    state = {
        "sha256": plan.manifest.sha256,
        "manifest_sha256": plan.manifest.digest(),
        "verified": verified,
    }
    temporary = sidecar.with_suffix(".tmp")
    temporary.write_text(json.dumps(state))
    os.replace(temporary, sidecar)


def _load_sidecar(sidecar: Path, manifest: Manifest) -> set[int]:
    try:
        state = json.loads(sidecar.read_text())
        if state["sha256"] != manifest.sha256 or state["manifest_sha256"] != manifest.digest():
            return set()
        return {int(i) for i in state["verified"] if 0 <= int(i) < manifest.chunk_count}
    except (OSError, ValueError, KeyError, TypeError):
        return set()


def _check_whole(fd: int, manifest: Manifest, partial: Path, sidecar: Path) -> None:
    digest = hashlib.sha256()
    buffer = bytearray(BUFFER_BYTES * 4)
    view = memoryview(buffer)
    position = 0
    while position < manifest.size_bytes:
        count = os.preadv(fd, [view[: min(len(view), manifest.size_bytes - position)]], position)
        if not count:
            break
        digest.update(view[:count])
        position += count
    drop_cache(fd)
    if digest.hexdigest() != manifest.sha256:
        _remove(partial, sidecar)
        raise CorruptArtifact(
            f"artifact {manifest.sha256} arrived whole but hashes to {digest.hexdigest()}: "
            "its (unrecorded) manifest was wrong; nothing was stored"
        )


def _remove(*paths: Path) -> None:
    for path in paths:
        path.unlink(missing_ok=True)


def _get(endpoint: Endpoint, path: str, token: str | None) -> tuple[int, bytes]:
    connection = _connect(endpoint)
    try:
        headers = {} if token is None else {"Authorization": f"Bearer {token}"}
        connection.request("GET", path, headers=headers)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def _first_line(body: bytes) -> str:
    text = body.decode(errors="replace").strip()
    return text.splitlines()[0] if text else ""
