"""`sparkjobs web`: the run page and JSON API, bound as the config says."""

from __future__ import annotations

import typer


def web() -> None:
    """Serve the run page and the JSON API (loopback unless the config says otherwise)."""
    from sparkjobs.cli.context import get_config
    from sparkjobs.web import serve

    serve(get_config())


def register(app: typer.Typer) -> None:
    app.command()(web)
