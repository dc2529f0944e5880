"""`sparkjobs up` from start to stop: lock, plan, start, prove, watch, stop."""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

from rich.console import Console
from rich.table import Table

from sparkjobs.up.lock import UpLock
from sparkjobs.up.plan import plan
from sparkjobs.up.supervisor import ComponentFailed, Running, Supervisor, child_env

if TYPE_CHECKING:
    from sparkjobs.config import Config

READY_LINE = "sparkjobs is ready"


def run_up(config: Config, config_file: Path | None, console: Console | None = None) -> int:
    """Run every component until SIGINT or SIGTERM; returns the exit code.

    Raises:
        AlreadyRunning: another `up` holds this data dir (exit 2).
        Unreachable: a configured external broker does not answer (exit 3).
    """
    console = console or Console(highlight=False, soft_wrap=True)
    lock = UpLock(config.data_dir)
    lock.acquire()
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    supervisor = Supervisor(
        config.data_dir / "logs",
        child_env(config_file),
        on_ready=lambda running: _print_started(console, running),
    )
    try:
        if not config.uses_embedded_broker:
            from sparkjobs.broker.client import check_broker

            check_broker(config)
        console.print(f"sparkjobs up: config {config.source}, data dir {config.data_dir}")
        components = plan(config)
        supervisor.start(components, stop.is_set)
        if stop.is_set():
            return 0
        _prove_paths(config, console)
        simulated = sum(1 for component in components if component.simulated)
        console.print(
            f"[bold green]{READY_LINE}[/]: {len(config.nodes)} nodes, "
            f"{len(config.services)} services ({simulated} simulated); Flower at "
            f"http://{config.flower.address}:{config.flower.port}. Ctrl-C stops everything."
        )
        _follow_activity(config, console, stop)
        while not stop.wait(0.5):
            exited = supervisor.first_exited()
            if exited is not None:
                console.print(
                    f"[red]{exited.component.name} exited with code "
                    f"{exited.process.returncode}[/]; see {exited.log}. Stopping everything."
                )
                return 1
        return 0
    except ComponentFailed as exc:
        console.print(f"[red]error:[/] {exc}", markup=True)
        return 1
    finally:
        console.print("stopping: in-flight work goes back to the queue ...")
        supervisor.stop()
        lock.release()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        console.print("stopped.")


def _print_started(console: Console, running: Running) -> None:
    component = running.component
    label = f"{component.name} (simulator)" if component.simulated else component.name
    if component.oneshot:
        console.print(f"  [green]done[/]    {label:<24} {component.where}")
    else:
        pid = running.process.pid
        console.print(f"  [green]started[/] {label:<24} {component.where}  pid {pid}")


def _prove_paths(config: Config, console: Console) -> None:
    """A ping through every node's queue: broker, routing and workers all work."""
    from sparkjobs.broker.app import create_app
    from sparkjobs.broker.ping import ping_node

    app = create_app(config)
    table = Table("node", "queue", "worker", "ping", box=None, pad_edge=False)
    for node in config.nodes:
        pong = ping_node(app, node, timeout_s=30.0)
        table.add_row(node, pong.queue, pong.worker, f"{pong.round_trip_ms:.0f} ms")
    console.print(table)


def _follow_activity(config: Config, console: Console, stop: threading.Event) -> None:
    from sparkjobs.broker.app import create_app
    from sparkjobs.up.activity import follow

    app = create_app(config, role="daemon")
    thread = threading.Thread(
        target=follow,
        args=(app, lambda line: console.print(line, markup=False), stop),
        name="activity",
        daemon=True,
    )
    thread.start()
