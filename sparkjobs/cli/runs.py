"""`sparkjobs runs | show | wait | cancel | rerun`: follow and act on runs."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated

import typer

from sparkjobs.cli.follow import AsJson, Out, Play, Stream
from sparkjobs.errors import BadInput

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from sparkjobs.config import Config
    from sparkjobs.dispatch.places import StepPlace
    from sparkjobs.store.models import Run, Step

RunId = Annotated[str, typer.Argument(help="The run's id (a UUID).", show_default=False)]


def register(app: typer.Typer) -> None:
    """Add `runs`, `show`, `wait`, `cancel` and `rerun` to the main app."""
    app.command("runs")(list_runs)
    app.command("show")(show)
    app.command("wait")(wait)
    app.command("cancel")(cancel)
    app.command("rerun")(rerun)


def list_runs(
    job: Annotated[str | None, typer.Option("--job", "-j", help="Only runs of JOB.")] = None,
    status: Annotated[
        str | None, typer.Option("--status", help="queued, running, succeeded, failed...")
    ] = None,
    since: Annotated[
        str | None, typer.Option("--since", help="Only runs created this recently: 1d, 12h.")
    ] = None,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, help="At most this many.")] = 20,
    as_json: AsJson = False,
) -> None:
    """List runs, newest first; what each unfinished run waits for, in a word in the
    table, then in full below it."""
    from datetime import UTC, datetime

    from rich.table import Column, Table

    from sparkjobs.cli.context import get_config
    from sparkjobs.cli.output import console, print_json
    from sparkjobs.runs.info import iso, run_summary
    from sparkjobs.runs.waiting import runs_waiting
    from sparkjobs.store.models import Status
    from sparkjobs.store.prune import parse_age
    from sparkjobs.store.queries import list_runs as query

    try:
        wanted = None if status is None else Status(status)
    except ValueError:
        known = ", ".join(s.value for s in Status)
        raise BadInput(f"--status {status!r} is not a status; use one of {known}") from None
    after = None if since is None else datetime.now(UTC) - parse_age(since)
    config = get_config()
    with _reading(config) as session:
        found = query(session, job=job, status=wanted, since=after, limit=limit)
        waits = runs_waiting(config, session, found)
    if as_json:
        print_json([
            {**run_summary(run), "waiting_for": w.text if (w := waits.get(run.id)) else None,
             "waiting_since": iso(w.since) if w else None}
            for run in found
        ])  # fmt: skip
        return
    # On a narrow terminal the id, status and wait stay whole, the rest gives way; what a
    # run waits for follows the table in full.
    table = Table(Column("run", no_wrap=True), Column("job", overflow="fold"), "kind", "trigger",
                  Column("status", no_wrap=True), "created (UTC)",
                  Column("waiting", no_wrap=True), box=None)  # fmt: skip
    for run in found:
        waiting = waits.get(run.id)
        table.add_row(
            str(run.id), run.job, run.kind.value, run.trigger.value, _status(run),
            run.created_at.strftime("%Y-%m-%d %H:%M:%S"), waiting.kind if waiting else "",
        )  # fmt: skip
    console.print(table)
    for run in found:
        if (waiting := waits.get(run.id)) is not None:
            console.print(f"{run.id} waiting: {waiting.text}", markup=False)


def show(run_id: RunId, as_json: AsJson = False) -> None:
    """Show a run: each step's node, service, attempts, timings, output and error; why
    a step is not done yet (what it waits for, since when), its place in its service's
    line and its expected start."""
    from sparkjobs.cli.context import get_config
    from sparkjobs.cli.output import print_json
    from sparkjobs.runs.info import line_places, run_detail
    from sparkjobs.store.queries import get_run

    config = get_config()
    with _reading(config) as session:
        run = get_run(session, run_id)
        places = line_places(config, session, run)
    if as_json:
        print_json(run_detail(run, places))
        return
    _print_run(config, run, places)


def wait(
    run_id: RunId,
    out: Out = None,
    stream: Stream = False,
    play: Play = False,
    as_json: AsJson = False,
) -> None:
    """Wait for a run to finish, then write its audio to --out or print its text; with
    --stream, --out - or --play the audio comes as each piece of its speech is made.

    Exit 0 when it succeeded, 1 when it failed or was cancelled or skipped.
    """
    from sparkjobs.cli.context import get_config
    from sparkjobs.cli.follow import check_out, check_stream, stream_and_deliver, wait_and_deliver
    from sparkjobs.runs.listen import speech_step
    from sparkjobs.store.queries import get_run

    audio = check_stream(stream, out, as_json, play)
    check_out(out)
    config = get_config()
    with _reading(config) as session:
        run = get_run(session, run_id)  # an unknown id is exit 2 before any waiting
        if audio and speech_step(run) is None:
            raise BadInput(
                f"run {run.id} ({run.job}) has no speak or clone step: there is no audio to "
                "stream. Fix: drop --stream, --out - and --play; `wait` prints its text"
            )
    if audio:
        stream_and_deliver(config, run.id, out=out, as_json=as_json)
        return
    wait_and_deliver(config, run.id, out=out, as_json=as_json)


def cancel(run_id: RunId, as_json: AsJson = False) -> None:
    """Cancel a run: steps not started never start, the running one stops at its next
    checkpoint. A run that has finished already is left as it was."""
    from sparkjobs.cli.context import get_config
    from sparkjobs.cli.output import console, print_json
    from sparkjobs.runs.control import cancel_run

    done = cancel_run(get_config(), run_id)
    if as_json:
        print_json(
            {
                "run_id": str(done.run_id),
                "previous_status": done.previous.value,
                "status": done.status.value,
                "cancelled": done.changed,
                "revoked": list(done.revoked),
            }
        )
        return
    if done.changed:
        console.print(f"cancelled run {done.run_id} (was {done.previous.value})", markup=False)
    else:
        console.print(f"run {done.run_id} had already {done.status.value}; nothing to cancel",
                      markup=False)  # fmt: skip


def rerun(run_id: RunId, as_json: AsJson = False) -> None:
    """Run again with the same inputs: a new run (trigger `retry`) that names the old one."""
    from sparkjobs.cli.context import get_config
    from sparkjobs.cli.follow import check_infrastructure
    from sparkjobs.cli.output import console, print_json
    from sparkjobs.runs.control import rerun as submit_again

    config = get_config()
    check_infrastructure(config)
    submitted = submit_again(config, run_id)
    if as_json:
        print_json({"run_id": str(submitted.run_id), "rerun_of": run_id, "status": "queued"})
        return
    console.print(str(submitted.run_id), markup=False)


@contextmanager
def _reading(config: Config) -> Iterator[Session]:
    """A session that reads the store (`reading`); a database that does not answer is
    Unreachable (exit 3)."""
    from sqlalchemy.exc import DBAPIError

    from sparkjobs.artifacts.locate import store_sessions
    from sparkjobs.store.engine import reading, unreachable

    try:
        with store_sessions(config) as sessions, reading(sessions) as session:
            yield session
    except DBAPIError as exc:
        raise unreachable(config.database, exc) from exc


def _status(run: Run) -> str:
    colour = {"succeeded": "green", "failed": "red", "running": "cyan"}.get(run.status.value)
    return f"[{colour}]{run.status.value}[/]" if colour else run.status.value


def _print_run(config: Config, run: Run, places: dict[int, StepPlace]) -> None:
    from sparkjobs.cli.output import console

    header = f"run {run.id}  job {run.job}  {run.kind.value}  trigger {run.trigger.value}"
    console.print(header, markup=False)
    console.print(f"status {_status(run)}  created {run.created_at.isoformat()}")
    if run.rerun_of:
        console.print(f"rerun of {run.rerun_of}", markup=False)
    if run.error:
        console.print(f"error: {run.error}", markup=False)
    for step in run.steps:
        _print_step(config, run, step, places.get(step.index))


def _print_step(config: Config, run: Run, step: Step, place: StepPlace | None = None) -> None:
    from sparkjobs.cli.output import console
    from sparkjobs.runs.waiting import step_waiting

    console.print(
        f"\nstep {step.index} {step.name}: {step.status.value} on {step.node} "
        f"({step.service})", markup=False,
    )  # fmt: skip
    figures = [
        f"{name} {value:.1f}{unit}"
        for name, value, unit in (
            ("latency", step.latency_ms, " ms"), ("ttft", step.ttft_ms, " ms"),
            ("tokens/s", step.tokens_per_s, ""), ("audio", step.audio_s, " s"),
            ("rtf", step.rtf, ""),
        )
        if value is not None
    ]  # fmt: skip
    if figures:
        console.print("  " + ", ".join(figures), markup=False)
    for attempt in step.attempts:
        piece = f" piece {attempt.piece}" if attempt.piece is not None else ""
        error = f": {attempt.error}" if attempt.error else ""
        console.print(
            f"  attempt {attempt.number}{piece} on {attempt.worker} "
            f"{attempt.status.value}{error}", markup=False,
        )  # fmt: skip
    for link in step.artifacts:
        console.print(f"  {link.role.value} {link.name or ''} {link.sha256}", markup=False)
    if step.result is not None and step.result.text:
        console.print(f"  text: {step.result.text}", markup=False)
    if step.error:
        console.print(f"  error: {step.error}", markup=False)
    # A place in line is live, where a recorded lease wait names its place then.
    waiting = step_waiting(run, step, place, config)
    if waiting is not None:
        since = f" (since {waiting.since:%H:%M:%S} UTC)" if waiting.since else ""
        console.print(f"  waiting: {waiting.text}{since}", markup=False)
