"""`sparkjobs worker | beat | flower`: the long-lived processes of a node."""

from __future__ import annotations

from typing import Annotated

import typer

from sparkjobs.cli.context import get_config

LogLevel = Annotated[str, typer.Option("--loglevel", "-l", help="DEBUG, INFO, WARNING or ERROR.")]


def worker(
    node: Annotated[str, typer.Option("--node", "-n", help="The node whose queue to consume.")],
    loglevel: LogLevel = "INFO",
) -> None:
    """Run NODE's worker: consumes exactly that node's queue with a threads pool."""
    from sparkjobs.broker.client import refuse_a_wrong_broker_password
    from sparkjobs.config.routing import queue_for_node
    from sparkjobs.worker.process import run_worker

    config = get_config()
    queue_for_node(config, node)  # an unknown node is exit 2 before anything starts
    refuse_a_wrong_broker_password(config)
    run_worker(config, node, loglevel=loglevel)


def beat(loglevel: LogLevel = "INFO") -> None:
    """Run the scheduler."""
    from sparkjobs.broker.client import refuse_a_wrong_broker_password
    from sparkjobs.scheduling.daemon import run_beat

    config = get_config()
    refuse_a_wrong_broker_password(config)
    run_beat(config, loglevel=loglevel)


def flower() -> None:
    """Run Flower, the live task monitor, on the project's Celery app."""
    from sparkjobs.broker.client import refuse_a_wrong_broker_password
    from sparkjobs.observe.flower import run_flower

    config = get_config()
    refuse_a_wrong_broker_password(config)
    run_flower(config)


def register(app: typer.Typer) -> None:
    app.command()(worker)
    app.command()(beat)
    app.command()(flower)
