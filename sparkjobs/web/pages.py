"""The pages people read: runs newest first, one run in full, the jobs, the health.

Handlers are plain functions (Starlette runs them in its thread pool), read the
store through `sparkjobs.store.queries` and render the package's templates. The
buttons post forms that redirect back (post/redirect/get), so no JavaScript is needed.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from sparkjobs.errors import SparkjobsError, UnknownRun
from sparkjobs.runs.listen import SPEECH_KINDS
from sparkjobs.store.engine import reading
from sparkjobs.store.models import Status
from sparkjobs.store.queries import get_run, list_runs
from sparkjobs.web.views import job_view, run_detail, run_summary

if TYPE_CHECKING:
    from starlette.requests import Request

    from sparkjobs.web.state import WebState

PAGE_SIZE = 100


def _state(request: Request) -> WebState:
    state: WebState = request.app.state.web
    return state


def short_time(value: str | None) -> str:
    """An ISO time as `Mon 02 Mar 07:00:05` (UTC), or a dash."""
    if not value:
        return "\N{EN DASH}"
    return datetime.fromisoformat(value).astimezone(UTC).strftime("%a %d %b %H:%M:%S")


def seconds(value: float | None) -> str:
    """A duration for people: 850 ms, 3.2 s, 4 min 10 s."""
    if value is None:
        return "\N{EN DASH}"
    if value < 1:
        return f"{value * 1000:.0f} ms"
    if value < 60:
        return f"{value:.1f} s"
    return f"{int(value // 60)} min {int(value % 60)} s"


def _render(request: Request, name: str, status_code: int = 200, **context: Any) -> Response:
    state = _state(request)
    context.setdefault("flower_url", state.links.flower_url)
    context.setdefault("message", request.query_params.get("message"))
    return state.templates.TemplateResponse(request, name, context, status_code=status_code)


def runs_page(request: Request) -> Response:
    state = _state(request)
    query = request.query_params
    filters = {key: query.get(key) or None for key in ("job", "status", "node")}
    problem = None
    status = filters["status"]
    if status is not None and status not in {s.value for s in Status}:
        problem = f"unknown status {status!r}; known: {', '.join(s.value for s in Status)}"
        filters["status"] = None
    with reading(state.sessions) as session:
        runs = list_runs(
            session, job=filters["job"], status=Status(filters["status"]) if filters["status"]
            else None, node=filters["node"], limit=PAGE_SIZE,
        )  # fmt: skip
        rows = [run_summary(run) for run in runs]
    return _render(
        request, "runs.html", runs=rows, filters=filters, problem=problem,
        statuses=[s.value for s in Status], nodes=list(state.config.nodes),
    )  # fmt: skip


def run_page(request: Request) -> Response:
    state = _state(request)
    try:
        with reading(state.sessions) as session:
            run = get_run(session, request.path_params["run_id"])
            places = state.places(state.config, session, run)
            detail = run_detail(state.config, run, state.links, places)
    except UnknownRun as exc:
        return _render(request, "error.html", status_code=404, title="No such run", error=str(exc))
    going = not Status(detail["status"]).terminal
    # A speech being made plays as it comes (GET /api/runs/{id}/audio): the page must
    # not reload under it; it reloads when the stream ends.
    live = going and any(
        step["kind"] in SPEECH_KINDS and not Status(step["status"]).terminal
        for step in detail["steps"]
    )
    return _render(request, "run.html", run=detail, refresh=going and not live, live=live)


def jobs_page(request: Request) -> Response:
    from sparkjobs.scheduling.control import job_rows

    state = _state(request)
    with reading(state.sessions) as session:
        jobs = [job_view(row) for row in job_rows(state.config, session)]
    return _render(request, "jobs.html", jobs=jobs)


def job_action(request: Request) -> Response:
    """Run-now, pause and resume buttons: act, then go where the result shows."""
    from sparkjobs.scheduling.control import fire, set_job_paused

    state = _state(request)
    name, action = request.path_params["name"], request.path_params["action"]
    if action not in ("run", "pause", "resume"):
        return _render(request, "error.html", status_code=404, title="No such action",
                       error=f"unknown action {action!r}; use run, pause or resume")  # fmt: skip
    try:
        if action == "run":
            fired = fire(state.config, state.sessions, name, trigger="manual")
            note = f"run of {name} {fired.status}" + (f": {fired.reason}" if fired.reason else "")
            return _redirect(f"/runs/{fired.run_id}", note)
        changed = set_job_paused(state.config, state.sessions, name, action == "pause")
    except SparkjobsError as exc:
        return _redirect("/jobs", f"error: {exc}")
    done = "paused" if action == "pause" else "resumed"
    return _redirect("/jobs", f"{name} {done}" if changed else f"{name} was already {done}")


def health_page(request: Request) -> Response:
    state = _state(request)
    statuses = state.health()
    nodes = {node: [s for s in statuses if s.node == node] for node in state.config.nodes}
    return _render(request, "health.html", nodes=nodes, now=time.time(),
                   interval=state.config.dispatch.health_interval_s)  # fmt: skip


def _redirect(path: str, message: str) -> RedirectResponse:
    return RedirectResponse(f"{path}?{urlencode({'message': message})}", status_code=303)


routes = [
    Route("/", runs_page, name="runs"),
    Route("/runs/{run_id:str}", run_page, name="run"),
    Route("/jobs", jobs_page, name="jobs"),
    Route("/jobs/{name:str}/{action:str}", job_action, methods=["POST"]),
    Route("/health", health_page, name="health"),
]
