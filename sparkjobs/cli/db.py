"""`sparkjobs db`: bring the store's schema up to date, and prune old runs."""

from __future__ import annotations

from typing import Annotated

import typer


def register(app: typer.Typer) -> None:
    """Add the `db` commands (upgrade, current, prune) to the main app."""
    db = typer.Typer(help="The SQL store: migrations and retention.", no_args_is_help=True)
    db.command("upgrade")(upgrade)
    db.command("current")(current)
    db.command("prune")(prune)
    app.add_typer(db, name="db")


def upgrade() -> None:
    """Apply the migrations the database lacks (safe to run again)."""
    from sparkjobs.cli.context import get_config
    from sparkjobs.cli.output import console
    from sparkjobs.store.schema import upgrade as apply

    status = apply(get_config().database)
    if status.current == status.head:
        message = f"{status.database}: already at revision {status.head}"
    else:
        before = status.current or "empty"
        message = f"{status.database}: upgraded from {before} to revision {status.head}"
    console.print(message, markup=False)


def current(
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON object.")] = False,
) -> None:
    """Show the database's schema revision and the newest one this sparkjobs ships."""
    from sparkjobs.cli.context import get_config
    from sparkjobs.cli.output import console, print_json
    from sparkjobs.store.schema import status

    found = status(get_config().database)
    if as_json:
        print_json({"database": found.database, "current": found.current, "head": found.head})
        return
    state = "up to date" if found.is_current else "behind: run `sparkjobs db upgrade`"
    console.print(
        f"{found.database}: revision {found.current or 'none'} (newest {found.head}), {state}",
        markup=False,
    )


def prune(
    older_than: Annotated[
        str, typer.Option("--older-than", help="Age of runs to delete: 30d, 12h, 2w.")
    ] = "30d",
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON object.")] = False,
) -> None:
    """Delete finished runs older than the given age, and artifacts no run references."""
    from sparkjobs.cli.context import get_config
    from sparkjobs.cli.output import console, print_json
    from sparkjobs.store.engine import check_reachable, make_engine, session_factory
    from sparkjobs.store.prune import parse_age
    from sparkjobs.store.prune import prune as prune_rows
    from sparkjobs.store.schema import ensure_current

    age = parse_age(older_than)
    config = get_config()
    ensure_current(config)
    engine = make_engine(config.database)
    try:
        check_reachable(engine)
        with session_factory(engine).begin() as session:
            report = prune_rows(session, older_than=age)
    finally:
        engine.dispose()
    if as_json:
        print_json(
            {
                "cutoff": report.cutoff.isoformat(),
                "runs": report.runs,
                "steps": report.steps,
                "artifacts": report.artifacts,
                "bytes_freed": report.bytes_freed,
            }
        )
        return
    console.print(
        f"pruned {report.runs} runs ({report.steps} steps) created before "
        f"{report.cutoff.isoformat(timespec='seconds')}, and {report.artifacts} artifacts "
        f"({report.bytes_freed} bytes); each node's worker deletes their files",
        markup=False,
    )
