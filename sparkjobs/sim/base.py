"""What every simulated service has: an aiohttp app, its profile, faults and stats.

Besides its server's routes, each app answers `GET /_sim/stats` (requests in flight,
the most seen at once), `POST /_sim/stats/reset` and `POST /_sim/faults` (change
fault rates while running). Those routes are the simulator's own, not the server's.
With `html` in its profile every other route answers 200 with a web page, as a URL
that reaches a web server or a proxy's login page does.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any, ClassVar

from aiohttp import web

from sparkjobs.config.sections import ServiceConfig, SimProfile
from sparkjobs.sim.faults import Fate, Faults, Stats

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
log = logging.getLogger("sparkjobs.sim")

HANG_S = 3600.0  # "never": ended by the client hanging up or by shutdown
WEB_PAGE = (
    "<!DOCTYPE html>\n<html>\n<head>\n<title>Welcome to nginx!</title>\n</head>\n<body>\n"
    "<h1>Welcome to nginx!</h1>\n<p>If you see this page, the nginx web server is "
    "successfully installed and working.</p>\n</body>\n</html>\n"
)


class RequestProblem(Exception):
    """A request the simulated server rejects, with the status it would use and, for
    servers that give one, the error's type (e.g. `exceed_context_size_error`)."""

    def __init__(self, status: int, message: str, kind: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.kind = kind


class SimService:
    """Base of the simulators: one aiohttp app per simulated server."""

    label: str = "server"
    health_path: ClassVar[str] = "/health"

    def __init__(self, name: str, service: ServiceConfig, profile: SimProfile) -> None:
        self.name = name
        self.service = service
        self.faults = Faults(profile.for_kind(service.kind))
        self.stats = Stats()
        self.app = web.Application(middlewares=[self._web_page])
        self.app.add_routes(self.routes())
        self.app.add_routes([
            web.get("/_sim/stats", self._stats),
            web.post("/_sim/stats/reset", self._reset),
            web.post("/_sim/faults", self._set_faults),
        ])  # fmt: skip
        self.app.on_cleanup.append(self._cleanup)

    @property
    def profile(self) -> SimProfile:
        return self.faults.profile

    def routes(self) -> list[web.RouteDef]:
        """The server's own routes."""
        raise NotImplementedError

    def error(self, status: int, message: str) -> web.StreamResponse:
        """An error in the simulated server's own shape."""
        return web.json_response({"error": message}, status=status)

    def refuse(self, problem: RequestProblem) -> web.StreamResponse:
        """A rejected request's answer (servers that type their errors override it)."""
        return self.error(problem.status, problem.message)

    @web.middleware
    async def _web_page(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if self.profile.html and not request.path.startswith("/_sim/"):
            return web.Response(text=WEB_PAGE, content_type="text/html")
        return await handler(request)

    async def close(self) -> None:
        """Release what the service holds (engine loops)."""

    def work(self, handler: Handler) -> Handler:
        """Wrap a generation route: count it in flight, turn problems into errors."""

        async def tracked(request: web.Request) -> web.StreamResponse:
            self.stats.enter()
            try:
                return await handler(request)
            except RequestProblem as problem:
                return self.refuse(problem)
            finally:
                self.stats.leave()

        return tracked

    def draw(self, *, streaming: bool) -> Fate:
        """This request's fate; logs the faults it injects."""
        fate = self.faults.draw(self.stats, streaming=streaming)
        if fate is not Fate.ANSWER:
            log.info("simulator %s: injecting %s", self.name, fate.value)
        return fate

    async def hang(self) -> None:
        """Never answer (until the client hangs up or the simulator stops)."""
        await asyncio.sleep(HANG_S)

    async def body(self, request: web.Request) -> dict[str, Any]:
        """The request's JSON object, or a 400 in the server's shape."""
        try:
            data = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise RequestProblem(400, f"request body is not valid JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise RequestProblem(400, "request body must be a JSON object")
        return data

    async def _stats(self, request: web.Request) -> web.Response:
        return web.json_response({
            "service": self.name, "simulator": self.label, "kind": self.service.kind,
            **self.stats.as_json(), "profile": self.profile.model_dump(),
        })  # fmt: skip

    async def _reset(self, request: web.Request) -> web.Response:
        self.stats.reset()
        return web.json_response(self.stats.as_json())

    async def _set_faults(self, request: web.Request) -> web.Response:
        try:
            changes = await request.json()
            profile = self.faults.update(dict(changes))
        except (ValueError, TypeError) as exc:
            return web.json_response({"error": str(exc)}, status=400)
        log.info("simulator %s: faults now %s", self.name, changes)
        return web.json_response(profile.model_dump())

    async def _cleanup(self, app: web.Application) -> None:
        await self.close()
