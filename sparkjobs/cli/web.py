"""`sparkjobs web`: the run page and JSON API, bound as the config says."""

from __future__ import annotations

import typer


def web() -> None:
    """Serve the run page and the JSON API (loopback unless the config says otherwise)."""
    from sparkjobs.broker.client import refuse_a_wrong_broker_password
    from sparkjobs.cli.context import get_config
    from sparkjobs.web import serve

    config = get_config()
    refuse_a_wrong_broker_password(config)  # it submits runs: a wrong password is exit 3
    serve(config)


def register(app: typer.Typer) -> None:
    app.command()(web)
