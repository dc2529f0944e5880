"""The JSON API (trigger `api`): submit speak, clone, chat and job runs; list, show,
cancel and rerun runs; pause and resume jobs. docs/api.md documents every route.

Payloads are checked by pydantic (422, naming the field); the jobs they describe are
built and checked by `sparkjobs.runs.adhoc` exactly as `sparkjobs submit` does, so the
API refuses the same things with the same messages (400). Runs are shaped by
`sparkjobs.runs.info`, as `sparkjobs show --json` prints them.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from starlette.concurrency import run_in_threadpool
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from sparkjobs.errors import BadInput, SparkjobsError, UnknownRun, Unreachable
from sparkjobs.store.engine import reading
from sparkjobs.store.models import Status
from sparkjobs.web.speech import speech_response

if TYPE_CHECKING:
    from starlette.requests import Request

    from sparkjobs.jobs.define import Job
    from sparkjobs.web.state import WebState

MAX_LIST = 1000
# A long text to speak is a few hundred KiB; anything far beyond is refused unread.
MAX_BODY_BYTES = 2 << 20


class _Payload(BaseModel):
    # NaN and Infinity are not JSON: a model server or PostgreSQL would refuse them later.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class SpeakRequest(_Payload):
    text: str
    voice: str | None = None
    service: str | None = None
    # True: the answer is the speech itself, a WAV streamed as each piece is made.
    stream: bool = False


class CloneRequest(_Payload):
    text: str
    ref_audio: str = Field(description="the reference voice's artifact sha256")
    ref_text: str | None = None
    service: str | None = None


class ChatRequest(_Payload):
    prompt: str
    service: str | None = None
    model: str | None = None
    system: str | None = None
    max_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0)


class JobRunRequest(_Payload):
    params: dict[str, Any] = Field(default_factory=dict)

    @field_validator("params")
    @classmethod
    def _plain_json(cls, params: dict[str, Any]) -> dict[str, Any]:
        try:
            json.dumps(params, allow_nan=False)
        except ValueError as exc:
            raise ValueError("parameters must be JSON values: NaN and Infinity are not") from exc
        return params


Handler = Callable[["Request"], Awaitable[Response]]


def _error(status: int, message: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"error": message, **extra}, status_code=status)


def endpoint(work: Callable[[WebState, Request, Any], Any], payload: type[_Payload] | None = None,
             status: int = 200) -> Handler:  # fmt: skip
    """An API route: parse the JSON body, run `work` in a thread, map errors to statuses."""

    async def handle(request: Request) -> Response:
        body: Any = None
        if payload is not None:
            body = await _parse(request, payload)
            if isinstance(body, JSONResponse):
                return body
        try:
            result = await run_in_threadpool(work, request.app.state.web, request, body)
        except (UnknownRun, _NotFound) as exc:
            return _error(404, str(exc))
        except BadInput as exc:
            status_code = 404 if type(exc).__name__ == "UnknownJob" else 400
            return _error(status_code, str(exc))
        except Unreachable as exc:
            return _error(503, str(exc))
        except SparkjobsError as exc:
            return _error(500, str(exc))
        # An answer of its own (streamed speech) goes as it is.
        return result if isinstance(result, Response) else JSONResponse(result, status_code=status)

    return handle


async def _parse(request: Request, payload: type[_Payload]) -> _Payload | JSONResponse:
    """The body as `payload`, or the error answer: 413 too large, 422 not valid."""
    raw = await _read_body(request)
    if raw is None:
        return _error(
            413, f"the request body is larger than {MAX_BODY_BYTES >> 20} MiB; "
            "send a shorter text (a book: one request per chapter)",
        )  # fmt: skip
    try:
        return payload.model_validate_json(raw or b"{}")
    except ValidationError as exc:
        problems = [
            {"field": ".".join(str(p) for p in e["loc"]), "problem": e["msg"]}
            for e in exc.errors(include_url=False, include_input=False)
        ]
        summary = "; ".join(f"{p['field'] or 'body'}: {p['problem']}" for p in problems)
        return _error(422, f"invalid request: {summary}", problems=problems)


async def _read_body(request: Request) -> bytes | None:
    """The body, or None once it grows past MAX_BODY_BYTES (nothing more is read)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        return None
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


class _NotFound(SparkjobsError):
    pass


def _submitted(state: WebState, job: Job, params: dict[str, Any] | None = None) -> dict[str, Any]:
    from sparkjobs.runs.submit import submit_job

    submitted = submit_job(state.config, job, params=params, trigger="api")
    return {"run_id": str(submitted.run_id), "job": job.name, "status": "queued",
            "url": f"/runs/{submitted.run_id}"}  # fmt: skip


def speak(state: WebState, request: Request, body: SpeakRequest) -> dict[str, Any] | Response:
    from sparkjobs.runs.adhoc import speak_job
    from sparkjobs.runs.submit import submit_job

    job = speak_job(state.config, body.text, voice=body.voice, service=body.service)
    if not body.stream:
        return _submitted(state, job)
    # Someone waits for the audio in this very response: interactive work goes first.
    submitted = submit_job(state.config, job, trigger="api", interactive=True)
    return speech_response(state.config, submitted.run_id, status_code=201)


def clone(state: WebState, request: Request, body: CloneRequest) -> dict[str, Any]:
    from sparkjobs.runs.adhoc import clone_job

    job = clone_job(state.config, body.text, ref_audio=body.ref_audio, ref_text=body.ref_text,
                    service=body.service)  # fmt: skip
    return _submitted(state, job)


def chat(state: WebState, request: Request, body: ChatRequest) -> dict[str, Any]:
    from sparkjobs.runs.adhoc import chat_job

    job = chat_job(
        state.config, body.prompt, service=body.service, model=body.model, system=body.system,
        max_tokens=body.max_tokens, temperature=body.temperature,
    )  # fmt: skip
    return _submitted(state, job)


def run_job(state: WebState, request: Request, body: JobRunRequest) -> dict[str, Any]:
    from sparkjobs.scheduling.control import fire

    name = request.path_params["name"]
    fired = fire(state.config, state.sessions, name, params=body.params, trigger="api")
    return {"run_id": str(fired.run_id), "job": name, "status": fired.status,
            "error": fired.reason, "url": f"/runs/{fired.run_id}"}  # fmt: skip


def list_runs(state: WebState, request: Request, _: None) -> list[dict[str, Any]]:
    from sparkjobs.runs.info import run_summary
    from sparkjobs.store.queries import list_runs as query

    args = request.query_params
    status = args.get("status") or None
    if status is not None and status not in {s.value for s in Status}:
        raise BadInput(f"unknown status {status!r}; known: {', '.join(s.value for s in Status)}")
    try:
        limit = int(args.get("limit", "100"))
    except ValueError as exc:
        raise BadInput(f"limit must be a whole number, not {args.get('limit')!r}") from exc
    with reading(state.sessions) as session:
        runs = query(
            session, job=args.get("job") or None, status=Status(status) if status else None,
            node=args.get("node") or None, limit=min(limit, MAX_LIST),
        )  # fmt: skip
        return [run_summary(run) for run in runs]


def show_run(state: WebState, request: Request, _: None) -> dict[str, Any]:
    from sparkjobs.runs.info import run_detail
    from sparkjobs.store.queries import get_run

    with reading(state.sessions) as session:
        run = get_run(session, request.path_params["run_id"])
        return run_detail(run, state.places(state.config, session, run))


def cancel(state: WebState, request: Request, _: None) -> dict[str, Any]:
    from sparkjobs.runs.control import cancel_run

    done = cancel_run(state.config, request.path_params["run_id"])
    return {"run_id": str(done.run_id), "previous": done.previous.value,
            "status": done.status.value, "changed": done.changed}  # fmt: skip


def rerun(state: WebState, request: Request, _: None) -> dict[str, Any]:
    from sparkjobs.runs.control import rerun as submit_rerun

    submitted = submit_rerun(state.config, request.path_params["run_id"])
    return {"run_id": str(submitted.run_id), "rerun_of": request.path_params["run_id"],
            "status": "queued", "url": f"/runs/{submitted.run_id}"}  # fmt: skip


def list_jobs(state: WebState, request: Request, _: None) -> list[dict[str, Any]]:
    from sparkjobs.scheduling.control import job_rows
    from sparkjobs.web.views import job_view

    with reading(state.sessions) as session:
        return [job_view(row) for row in job_rows(state.config, session)]


def pause_or_resume(state: WebState, request: Request, _: None) -> dict[str, Any]:
    from sparkjobs.scheduling.control import set_job_paused

    name, action = request.path_params["name"], request.path_params["action"]
    if action not in ("pause", "resume"):
        raise _NotFound(f"unknown action {action!r}; use pause or resume")
    changed = set_job_paused(state.config, state.sessions, name, action == "pause")
    return {"job": name, "paused": action == "pause", "changed": changed}


def health(state: WebState, request: Request, _: None) -> list[dict[str, Any]]:
    return [
        {"service": s.service, "node": s.node, "kind": s.kind, "state": s.state, "ok": s.ok,
         "detail": s.detail, "problem": None if s.ok else s.detail or s.state, "fix": s.fix,
         "since": _iso(s.since), "checked_at": _iso(s.checked), "line": s.line}
        for s in state.health()
    ]  # fmt: skip


def _iso(epoch_s: float | None) -> str | None:
    from datetime import UTC, datetime

    return None if epoch_s is None else datetime.fromtimestamp(epoch_s, UTC).isoformat()


routes = [
    Route("/api/speak", endpoint(speak, SpeakRequest, 201), methods=["POST"]),
    Route("/api/clone", endpoint(clone, CloneRequest, 201), methods=["POST"]),
    Route("/api/chat", endpoint(chat, ChatRequest, 201), methods=["POST"]),
    Route("/api/jobs/{name:str}/runs", endpoint(run_job, JobRunRequest, 201), methods=["POST"]),
    Route("/api/jobs", endpoint(list_jobs), methods=["GET"]),
    Route("/api/jobs/{name:str}/{action:str}", endpoint(pause_or_resume), methods=["POST"]),
    Route("/api/runs", endpoint(list_runs), methods=["GET"]),
    Route("/api/runs/{run_id:str}", endpoint(show_run), methods=["GET"]),
    Route("/api/runs/{run_id:str}/cancel", endpoint(cancel), methods=["POST"]),
    Route("/api/runs/{run_id:str}/rerun", endpoint(rerun), methods=["POST"]),
    Route("/api/health", endpoint(health), methods=["GET"]),
]
