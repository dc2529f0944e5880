"""The run page and JSON API: one Starlette app built from the config.

`create_app(config)` wires the routes of each concern (pages, api, audio), the
templates shipped with the package, and the auth rule of `sparkjobs.web.auth`;
`serve(config)` runs it under uvicorn on the configured address.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.responses import PlainTextResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from sparkjobs.config import is_loopback
from sparkjobs.web.auth import MAX_HEADER_BYTES, AuthMiddleware, Credentials
from sparkjobs.web.state import Places, Readings, WebState, line_places, published_readings
from sparkjobs.web.views import Links

if TYPE_CHECKING:
    from sqlalchemy.orm import Session, sessionmaker
    from starlette.requests import Request

    from sparkjobs.config import Config

HERE = Path(__file__).parent


def flower_url(config: Config) -> str:
    """Where people reach Flower: the configured URL, else its bind address."""
    if config.web.flower_url is not None:
        return str(config.web.flower_url).rstrip("/")
    address = str(config.flower.address)
    host = f"[{address}]" if ":" in address else address
    return f"http://{host}:{config.flower.port}"


def public_url(config: Config) -> str:
    """Where people reach the run page: the configured URL, else its bind address."""
    if config.web.public_url is not None:
        return str(config.web.public_url).rstrip("/")
    address = str(config.web.address)
    host = f"[{address}]" if ":" in address else address
    return f"http://{host}:{config.web.port}"


def create_app(
    config: Config,
    *,
    sessions: sessionmaker[Session] | None = None,
    readings: Readings | None = None,
    places: Places | None = None,
    watch: bool = False,
) -> Starlette:
    """The run page and API of `config`.

    Args:
        sessions: the store (default: opened from `config.database`).
        readings: where the services' health comes from (default: the readings the
            workers publish in Redis; tests give their own).
        places: where a run's waiting steps stand in line (default: read in Redis).
        watch: also run the alert watcher (`sparkjobs web` does; tests need not).
    """
    from sparkjobs.web import pages
    from sparkjobs.web.api import routes as api_routes
    from sparkjobs.web.audio import routes as audio_routes
    from sparkjobs.web.speech import routes as speech_routes

    if sessions is None:
        from sparkjobs.store.engine import open_store

        sessions = open_store(config.database)
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    templates.env.filters["short_time"] = pages.short_time
    templates.env.filters["seconds"] = pages.seconds
    state = WebState(
        config, sessions, templates, Links(flower_url(config)),
        readings or published_readings, places or line_places,
    )  # fmt: skip

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        watcher = None
        if watch and config.alerts.webhook_url is not None:
            from sparkjobs.observe.alerts import Watcher

            watcher = Watcher(config, sessions, public_url(config)).start()
        try:
            yield
        finally:
            if watcher is not None:
                watcher.stop()

    routes = [
        Route("/healthz", _healthz),
        *pages.routes,
        *speech_routes,  # before the API's /api/runs/{run_id}: its path is longer
        *api_routes,
        *audio_routes,
        Mount("/static", StaticFiles(directory=str(HERE / "static")), name="static"),
    ]
    credentials = Credentials.from_config(config.web)
    required = config.web.needs_auth or not is_loopback(config.web.address)
    app = Starlette(
        routes=routes,
        middleware=[Middleware(AuthMiddleware, credentials=credentials, required=required)],
        lifespan=lifespan,
    )
    app.state.web = state
    return app


async def _healthz(request: Request) -> PlainTextResponse:
    return PlainTextResponse("ok\n")


def serve(config: Config) -> None:
    """Run the run page and API until stopped, bound as configured."""
    import uvicorn

    from sparkjobs.worker.process import await_schema

    await_schema(config)
    app = create_app(config, watch=True)
    uvicorn.run(
        app, host=str(config.web.address), port=config.web.port, log_level="info",
        proxy_headers=False, server_header=False,
        # h11 bounds what it buffers of an unfinished request (httptools takes any
        # size); the auth middleware refuses complete ones with too many header bytes.
        http="h11", h11_max_incomplete_event_size=2 * MAX_HEADER_BYTES,
    )  # fmt: skip
