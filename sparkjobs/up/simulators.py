"""The simulators `sparkjobs up` starts: one per configured service that does not answer.

A service that accepts a TCP connection at its URL is taken to be real and left alone.
"""

from __future__ import annotations

import http.client
import socket
import sys
from collections.abc import Callable
from urllib.parse import urlsplit

from sparkjobs.config.model import Config
from sparkjobs.config.sections import ServiceConfig
from sparkjobs.up.component import Component, Stage

CONNECT_TIMEOUT_S = 0.3
HEALTH_PATHS = {"openai": "/health", "ollama": "/", "orpheus": "/v1/audio/voices",
                "qwen-clone": "/health"}  # fmt: skip
LABELS = {"openai": "vLLM", "ollama": "Ollama", "orpheus": "Orpheus TTS",
          "qwen-clone": "Qwen3-TTS clone"}  # fmt: skip


def answers(url: str, timeout_s: float = CONNECT_TIMEOUT_S) -> bool:
    """True when something accepts a TCP connection at the URL's host and port."""
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 80),
                                      timeout=timeout_s):  # fmt: skip
            return True
    except OSError:
        return False


def health_probe(url: str, path: str, timeout_s: float = 1.0) -> Callable[[], bool]:
    """A probe that is True once GET `path` answers 2xx."""
    parts = urlsplit(url)

    def probe() -> bool:
        connection = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port,
                                                timeout=timeout_s)  # fmt: skip
        try:
            connection.request("GET", path)
            return 200 <= connection.getresponse().status < 300
        except OSError:
            return False
        finally:
            connection.close()

    return probe


def components(config: Config) -> list[Component]:
    """One simulator component per configured service with nothing at its URL."""
    found: list[Component] = []
    for name, service in config.services.items():
        url = str(service.url)
        if answers(url):
            continue
        argv = [sys.executable, "-m", "sparkjobs", "sim", "--service", name]
        if _real_backend(service):
            argv.append("--no-backend")
        found.append(Component(
            name=f"sim {name}",
            argv=tuple(argv),
            where=f"simulated {LABELS[service.kind]} at {url.rstrip('/')}",
            stage=Stage.SIMULATORS,
            ready=health_probe(url, HEALTH_PATHS[service.kind]),
            simulated=True,
        ))  # fmt: skip
    return found


def _real_backend(service: ServiceConfig) -> bool:
    return service.backend_url is not None and answers(str(service.backend_url))
