"""`sparkjobs config check`: validate the config and show it resolved, secrets masked."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from sparkjobs.cli.context import get_config
from sparkjobs.cli.output import console, print_json

config_app = typer.Typer(help="Inspect the cluster config.", no_args_is_help=True)


@config_app.command("check")
def check(
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the resolved config as JSON.")
    ] = False,
) -> None:
    """Validate the config (exit 2 naming key, value and fix) and print it resolved."""
    config = get_config()
    data = config.masked()
    if as_json:
        print_json(data)
        return
    import tomli_w

    console.print(f"# {config.source}: valid", style="green")
    console.print(tomli_w.dumps(_drop_none(data)), markup=False)


def _drop_none(value: dict[str, Any]) -> dict[str, Any]:
    """TOML has no null: leave unset keys out."""
    return {
        key: _drop_none(item) if isinstance(item, dict) else item
        for key, item in value.items()
        if item is not None
    }


def register(app: typer.Typer) -> None:
    app.add_typer(config_app, name="config")
