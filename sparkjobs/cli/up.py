"""`sparkjobs up`: everything on one machine, until Ctrl-C."""

from __future__ import annotations

import typer

from sparkjobs.cli.context import get_config, get_config_path


def up() -> None:
    """Run everything on this machine: broker, store, a worker per node, beat, Flower,
    and simulators for model servers that do not answer. Ctrl-C stops it all."""
    from sparkjobs.up.run import run_up

    raise typer.Exit(run_up(get_config(), get_config_path()))


def register(app: typer.Typer) -> None:
    app.command()(up)
