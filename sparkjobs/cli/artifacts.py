"""`sparkjobs artifacts`: put, get, list, pre-stage and serve artifacts over the bond."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress

# Files this large get a progress bar (on a terminal); smaller ones arrive in moments.
PROGRESS_FROM_BYTES = 64 << 20


def register(app: typer.Typer) -> None:
    """Add the `artifacts` sub-app (put, get, ls, push, serve) to the main app."""
    artifacts = typer.Typer(
        help="Artifacts (audio, voices, weights): stored per node, moved over the bond.",
        no_args_is_help=True,
    )
    artifacts.command("put")(put)
    artifacts.command("get")(get)
    artifacts.command("ls")(ls)
    artifacts.command("push")(push)
    artifacts.command("serve")(serve)
    app.add_typer(artifacts, name="artifacts")


def put(
    file: Annotated[Path, typer.Argument(help="The file to store.", show_default=False)],
    node: Annotated[
        str | None, typer.Option("--node", "-n", help="The node to store it on (default: first).")
    ] = None,
    media_type: Annotated[
        str | None, typer.Option("--media-type", help="Default: guessed from the file name.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON object.")] = False,
) -> None:
    """Upload FILE to a node's artifact store; prints its sha256."""
    from sparkjobs.artifacts.client import put_file
    from sparkjobs.cli.context import get_config
    from sparkjobs.cli.output import console, print_json

    config = get_config()
    stored = put_file(config, file, node or config.first_node(), media_type=media_type)
    if as_json:
        print_json(stored)
        return
    console.print(
        f"{stored['sha256']}  {stored['size_bytes']} bytes on {stored['node']}", markup=False
    )


def get(
    sha256: Annotated[str, typer.Argument(help="The artifact's sha256.", show_default=False)],
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Where to write it.", show_default=False)
    ],
    streams: Annotated[
        int, typer.Option("--streams", min=1, max=64, help="Parallel range streams.")
    ] = 8,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON object.")] = False,
) -> None:
    """Fetch an artifact from whichever node holds it, verified chunk by chunk."""
    from sparkjobs.artifacts.ensure import get_artifact
    from sparkjobs.artifacts.locate import check_sha256, find, store_sessions
    from sparkjobs.cli.context import get_config
    from sparkjobs.cli.output import console, err_console, print_json

    config = get_config()
    sha256 = check_sha256(sha256)
    with store_sessions(config) as sessions:
        size = find(sessions, sha256).size_bytes
        with _progress(err_console, size, f"get {sha256[:12]}") as progress:
            fetched = get_artifact(
                config, sha256, out, streams=streams, progress=progress, sessions=sessions
            )
    if as_json:
        print_json(
            {
                "sha256": fetched.sha256,
                "path": str(fetched.path),
                "size_bytes": fetched.size_bytes,
                "bytes_received": fetched.bytes_received,
                "resumed_chunks": fetched.resumed_chunks,
                "streams": fetched.streams,
                "sources": list(fetched.sources),
            }
        )
        return
    console.print(f"{fetched.path}: {fetched.size_bytes} bytes, sha256 verified", markup=False)


def ls(
    node: Annotated[str | None, typer.Option("--node", "-n", help="Only those on NODE.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON array.")] = False,
) -> None:
    """List the artifacts the store knows, and the nodes holding each."""
    from rich.table import Table

    from sparkjobs.artifacts.locate import list_artifacts, store_sessions
    from sparkjobs.cli.context import get_config
    from sparkjobs.cli.output import console, print_json

    with store_sessions(get_config()) as sessions:
        found = list_artifacts(sessions, node=node)
    if as_json:
        print_json(
            [
                {
                    "sha256": info.sha256,
                    "size_bytes": info.size_bytes,
                    "media_type": info.media_type,
                    "manifest_sha256": info.manifest_sha256,
                    "created_at": info.created_at.isoformat(),
                    "nodes": list(info.nodes),
                }
                for info in found
            ]
        )
        return
    table = Table("sha256", "size", "type", "nodes", box=None)
    for info in found:
        table.add_row(info.sha256, str(info.size_bytes), info.media_type, ", ".join(info.nodes))
    console.print(table)


def push(
    sha256: Annotated[str, typer.Argument(help="The artifact's sha256.", show_default=False)],
    to: Annotated[str, typer.Option("--to", help="The node that should hold it.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON object.")] = False,
) -> None:
    """Have NODE pull an artifact into its store now (e.g. weights before a job)."""
    from sparkjobs.artifacts.client import push as ask
    from sparkjobs.cli.context import get_config
    from sparkjobs.cli.output import console, print_json

    answer = ask(get_config(), sha256, to)
    if as_json:
        print_json(answer)
        return
    console.print(f"{answer['sha256']} is on {answer['node']}", markup=False)


def serve(
    node: Annotated[str, typer.Option("--node", "-n", help="The node whose store to serve.")],
    port: Annotated[
        int | None, typer.Option("--port", min=0, max=65535, help="Default: from the config.")
    ] = None,
) -> None:
    """Serve NODE's artifact store on its bond address (what its worker also does)."""
    import logging

    from sparkjobs.artifacts.locate import endpoint
    from sparkjobs.artifacts.server import run_server
    from sparkjobs.cli.context import get_config

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    config = get_config()
    endpoint(config, node)
    run_server(config, node, port=port)


class _progress:
    """A rich progress bar on stderr for large files on a terminal; else nothing."""

    def __init__(self, console: Console, total: int, label: str):
        self._console, self._total, self._label = console, total, label
        self._bar: Progress | None = None

    def __enter__(self) -> Callable[[int], None] | None:
        from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn

        console = self._console
        if not console.is_terminal or self._total < PROGRESS_FROM_BYTES:
            return None
        bar = Progress(
            "{task.description}", BarColumn(), DownloadColumn(), TransferSpeedColumn(),
            console=console, transient=True,
        )  # fmt: skip
        bar.start()
        task = bar.add_task(self._label, total=self._total)
        self._bar = bar
        return lambda done: bar.update(task, completed=done)  # fmt: skip

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.stop()
