"""`sparkjobs ping`: prove the path to each node's worker, end to end."""

from __future__ import annotations

from typing import Annotated

import typer

from sparkjobs.cli.context import get_config
from sparkjobs.cli.output import console, print_json


def ping(
    nodes: Annotated[
        list[str] | None,
        typer.Option("--node", "-n", help="Node to ping (repeatable). Default: all."),
    ] = None,
    timeout_s: Annotated[float, typer.Option("--timeout", help="Seconds to wait per node.")] = 10.0,
    hold_s: Annotated[
        float, typer.Option("--hold", help="Seconds the worker holds each ping before answering.")
    ] = 0.0,
    as_json: Annotated[bool, typer.Option("--json", help="Print the answers as JSON.")] = False,
) -> None:
    """Send a ping task to each node's queue and wait for its worker to answer.

    Exit 0 when every node answered, 1 when one did not, 3 when the broker is down.
    """
    from sparkjobs.broker.app import create_app
    from sparkjobs.broker.client import check_broker
    from sparkjobs.broker.ping import NoAnswer, ping_node
    from sparkjobs.config.routing import queue_for_node

    config = get_config()
    targets = nodes or list(config.nodes)
    for node in targets:
        queue_for_node(config, node)
    check_broker(config)
    app = create_app(config)
    answers: list[dict[str, object]] = []
    for node in targets:
        try:
            pong = ping_node(app, node, timeout_s=timeout_s + hold_s, hold_s=hold_s)
        except NoAnswer as exc:
            answers.append({"node": node, "ok": False, "error": str(exc)})
            continue
        answers.append(
            {
                "node": node,
                "ok": True,
                "worker": pong.worker,
                "queue": pong.queue,
                "round_trip_ms": round(pong.round_trip_ms, 1),
            }
        )
    if as_json:
        print_json(answers)
    else:
        for answer in answers:
            if answer["ok"]:
                console.print(
                    f"[green]ok[/]   {answer['node']}: {answer['worker']} answered from queue "
                    f"{answer['queue']} in {answer['round_trip_ms']} ms"
                )
            else:
                console.print(f"[red]down[/] {answer['node']}: {answer['error']}")
    if not all(answer["ok"] for answer in answers):
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command()(ping)
