"""Pulling an artifact in parallel verified ranges, from whichever nodes hold it.

`fetch_to` preallocates a partial file, starts the streams (`streams`: one thread and
keep-alive connection each, a chunk's byte range at a time, verified as it arrives)
over the shared `fetch_state`, reports progress, and checkpoints which chunks are on
disk (`resume`), so an interrupted fetch resumes where it stopped. With a layer3+4
bond, flows with different ports hash to different links, so several streams use
both; `spread` picks each stream's source port so that the streams split evenly over
the bond's members. A chunk whose digest is wrong is fetched again from another
location. The file is renamed into place only once every chunk verifies.
"""

from __future__ import annotations

import http.client
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from sparkjobs.artifacts.fetch_state import FetchState, SourceState
from sparkjobs.artifacts.locate import Endpoint
from sparkjobs.artifacts.manifest import Manifest
from sparkjobs.artifacts.resume import check_whole, checkpoint, load_sidecar, partial_paths, remove
from sparkjobs.artifacts.spread import PortPlan, plan_ports
from sparkjobs.artifacts.streams import first_line, http_get, stream, unavailable
from sparkjobs.errors import ArtifactUnavailable, CorruptArtifact, DiskFull
from sparkjobs.store.durable import commit, disk_full, is_disk_full, preallocate

# Four flows per link of a two-link bond: one flow never fills a link on these CPUs.
# Source ports are chosen so the 8 split 4/4 on a layer3+4 bond (see `spread`).
DEFAULT_STREAMS = 8
MAX_STREAMS = 64
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
            status, body = http_get(source, f"/v1/manifests/{sha256}", token)
        except (OSError, http.client.HTTPException) as exc:
            reasons.append(f"{source.node} ({source.url}): {exc}")
            continue
        if status != 200:
            reasons.append(f"{source.node} ({source.url}): HTTP {status} {first_line(body)}")
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
        verified = load_sidecar(sidecar, manifest) if os.fstat(fd).st_size else set()
        try:
            preallocate(fd, manifest.size_bytes, dest)
        except DiskFull:
            remove(partial, sidecar)
            raise
        resumed = len(verified)
        pending = sorted(set(range(manifest.chunk_count)) - verified, reverse=True)
        count = min(streams, max(1, len(pending)))
        plan = FetchState(
            manifest=manifest,
            dest=dest,
            sources=[
                SourceState(source, _ports(source, count, len(sources))) for source in sources
            ],
            pending=pending,
            verified=verified,
            bytes_done=sum(manifest.chunk_span(i)[1] for i in verified),
            running=count,
        )
        threads = [
            threading.Thread(
                target=stream, args=(plan, n, fd, token), name=f"fetch-{n}", daemon=True
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
            checkpoint(fd, sidecar, plan)
            raise
        if plan.fatal is not None:
            if isinstance(plan.fatal, DiskFull):
                remove(partial, sidecar)
            else:
                checkpoint(fd, sidecar, plan)
            raise plan.fatal
        if not plan.complete:
            checkpoint(fd, sidecar, plan)
            raise unavailable(plan)
        if not trusted_manifest:
            check_whole(fd, manifest, partial, sidecar)
        commit(fd, partial, dest)
        sidecar.unlink(missing_ok=True)
    except OSError as exc:
        if is_disk_full(exc):
            remove(partial, sidecar)
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
    plan: FetchState,
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
            checkpoint(fd, sidecar, plan)
            checkpointed, last_checkpoint = count, now
    for thread in threads:
        thread.join()
