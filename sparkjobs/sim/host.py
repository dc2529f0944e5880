"""One process serving any set of simulated services, each on its configured address.

Each service gets its own listening socket. While "loading" (loading_s) the socket
is bound but not listening, so connections are refused, as vLLM does while it loads
its model; with `refuse` it never listens. An Orpheus service brings up its
completions backend too (at backend_url), unless that is down or served elsewhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from sparkjobs.config.model import Config
from sparkjobs.config.sections import ServiceConfig, SimProfile
from sparkjobs.errors import UnknownService
from sparkjobs.sim.base import SimService
from sparkjobs.sim.ollama import OllamaSim
from sparkjobs.sim.orpheus import OrpheusSim
from sparkjobs.sim.qwen_clone import QwenCloneSim
from sparkjobs.sim.vllm import VllmSim

log = logging.getLogger("sparkjobs.sim")
SHUTDOWN_GRACE_S = 0.5
# Turns of the loop, this long each, that the shutdown gives sockets to close.
CLOSE_TURNS = 20
CLOSE_TURN_S = 0.01
_RATES = ("error_rate", "hang_rate", "midstream_error_rate")
# An Orpheus backend is a plain vLLM, whatever server the front-end's profile plays.
_PLAIN_VLLM: dict[str, Any] = {
    "refuse": False, "html": False, "like": "vllm", "served_models": None,
    **dict.fromkeys(("health_route", "stream_usage", "metric_names", "context_tokens",
                     "any_model")),
}  # fmt: skip


@dataclass
class Served:
    """One listening simulator: what it plays, and where."""

    name: str
    sim: SimService
    host: str
    port: int
    delay_s: float = 0.0
    refuse: bool = False

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def describe(self) -> str:
        state = " (refusing connections)" if self.refuse else (
            f" (loading for {self.delay_s:g} s: connections refused until then)"
            if self.delay_s else "")  # fmt: skip
        return f"simulator {self.name}: {self.sim.label} at {self.url}{state}"


def profile_of(config: Config, name: str, overrides: Mapping[str, Any]) -> SimProfile:
    """The service's [sim.<name>] profile with the command-line overrides on top."""
    base = config.sim.get(name, SimProfile())
    return SimProfile.model_validate({**base.model_dump(), **overrides})


class SimHost:
    """Serves the named services' simulators until `stop()`.

    Args:
        config: the cluster config.
        names: services to simulate (default: all configured).
        overrides: SimProfile fields applied to every one of them.
        any_port: bind port 0 instead of the configured ports (tests); the `served`
            list then says where each one landed.
        with_backend: also serve an Orpheus service's completions backend.
    """

    def __init__(
        self,
        config: Config,
        names: Iterable[str] = (),
        overrides: Mapping[str, Any] | None = None,
        *,
        any_port: bool = False,
        with_backend: bool = True,
    ) -> None:
        chosen = list(names) or list(config.services)
        unknown = [n for n in chosen if n not in config.services]
        if unknown:
            raise UnknownService(
                f"cannot simulate unknown service(s) {', '.join(map(repr, unknown))}; "
                f"known: {', '.join(config.services) or 'none'} (see [services] in the config)"
            )
        self.config = config
        self.names = chosen
        self.overrides = dict(overrides or {})
        self.any_port = any_port
        self.with_backend = with_backend
        self.served: list[Served] = []
        self._runners: list[web.AppRunner] = []
        self._starts: list[asyncio.Task[None]] = []
        self._refusing: list[socket.socket] = []

    def __getitem__(self, name: str) -> Served:
        return next(s for s in self.served if s.name == name)

    async def start(self) -> list[Served]:
        """Bind every socket and listen; those with a loading time listen later."""
        for name in self.names:
            service = self.config.services[name]
            profile = profile_of(self.config, name, self.overrides)
            if service.kind == "orpheus":
                await self._start_orpheus(name, service, profile)
            else:
                factory: Callable[..., SimService] = {
                    "openai": VllmSim, "ollama": OllamaSim, "qwen-clone": QwenCloneSim,
                }[service.kind]  # fmt: skip
                await self._serve(name, factory(name, service, profile), str(service.url), profile)
        return self.served

    async def _start_orpheus(self, name: str, service: ServiceConfig, profile: SimProfile) -> None:
        backend_url = str(service.backend_url).rstrip("/") if service.backend_url else None
        if backend_url is not None and self.with_backend and not profile.backend_down:
            backend_service = service.model_copy(update={"kind": "openai", "models": ("orpheus",)})
            # The faults in the profile are the front-end's; the backend only borrows its
            # speeds (a backend fault is `backend_down`).
            healthy = profile.model_copy(update=dict.fromkeys(_RATES, 0.0) | _PLAIN_VLLM)
            backend = VllmSim(f"{name}-backend", backend_service, healthy.for_kind("orpheus"),
                              any_model=True, label="Orpheus completions backend")  # fmt: skip
            served = await self._serve(f"{name}-backend", backend, backend_url, profile)
            backend_url = served.url
        front = OrpheusSim(name, service, profile, backend_url)
        await self._serve(name, front, str(service.url), profile)

    async def _serve(self, name: str, sim: SimService, url: str, profile: SimProfile) -> Served:
        from yarl import URL

        where = URL(url)
        host = where.host or "127.0.0.1"
        sock = _bind(host, 0 if self.any_port else (where.port or 80))
        served = Served(name, sim, host, sock.getsockname()[1],
                        profile.loading_s / profile.time_scale, profile.refuse)  # fmt: skip
        self.served.append(served)
        # Requests still running at shutdown (hung ones) get a short grace, then drop.
        runner = web.AppRunner(sim.app, handler_cancellation=True, access_log=None,
                               shutdown_timeout=SHUTDOWN_GRACE_S)  # fmt: skip
        await runner.setup()
        self._runners.append(runner)
        if profile.refuse:
            # Bound but never listening: the kernel refuses connections, the port stays ours.
            self._refusing.append(sock)
        elif not served.delay_s:
            await web.SockSite(runner, sock).start()
        else:
            start = self._listen_later(runner, sock, served.delay_s, served.describe())
            self._starts.append(asyncio.get_running_loop().create_task(start))
        log.info("%s", served.describe())
        return served

    async def _listen_later(
        self, runner: web.AppRunner, sock: socket.socket, delay_s: float, what: str
    ) -> None:
        await asyncio.sleep(delay_s)
        await web.SockSite(runner, sock).start()
        log.info("%s: loaded, now answering", what)

    async def ready(self) -> None:
        """Wait until every simulator that will listen is listening."""
        await asyncio.gather(*self._starts)

    async def stop(self) -> None:
        """Stop listening, end requests in progress, close the simulators."""
        for task in self._starts:
            task.cancel()
        servers = [runner.server for runner in self._runners if runner.server is not None]
        for runner in self._runners:
            await runner.cleanup()
        for sock in self._refusing:
            sock.close()
        # A connection a client kept open is closed by the server above, and its socket
        # on a later turn of the loop; one accepted while the server shut down (a
        # worker's health probe) was never seen by the shutdown. Close what is left and
        # give the loop its turns before the caller may stop it: a socket left open
        # would be reported when collected.
        for _ in range(CLOSE_TURNS):
            await asyncio.sleep(CLOSE_TURN_S)
            transports = [handler.transport for server in servers for handler in server.connections]
            left = [t for t in transports if t is not None]  # None once the socket closed
            if not left:
                break
            for transport in left:
                transport.abort()
        await asyncio.sleep(0)  # the last aborts' sockets close on this turn


def _bind(host: str, port: int) -> socket.socket:
    family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as exc:
        sock.close()
        raise OSError(
            exc.errno,
            f"cannot bind {host}:{port} for a simulator: {exc.strerror} "
            "(is a real server or another simulator there?)",
        ) from exc
    sock.setblocking(False)
    return sock


async def serve_until_stopped(host: SimHost, echo: Callable[[str], None]) -> None:
    """Start `host`, print what it serves, and run until SIGINT or SIGTERM."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        for served in await host.start():
            echo(served.describe())
        await stop.wait()
    finally:
        echo("stopping the simulators")
        await host.stop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(ValueError):
                loop.remove_signal_handler(signum)
