"""`sparkjobs doctor`: check this node, the broker, the database, workers and services."""

from __future__ import annotations

from typing import Annotated

import typer


def doctor(
    node: Annotated[
        str | None,
        typer.Option(
            "--node", "-n", help="Which node this host is. Default: found from its addresses."
        ),
    ] = None,
    timeout_s: Annotated[
        float, typer.Option("--timeout", help="Seconds workers get to answer.")
    ] = 2.0,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Check this node's identity and bond, the broker, the database, every node's worker,
    every service's health and common misconfigurations.

    Exit 0 when all is well, 1 when something is down, 3 when the broker or the
    database is unreachable.
    """
    from sparkjobs.cli.context import get_config
    from sparkjobs.cli.output import console, print_json
    from sparkjobs.doctor import diagnose

    report = diagnose(get_config(), node=node, timeout_s=timeout_s)
    if as_json:
        print_json(report.to_json())
    else:
        report.print(console)
    if report.exit_code:
        raise typer.Exit(report.exit_code)


def register(app: typer.Typer) -> None:
    app.command()(doctor)
