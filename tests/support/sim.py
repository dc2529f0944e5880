"""Simulated model servers for tests: started in-process, on free loopback ports.

`sims(...)` starts a SimHost in a background event loop (ports chosen by the kernel)
and gives clients a ServiceConfig pointing at where each simulator landed.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
from pydantic import HttpUrl

from sparkjobs.backends import ServerClient, client_for
from sparkjobs.config.model import Config
from sparkjobs.config.sections import ServiceConfig
from sparkjobs.sim import SimHost

# Fast enough for tests, slow enough that the simulated shape still shows.
TEST_TIME_SCALE = 200.0


def sim_config(sim: Mapping[str, Mapping[str, Any]] | None = None, **services: Any) -> Config:
    """The seed's four services on loopback (ports are ignored: tests bind port 0)."""
    base: dict[str, Any] = {
        "gemma": {"node": "n1", "kind": "openai", "url": "http://127.0.0.1:1",
                  "models": ["gemma-4-26b-a4b"]},
        "qwen": {"node": "n1", "kind": "ollama", "url": "http://127.0.0.1:2",
                 "models": ["qwen2.5:32b"]},
        "orpheus": {"node": "n1", "kind": "orpheus", "url": "http://127.0.0.1:3",
                    "backend_url": "http://127.0.0.1:4",
                    "voices": ["tara", "leah", "jess", "leo", "dan", "mia", "zac", "zoe"]},
        "clone": {"node": "n1", "kind": "qwen-clone", "url": "http://127.0.0.1:5",
                  "models": ["faster-qwen3-tts"], "voices": ["default"]},
    }  # fmt: skip
    for name, changes in services.items():
        base[name] = {**base[name], **changes}
    return Config(
        nodes={"n1": {"bond_address": "127.0.0.1"}},
        services=base,
        sim={name: dict(profile) for name, profile in (sim or {}).items()},
    )


class RunningSims:
    """A SimHost serving in its own thread's event loop."""

    def __init__(self, host: SimHost) -> None:
        self.host = host
        self._clients: list[ServerClient] = []
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()
        self.call(host.start())

    def call(self, coro: Any) -> Any:
        """Run a coroutine on the simulators' loop and return its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=30)

    def ready(self) -> None:
        """Wait until every simulator listens (after its loading time)."""
        self.call(self.host.ready())

    def url(self, name: str) -> str:
        return self.host[name].url

    def service(self, name: str, **changes: Any) -> ServiceConfig:
        """The service's config, pointing at its simulator (and its backend's)."""
        service = self.host.config.services[name]
        update: dict[str, Any] = {"url": HttpUrl(self.url(name))}
        backend = [s for s in self.host.served if s.name == f"{name}-backend"]
        if backend:
            update["backend_url"] = HttpUrl(backend[0].url)
        return service.model_copy(update={**update, **changes})

    def client(self, name: str, **changes: Any) -> Any:
        """A sparkjobs client of the simulated service."""
        client: ServerClient = client_for(self.service(name, **changes), name=name)
        self._clients.append(client)
        return client

    def stats(self, name: str) -> dict[str, Any]:
        reply = httpx.get(f"{self.url(name)}/_sim/stats")
        reply.raise_for_status()
        data: dict[str, Any] = reply.json()
        return data

    def set_faults(self, name: str, **changes: Any) -> None:
        httpx.post(f"{self.url(name)}/_sim/faults", json=changes).raise_for_status()

    def stop(self) -> None:
        """Stop the simulators (once; later calls do nothing)."""
        if self.loop.is_closed():
            return
        for client in self._clients:
            client.close()
        self.call(self.host.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=10)
        self.loop.close()


StartSims = Callable[..., RunningSims]


@pytest.fixture
def start_sims() -> Iterator[StartSims]:
    """Start simulators: `start_sims(config=None, names=(), **profile_overrides)`."""
    running: list[RunningSims] = []

    def start(
        config: Config | None = None,
        names: tuple[str, ...] = (),
        with_backend: bool = True,
        **overrides: Any,
    ) -> RunningSims:
        overrides.setdefault("time_scale", TEST_TIME_SCALE)
        host = SimHost(config or sim_config(), names, overrides, any_port=True,
                       with_backend=with_backend)  # fmt: skip
        sims = RunningSims(host)
        running.append(sims)
        if not overrides.get("loading_s"):
            sims.ready()
        return sims

    yield start
    for sims in running:
        sims.stop()


@pytest.fixture
def sims(start_sims: StartSims) -> RunningSims:
    """All four seed services, simulated at TEST_TIME_SCALE."""
    return start_sims()


@contextmanager
def simulating(config: Config, time_scale: float = TEST_TIME_SCALE) -> Iterator[RunningSims]:
    """Every service of `config` simulated on its configured port at `time_scale`,
    ready when entered and stopped at exit."""
    sims = RunningSims(SimHost(config, (), {"time_scale": time_scale}))
    try:
        sims.ready()
        yield sims
    finally:
        sims.stop()
