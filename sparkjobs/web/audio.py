"""`GET /audio/{sha256}`: an audio artifact streamed from a node that holds it.

The request's Range header is passed to that node's artifact server and its 206
answer streamed back as it comes, so a player can seek without the page's node
holding a copy. The artifacts token (if any) is added here and never reaches the
browser.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import httpx
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool
from starlette.responses import PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from sparkjobs.artifacts.locate import endpoint, find
from sparkjobs.errors import BadInput, SparkjobsError

if TYPE_CHECKING:
    from starlette.requests import Request

    from sparkjobs.web.state import WebState

log = logging.getLogger(__name__)

PASSED_HEADERS = ("content-length", "content-range", "accept-ranges", "etag", "last-modified")
CONNECT_TIMEOUT_S = 3.0
READ_TIMEOUT_S = 30.0


async def audio(request: Request) -> Response:
    """Stream one audio artifact (Range honoured) from the first node that answers."""
    state: WebState = request.app.state.web
    sha256 = request.path_params["sha256"]
    try:
        info = await run_in_threadpool(find, state.sessions, sha256)
    except BadInput as exc:
        return PlainTextResponse(f"{exc}\n", status_code=404)
    headers = {"Accept-Encoding": "identity"}
    if "range" in request.headers:
        headers["Range"] = request.headers["range"]
    token = state.config.artifacts.token
    if token is not None:
        headers["Authorization"] = f"Bearer {token.get_secret_value()}"
    problems = []
    for node in info.nodes:
        try:
            source = endpoint(state.config, node)
        except SparkjobsError as exc:
            problems.append(str(exc))
            continue
        client = httpx.AsyncClient(timeout=httpx.Timeout(READ_TIMEOUT_S, connect=CONNECT_TIMEOUT_S))
        try:
            upstream = await client.send(
                client.build_request("GET", f"{source.url}/v1/blobs/{sha256}", headers=headers),
                stream=True,
            )
        except httpx.HTTPError as exc:
            await client.aclose()
            problems.append(f"{node}: {exc}")
            continue
        if upstream.status_code not in (200, 206, 416):
            problems.append(f"{node}: HTTP {upstream.status_code}")
            await upstream.aclose()
            await client.aclose()
            continue
        passed = {k: v for k, v in upstream.headers.items() if k.lower() in PASSED_HEADERS}
        passed["accept-ranges"] = "bytes"
        passed["cache-control"] = "private, max-age=86400"

        async def close(
            upstream: httpx.Response = upstream, client: httpx.AsyncClient = client
        ) -> None:
            await upstream.aclose()
            await client.aclose()

        return StreamingResponse(
            upstream.aiter_raw(), status_code=upstream.status_code, headers=passed,
            media_type=info.media_type, background=BackgroundTask(close),
        )  # fmt: skip
    log.warning("audio %s: no node delivered it: %s", sha256, "; ".join(problems))
    where = ", ".join(info.nodes) or "no node"
    return PlainTextResponse(
        f"artifact {sha256} is held by {where}, and no artifact server answered\n",
        status_code=502,
    )


routes = [Route("/audio/{sha256:str}", audio, methods=["GET"])]
