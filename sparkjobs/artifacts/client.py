"""Talking to a node's artifact server as a client: uploading a file (`put`) and asking
a node to pull an artifact ahead of need (`push`)."""

from __future__ import annotations

import hashlib
import http.client
import json
import mimetypes
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sparkjobs.artifacts.locate import Endpoint, check_sha256, endpoint
from sparkjobs.artifacts.server import SHA256_HEADER
from sparkjobs.errors import (
    ArtifactUnavailable,
    BadInput,
    ConfigError,
    CorruptArtifact,
    DiskFull,
    UnknownArtifact,
)

if TYPE_CHECKING:
    from sparkjobs.config import Config

UPLOAD_BLOCK_BYTES = 1 << 20
CONNECT_TIMEOUT_S = 5.0


def put_file(
    config: Config, path: Path, node: str, *, media_type: str | None = None
) -> dict[str, Any]:
    """Upload `path` to `node`'s store; the server checks it against its sha256.

    Returns:
        The server's answer: sha256, size_bytes, node, manifest_sha256.

    Raises:
        BadInput: the file cannot be read.
        ArtifactUnavailable: the node's artifact server did not answer.
        DiskFull, CorruptArtifact, ConfigError (the token was refused).
    """
    server = endpoint(config, node)
    try:
        size = path.stat().st_size
        sha256 = _sha256_of(path)
    except OSError as exc:
        raise BadInput(f"cannot read {path}: {exc.strerror}. Fix: name a readable file") from exc
    kind = media_type or mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    headers = {
        "Content-Type": kind,
        "Content-Length": str(size),
        SHA256_HEADER: sha256,
        **_auth(config),
    }
    with path.open("rb") as body:
        status, answer = _request(server, "PUT", "/v1/blobs", headers, body=body, timeout_s=None)
    if status != 201:
        raise _error(server, status, answer, f"upload of {path}")
    result: dict[str, Any] = json.loads(answer)
    return result


def push(config: Config, sha256: str, node: str) -> dict[str, Any]:
    """Ask `node` to pull artifact `sha256` into its store (pre-staging); waits for it."""
    sha256 = check_sha256(sha256)
    server = endpoint(config, node)
    status, answer = _request(
        server, "POST", f"/v1/pull/{sha256}", _auth(config), body=None, timeout_s=None
    )
    if status != 200:
        raise _error(server, status, answer, f"push of {sha256}")
    result: dict[str, Any] = json.loads(answer)
    return result


def health(config: Config, node: str, *, timeout_s: float = 2.0) -> bool:
    """True when `node`'s artifact server answers its health check with the token."""
    try:
        status, _ = _request(
            endpoint(config, node), "GET", "/v1/health", _auth(config), None, timeout_s
        )
    except ArtifactUnavailable:
        return False
    return status == 200


def _auth(config: Config) -> dict[str, str]:
    token = config.artifacts.token
    return {} if token is None else {"Authorization": f"Bearer {token.get_secret_value()}"}


def _request(
    server: Endpoint,
    method: str,
    path: str,
    headers: dict[str, str],
    body: Any,
    timeout_s: float | None,
) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection(
        server.host, server.port, timeout=CONNECT_TIMEOUT_S, blocksize=UPLOAD_BLOCK_BYTES
    )
    try:
        connection.connect()
        if connection.sock is not None:
            connection.sock.settimeout(timeout_s)
        connection.request(method, path, body=body, headers=headers)
        response = connection.getresponse()
        return response.status, response.read()
    except (OSError, http.client.HTTPException) as exc:
        raise ArtifactUnavailable(
            f"the artifact server of node {server.node} ({server.url}) did not answer: {exc}. "
            f"Fix: start it (`sparkjobs worker --node {server.node}` or "
            f"`sparkjobs artifacts serve --node {server.node}`)"
        ) from exc
    finally:
        connection.close()


def _error(server: Endpoint, status: int, body: bytes, what: str) -> Exception:
    detail = body.decode(errors="replace").strip().splitlines()
    reason = (
        f"{what} to node {server.node} ({server.url}): HTTP {status} {detail[0] if detail else ''}"
    )
    if status in (401, 403):
        return ConfigError(f"{reason}. Fix: use the same [artifacts] token on every node")
    if status == 404:
        return UnknownArtifact(reason)
    if status == 507:
        return DiskFull(reason)
    if status == 422:
        return CorruptArtifact(reason)
    return ArtifactUnavailable(reason)


def _sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(UPLOAD_BLOCK_BYTES * 4):
            digest.update(chunk)
    return digest.hexdigest()
