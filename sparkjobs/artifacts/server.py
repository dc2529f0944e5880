"""The artifact server of one node: its store over HTTP, zero-copy, behind a token.

aiohttp's FileResponse sends blobs with sendfile(2) and answers Range requests (206,
416). Only blobs named by a sha256 and lying inside the node's store are served; every
request needs the `[artifacts] token` of the config when one is set (and one must be
set off loopback). It runs on the stock asyncio loop: uvloop has no sendfile.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import re
import signal
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING

from aiohttp import web

from sparkjobs.artifacts.manifest import build_manifest, manifest_path, write_manifest
from sparkjobs.artifacts.register import DEFAULT_MEDIA_TYPE, Upload, node_root, record
from sparkjobs.config.binds import bind_addresses
from sparkjobs.config.values import is_loopback
from sparkjobs.errors import (
    ArtifactUnavailable,
    ConfigError,
    CorruptArtifact,
    DiskFull,
    SparkjobsError,
    UnknownArtifact,
)
from sparkjobs.store.artifacts import artifact_path

if TYPE_CHECKING:
    from sqlalchemy.orm import Session, sessionmaker

    from sparkjobs.config import Config

log = logging.getLogger(__name__)

SHA256_PATTERN = "[0-9a-f]{64}"
_SHA256 = re.compile(f"^{SHA256_PATTERN}$")
SHA256_HEADER = "X-Sparkjobs-Sha256"
_SEND_CHUNK_BYTES = 1 << 20  # only when sendfile is unavailable
_RECEIVE_CHUNK_BYTES = 1 << 20
# On stop, transfers in flight get this long; a fetcher resumes the rest elsewhere.
SHUTDOWN_GRACE_S = 2.0

_CONFIG: web.AppKey[Config] = web.AppKey("config")
_NODE: web.AppKey[str] = web.AppKey("node")
_ROOT: web.AppKey[Path] = web.AppKey("root")
_TOKEN: web.AppKey[bytes | None] = web.AppKey("token")
_SESSIONS: web.AppKey[sessionmaker[Session]] = web.AppKey("sessions")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def token_bytes(config: Config) -> bytes | None:
    token = config.artifacts.token
    return None if token is None else token.get_secret_value().encode()


def make_app(
    config: Config, node: str, *, sessions: sessionmaker[Session] | None = None
) -> web.Application:
    """The artifact server of `node`, on `config`'s store and database.

    Raises:
        ConfigError: a non-loopback address without `[artifacts] token`.
    """
    token = token_bytes(config)
    if token is None and not all(is_loopback(a) for a in bind_addresses(config, node)):
        raise ConfigError(
            f"node {node!r} would serve artifacts off loopback without a token. "
            "Fix: set [artifacts] token in the config"
        )
    app = web.Application(middlewares=[_authenticate])
    app[_CONFIG] = config
    app[_NODE] = node
    app[_ROOT] = node_root(config, node)
    app[_TOKEN] = token
    if sessions is None:  # an engine connects only when first used
        from sparkjobs.store.engine import open_store

        sessions = open_store(config.database)
    app[_SESSIONS] = sessions
    app.router.add_get("/v1/health", _health)
    app.router.add_get(f"/v1/blobs/{{sha256:{SHA256_PATTERN}}}", _blob)
    app.router.add_get(f"/v1/manifests/{{sha256:{SHA256_PATTERN}}}", _manifest)
    app.router.add_put("/v1/blobs", _upload)
    app.router.add_post(f"/v1/pull/{{sha256:{SHA256_PATTERN}}}", _pull)
    app.on_cleanup.append(_close_sessions)
    return app


@web.middleware
async def _authenticate(request: web.Request, handler: Handler) -> web.StreamResponse:
    token = request.app[_TOKEN]
    if token is not None:
        header = request.headers.get("Authorization", "")
        if not header:
            raise web.HTTPUnauthorized(
                text="a token is required\n", headers={"WWW-Authenticate": "Bearer"}
            )
        scheme, _, given = header.partition(" ")
        # Constant time: the comparison must not tell how much of a guess was right.
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.encode(), token):
            raise web.HTTPForbidden(text="wrong token\n")
    return await handler(request)


def _sessions(app: web.Application) -> sessionmaker[Session]:
    return app[_SESSIONS]


async def _close_sessions(app: web.Application) -> None:
    bind = app[_SESSIONS].kw.get("bind")
    if bind is not None:
        bind.dispose()


def safe_blob_path(root: Path, sha256: str) -> Path | None:
    """The blob's path if it is a regular file inside `root`, reached without symlinks."""
    if not _SHA256.match(sha256):
        return None
    path = artifact_path(root, sha256)
    try:
        real_root = root.resolve(strict=True)
        if path.is_symlink() or path.parent.is_symlink() or not path.is_file():
            return None
        if not path.resolve(strict=True).is_relative_to(real_root):
            return None
    except OSError:
        return None
    return path


async def _health(request: web.Request) -> web.Response:
    return web.json_response({"node": request.app[_NODE], "status": "ok"})


async def _blob(request: web.Request) -> web.StreamResponse:
    path = safe_blob_path(request.app[_ROOT], request.match_info["sha256"])
    if path is None:
        raise web.HTTPNotFound(text="no such artifact on this node\n")
    ranges = request.headers.get("Range")
    # Checked here, strictly: a malformed range must get a 4xx, never the whole file
    # that a lenient parser would send instead (aiohttp answers `bytes=-0` with all).
    if ranges is not None and not _one_range(ranges):
        raise web.HTTPRequestRangeNotSatisfiable(
            text="give one range: bytes=FIRST-[LAST] or bytes=-SUFFIX (SUFFIX > 0)\n",
            headers={"Content-Range": f"bytes */{path.stat().st_size}"},
        )
    return web.FileResponse(
        path,
        chunk_size=_SEND_CHUNK_BYTES,
        headers={"Content-Type": "application/octet-stream", "Cache-Control": "immutable"},
    )


_RANGE = re.compile(r"^bytes=(?:(\d{1,19})-(\d{0,19})|-(\d{1,19}))$")


def _one_range(value: str) -> bool:
    """Whether `value` is one well-formed byte range (satisfiability is aiohttp's to judge)."""
    match = _RANGE.match(value.strip())
    if match is None:
        return False
    first, last, suffix = match.groups()
    if suffix is not None:
        return int(suffix) > 0
    return not last or int(last) >= int(first)


async def _manifest(request: web.Request) -> web.Response:
    root: Path = request.app[_ROOT]
    sha256 = request.match_info["sha256"]
    blob = safe_blob_path(root, sha256)
    if blob is None:
        raise web.HTTPNotFound(text="no such artifact on this node\n")
    path = manifest_path(root, sha256)
    if not path.is_file():
        # A blob stored without a manifest (by the store's writer): describe it now. A
        # fetcher checks the whole file against its sha256 when SQL has no digest.
        loop = asyncio.get_running_loop()
        manifest = await loop.run_in_executor(None, build_manifest, blob)
        if manifest.sha256 != sha256:
            raise web.HTTPNotFound(text="this node's copy is damaged\n")
        await loop.run_in_executor(None, write_manifest, root, manifest)
    return web.Response(body=path.read_bytes(), content_type="application/json")


async def _upload(request: web.Request) -> web.Response:
    expected = request.headers.get(SHA256_HEADER)
    if expected is not None and not _SHA256.match(expected):
        raise web.HTTPBadRequest(text=f"{SHA256_HEADER} must be 64 lowercase hex digits\n")
    media_type = request.content_type or DEFAULT_MEDIA_TYPE
    root: Path = request.app[_ROOT]
    loop = asyncio.get_running_loop()
    try:
        upload = await loop.run_in_executor(None, Upload, root, request.content_length)
    except DiskFull as exc:
        raise web.HTTPInsufficientStorage(text=f"{exc}\n") from exc
    except OSError as exc:  # e.g. EFBIG: a length no file on this filesystem may have
        raise web.HTTPRequestEntityTooLarge(
            max_size=0,
            actual_size=request.content_length or 0,
            text=f"cannot hold {request.content_length} bytes here ({exc.strerror})\n",
        ) from exc
    try:
        async for data in request.content.iter_chunked(_RECEIVE_CHUNK_BYTES):
            await loop.run_in_executor(None, upload.write, data)
        stored, manifest = await loop.run_in_executor(None, upload.finish, expected)
    except DiskFull as exc:
        raise web.HTTPInsufficientStorage(text=f"{exc}\n") from exc
    except CorruptArtifact as exc:
        raise web.HTTPUnprocessableEntity(text=f"{exc}\n") from exc
    except ConnectionResetError as exc:  # the client went before its last byte
        log.info("an upload to %s was cut short; nothing stored", request.app[_NODE])
        raise web.HTTPBadRequest(text="the upload was cut short; nothing was stored\n") from exc
    finally:
        upload.discard()
    node = request.app[_NODE]
    sessions = _sessions(request.app)
    registered = await loop.run_in_executor(
        None, record, sessions, root, node, stored, manifest, media_type
    )
    log.info("stored artifact %s (%d bytes) on %s", registered.sha256, stored.size_bytes, node)
    return web.json_response(
        {
            "sha256": registered.sha256,
            "size_bytes": registered.size_bytes,
            "node": node,
            "manifest_sha256": registered.manifest_sha256,
        },
        status=201,
    )


async def _pull(request: web.Request) -> web.Response:
    from sparkjobs.artifacts.ensure import ensure_local

    config = request.app[_CONFIG]
    node = request.app[_NODE]
    sha256 = request.match_info["sha256"]
    loop = asyncio.get_running_loop()
    try:
        path = await loop.run_in_executor(None, lambda: ensure_local(config, sha256, node))
    except UnknownArtifact as exc:
        raise web.HTTPNotFound(text=f"{exc}\n") from exc
    except DiskFull as exc:
        raise web.HTTPInsufficientStorage(text=f"{exc}\n") from exc
    except (ArtifactUnavailable, CorruptArtifact) as exc:
        raise web.HTTPBadGateway(text=f"{exc}\n") from exc
    except SparkjobsError as exc:
        raise web.HTTPInternalServerError(text=f"{exc}\n") from exc
    return web.json_response({"sha256": sha256, "node": node, "path": str(path)})


async def serve(
    config: Config,
    node: str,
    *,
    stop: asyncio.Event,
    port: int | None = None,
    on_ready: Callable[[list[str]], None] | None = None,
) -> None:
    """Serve `node`'s store until `stop` is set.

    Args:
        port: overrides the config's port (0: any free port).
        on_ready: called with the URLs once every socket is bound.
    """
    app = make_app(config, node)
    runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=SHUTDOWN_GRACE_S)
    await runner.setup()
    try:
        listen_port = config.artifacts_port(node) if port is None else port
        for address in bind_addresses(config, node):
            site = web.TCPSite(runner, address, listen_port, reuse_address=True)
            await site.start()
        urls = [f"http://{_host(a[0])}:{a[1]}" for a in runner.addresses]
        if on_ready is not None:
            on_ready(urls)
        await stop.wait()
    finally:
        await runner.cleanup()


def _host(address: str) -> str:
    return f"[{address}]" if ":" in address else address


READY_LINE = "artifacts: serving"


def run_server(config: Config, node: str, *, port: int | None = None) -> None:
    """Serve until SIGTERM or SIGINT (the `sparkjobs artifacts serve` command).

    Prints one line, `artifacts: serving <node> at <url>...`, once it listens.
    """

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)

        def ready(urls: list[str]) -> None:
            print(f"{READY_LINE} {node} at {' '.join(urls)}", flush=True)

        await serve(config, node, stop=stop, port=port, on_ready=ready)

    asyncio.run(main())


class ServerThread:
    """The artifact server in a background thread: how a worker serves its node.

    `start()` returns once the sockets are bound (or raises what stopped it);
    `stop()` closes them and joins the thread.
    """

    def __init__(self, config: Config, node: str, *, port: int | None = None):
        self._config, self._node, self._port = config, node, port
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self.urls: list[str] = []
        self._thread = threading.Thread(target=self._run, name=f"artifacts-{node}", daemon=True)

    def start(self) -> ServerThread:
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            raise self._error
        return self

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join()

    def _run(self) -> None:
        async def main() -> None:
            self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()

            def ready(urls: list[str]) -> None:
                self.urls = urls
                self._ready.set()

            await serve(self._config, self._node, stop=self._stop, port=self._port, on_ready=ready)

        try:
            asyncio.run(main())
        except BaseException as exc:
            self._error = exc
        finally:
            self._ready.set()


def describe_error(body: bytes) -> str:
    """The first line of a server's error text, for messages."""
    text = body.decode(errors="replace").strip()
    try:
        return str(json.loads(text).get("error", text))
    except (ValueError, AttributeError):
        return text.splitlines()[0] if text else ""
