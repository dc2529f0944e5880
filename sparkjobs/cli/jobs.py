"""`sparkjobs jobs`: list the jobs of schedules_dir, fire one now, pause and resume them."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any

import typer

from sparkjobs.errors import BadInput

if TYPE_CHECKING:
    from sparkjobs.config import Config
    from sparkjobs.jobs.define import Job
    from sparkjobs.jobs.files import Loaded
    from sparkjobs.store.jobs import SeenJob

AsJson = Annotated[bool, typer.Option("--json", help="Print JSON (times in UTC).")]


class UnknownJob(BadInput):
    """A command named a job that no job file defines."""


def register(app: typer.Typer) -> None:
    """Add the `jobs` commands (list, run, pause, resume) to the main app."""
    jobs = typer.Typer(help="The jobs defined in schedules_dir.", no_args_is_help=True)
    jobs.command("list")(list_jobs)
    jobs.command("run")(run)
    jobs.command("pause")(pause)
    jobs.command("resume")(resume)
    app.add_typer(jobs, name="jobs")


def _load(config: Config) -> Loaded:
    from sparkjobs.cli.output import err_console
    from sparkjobs.jobs.files import load_jobs

    loaded = load_jobs(config)
    for problems in loaded.problems.values():
        for problem in problems:
            err_console.print(f"[yellow]not loaded:[/] {problem}", markup=True, highlight=False)
    return loaded


def _find(config: Config, name: str) -> Job:
    import difflib

    jobs = _load(config).by_name()
    if name not in jobs:
        close = difflib.get_close_matches(name, list(jobs), n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise UnknownJob(
            f"no job {name!r} in {config.schedules_dir}; {hint}"
            f"known: {', '.join(sorted(jobs)) or 'none'} (see `sparkjobs jobs list`)"
        )
    return jobs[name]


def _sessions(config: Config) -> Any:
    from sparkjobs.store.engine import open_store
    from sparkjobs.store.schema import ensure_current

    ensure_current(config)
    return open_store(config.database)


def _seen(job: Job, now: datetime) -> SeenJob:
    from sparkjobs.jobs.slots import describe, next_fire, schedule_tz
    from sparkjobs.store.jobs import SeenJob

    upcoming = next_fire(job.schedule, now) if job.schedule else None
    return SeenJob(
        job.name,
        describe(job.schedule),
        schedule_tz(job.schedule),
        upcoming,
        job.paused,
        job.origin.file,
        job.origin.line,
    )


def list_jobs(as_json: AsJson = False) -> None:
    """List every job: schedule, time zone, next fire, last run and whether it is paused."""
    from rich.table import Table

    from sparkjobs.cli.context import get_config
    from sparkjobs.cli.output import console, print_json
    from sparkjobs.jobs.crontab import zone
    from sparkjobs.jobs.handoff import STREAMED, handoffs
    from sparkjobs.store.jobs import job_records, last_runs

    config = get_config()
    loaded = _load(config)
    now = datetime.now(UTC)
    with _sessions(config)() as session:
        records = job_records(session)
        runs = last_runs(session, [job.name for job in loaded.jobs])
    rows: list[dict[str, Any]] = []
    for job in loaded.jobs:
        seen = _seen(job, now)
        paused = records[job.name].paused if job.name in records else job.paused
        last = runs.get(job.name)
        rows.append(
            {
                "name": job.name,
                "schedule": seen.schedule,
                "tz": seen.tz,
                "next_fire": None if paused or not seen.next_fire else seen.next_fire.isoformat(),
                "paused": paused,
                "last_run": None
                if last is None
                else {
                    "run_id": str(last.id),
                    "status": last.status.value,
                    "trigger": last.trigger.value,
                    "created_at": last.created_at.isoformat(),
                },
                "file": f"{job.origin}",
                "speech": [{"step": h.index, "handoff": h.label} for h in handoffs(job)],
            }
        )
    if as_json:
        print_json(rows)
        return
    table = Table("job", "schedule", "tz", "next fire (local)", "last run", "paused", "speech")
    notes: list[str] = []
    for row, job in zip(rows, loaded.jobs, strict=True):
        upcoming = row["next_fire"]
        local = (
            datetime.fromisoformat(upcoming).astimezone(zone(row["tz"])).strftime("%a %d %b %H:%M")
            if upcoming
            else "-"
        )
        previous = row["last_run"]
        table.add_row(
            job.name,
            row["schedule"],
            row["tz"],
            local,
            f"{previous['status']} ({previous['created_at'][:16]})" if previous else "-",
            "yes" if row["paused"] else "",
            ", ".join(sorted({h["handoff"].split(":")[0] for h in row["speech"]})),
        )
        notes += [f"{job.name}: step {h['step']} speaks in {h['handoff']}"
                  for h in row["speech"] if h["handoff"] != STREAMED]  # fmt: skip
    console.print(table)
    for note in notes:  # why a speak step waits for the whole reply before it starts
        console.print(note, soft_wrap=True)


def run(
    name: Annotated[str, typer.Argument(help="The job to fire now.")],
    param: Annotated[
        list[str] | None, typer.Option("--param", "-p", help="Override a parameter: k=v.")
    ] = None,
    wait: Annotated[bool, typer.Option("--wait", help="Wait for the run to finish.")] = False,
    as_json: AsJson = False,
) -> None:
    """Fire NAME now (trigger `manual`); its overlap policy applies."""
    from sparkjobs.cli.context import get_config
    from sparkjobs.cli.output import console, print_json
    from sparkjobs.jobs.slots import overlap_skip_reason
    from sparkjobs.runs.submit import active_run_exists, submit_job
    from sparkjobs.runs.wait import wait_for_run

    config = get_config()
    job = _find(config, name)
    params = _parse_params(param or [])
    reason = overlap_skip_reason(job, active_run_exists(config, job.name))
    if reason is not None:
        run_id = _record_manual_skip(config, job, params, reason)
        if as_json:
            print_json({"run_id": str(run_id), "job": name, "status": "skipped", "error": reason})
        else:
            console.print(f"skipped {name} (run {run_id}): {reason}", markup=False)
        raise typer.Exit(1)
    submitted = submit_job(config, job, params=params, trigger="manual")
    if not wait:
        if as_json:
            print_json({"run_id": str(submitted.run_id), "job": name, "status": "queued"})
        else:
            console.print(f"queued {name}: run {submitted.run_id}", markup=False)
        return
    finished = wait_for_run(config, submitted.run_id, timeout_s=None)
    if as_json:
        print_json(
            {
                "run_id": str(finished.id),
                "job": name,
                "status": finished.status.value,
                "error": finished.error,
            }
        )
    else:
        console.print(f"{name}: run {finished.id} {finished.status.value}", markup=False)
    if finished.status.value != "succeeded":
        raise typer.Exit(1)


def _parse_params(pairs: list[str]) -> dict[str, str]:
    params = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise BadInput(f"--param {pair!r} must read NAME=VALUE, e.g. --param city=Berlin")
        params[key] = value
    return params


def _record_manual_skip(config: Config, job: Job, params: dict[str, str], reason: str) -> Any:
    from sparkjobs.runs.params import run_params
    from sparkjobs.store.models import RunKind, Status, Trigger
    from sparkjobs.store.runs import create_run

    with _sessions(config).begin() as session:
        skipped, _ = create_run(
            session,
            job=job.name,
            kind=RunKind(job.kind),
            trigger=Trigger.MANUAL,
            params=run_params(job, params),
            status=Status.SKIPPED,
        )
        skipped.error = reason
        return skipped.id


def pause(name: Annotated[str, typer.Argument(help="The job to pause.")]) -> None:
    """Stop firing NAME's slots (they are not made up later) until `resume`."""
    _set_paused(name, True)


def resume(name: Annotated[str, typer.Argument(help="The job to resume.")]) -> None:
    """Fire NAME's slots again, from the next one on."""
    _set_paused(name, False)


def _set_paused(name: str, paused: bool) -> None:
    from sparkjobs.cli.context import get_config
    from sparkjobs.cli.output import console
    from sparkjobs.store.jobs import set_paused

    config = get_config()
    job = _find(config, name)
    now = datetime.now(UTC)
    with _sessions(config).begin() as session:
        changed = set_paused(session, _seen(job, now), paused, now=now)
    state = "paused" if paused else "resumed"
    console.print(f"{name} {state}" if changed else f"{name} was already {state}", markup=False)
