"""The `sparkjobs` command: global options, the command modules, and exit codes.

Exit codes: 0 success; 1 a job failed (or something is down); 2 bad input,
config or usage; 3 broker or database unreachable; 130 interrupted.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import Annotated, NoReturn

import click
import typer
from rich.markup import escape

from sparkjobs.cli.context import set_config_path
from sparkjobs.cli.output import err_console
from sparkjobs.errors import SparkjobsError

# Each module adds its commands through `register(app)`; they import their heavy
# dependencies inside the commands, so that `sparkjobs --help` starts fast.
COMMAND_MODULES = (
    "config", "daemons", "ping", "up", "sim", "db", "artifacts", "jobs", "submit", "runs", "web",
    "doctor",
)  # fmt: skip

app = typer.Typer(
    name="sparkjobs",
    help="Schedule inference jobs onto the model servers of your own GPU nodes.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def main(
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            "-c",
            envvar="SPARKJOBS_CONFIG",
            help="Cluster config (TOML). Default: the built-in one-machine config.",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Schedule inference jobs onto the model servers of your own GPU nodes."""
    set_config_path(config)


for _name in COMMAND_MODULES:
    try:
        _module = importlib.import_module(f"sparkjobs.cli.{_name}")
    except ModuleNotFoundError as exc:  # a command module not built yet
        if exc.name != f"sparkjobs.cli.{_name}":
            raise
        continue
    _module.register(app)


def run() -> None:
    """Entry point: run the command and turn sparkjobs errors into exit codes."""
    try:
        code = app(standalone_mode=False)
    except SparkjobsError as exc:
        err_console.print(f"[bold red]error:[/] {escape(str(exc))}")
        sys.exit(exc.exit_code)
    except (click.exceptions.Exit, typer.Exit) as exc:
        sys.exit(exc.exit_code)
    except (click.exceptions.Abort, typer.Abort, KeyboardInterrupt):
        err_console.print("interrupted")
        sys.exit(130)
    except (click.ClickException, typer.TyperException) as exc:
        # Usage errors: an unknown option, a value out of range, a missing argument.
        # Typer raises those of the click it carries, which are not click's own.
        _usage_error(exc)
    # Without standalone mode, click returns the code of a `typer.Exit` instead.
    sys.exit(code if isinstance(code, int) else 0)


def _usage_error(exc: Exception) -> NoReturn:
    """Print a usage error as click would (usage line, hint, message) and exit 2."""
    show = getattr(exc, "show", None)
    if callable(show):
        show()
    else:
        err_console.print(f"[bold red]error:[/] {escape(str(exc))}")
    sys.exit(int(getattr(exc, "exit_code", 2)))
