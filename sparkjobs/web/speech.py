"""`GET /api/runs/{run_id}/audio`: a run's speech as one WAV, streamed (chunked) as each
piece is made, for a running or a finished run (docs/streaming.md). It answers under
the same token rules as every API route; a player reads its "unknown size" header to
the end of the stream.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING

from starlette.concurrency import run_in_threadpool
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from sparkjobs.backends.audio import wav_header
from sparkjobs.errors import BadInput, UnknownRun, Unreachable
from sparkjobs.runs.listen import follow_audio, speech_step
from sparkjobs.store.engine import reading
from sparkjobs.store.queries import get_run

if TYPE_CHECKING:
    from starlette.requests import Request

    from sparkjobs.config import Config
    from sparkjobs.web.state import WebState


def _speech_of(state: WebState, run_id: str) -> uuid.UUID:
    """The run's id once it is known to have speech to stream."""
    with reading(state.sessions) as session:
        run = get_run(session, run_id)
        if speech_step(run) is None:
            raise BadInput(
                f"run {run.id} ({run.job}) has no speak or clone step: there is no audio to "
                "stream; GET /api/runs/{run_id} gives its text"
            )
        return run.id


def _wav(config: Config, run_id: uuid.UUID) -> Iterator[bytes]:
    header_sent = False
    for heard in follow_audio(config, run_id):
        if not header_sent:
            yield wav_header(None, heard.sample_rate, heard.channels, heard.sample_width)
            header_sent = True
        yield heard.pcm


async def run_audio(request: Request) -> Response:
    """Stream the speech of the run named in the path as it is made."""
    state: WebState = request.app.state.web
    try:
        run_id = await run_in_threadpool(_speech_of, state, request.path_params["run_id"])
    except UnknownRun as exc:
        return JSONResponse({"error": str(exc)}, status_code=404)
    except BadInput as exc:
        return JSONResponse({"error": str(exc)}, status_code=400)
    except Unreachable as exc:
        return JSONResponse({"error": str(exc)}, status_code=503)
    return speech_response(state.config, run_id)


def speech_response(config: Config, run_id: uuid.UUID, status_code: int = 200) -> Response:
    """The speech of run `run_id` as a WAV streamed as it is made; its headers name
    the run (`x-sparkjobs-run-id`, and `location` its page)."""
    headers = {"cache-control": "no-store", "x-sparkjobs-run-id": str(run_id),
               "location": f"/runs/{run_id}"}  # fmt: skip
    return StreamingResponse(
        _wav(config, run_id), status_code=status_code, media_type="audio/wav", headers=headers
    )


routes = [Route("/api/runs/{run_id:str}/audio", run_audio, methods=["GET"])]
