"""A node's worker: consumes exactly that node's queue with a pool of threads,
and serves the node's artifacts.

The work is HTTP calls to model servers that mostly wait, so threads, not
prefork children. On SIGTERM the worker stops taking work, gives running tasks
up to the configured grace period, hands the rest back to the broker, and exits.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from typing import TYPE_CHECKING, NoReturn

from sparkjobs.artifacts.server import ServerThread
from sparkjobs.backends.shared import close_shared
from sparkjobs.broker.app import create_app
from sparkjobs.broker.events import task_events_while_watched
from sparkjobs.config.routing import queue_for_node
from sparkjobs.dispatch.monitor import HealthMonitor
from sparkjobs.errors import Unreachable
from sparkjobs.observe.collect import install as install_metrics
from sparkjobs.observe.metrics import serve as serve_metrics
from sparkjobs.worker.heartbeat import Heartbeat
from sparkjobs.worker.janitor import Janitor
from sparkjobs.worker.pool import GraceUntilIdle
from sparkjobs.worker.reconciler import Reconciler

if TYPE_CHECKING:
    from sparkjobs.config import Config

log = logging.getLogger(__name__)


def worker_concurrency(config: Config, node: str) -> int:
    """Threads for `node`'s worker: enough for every service's in-flight limit.

    The work is HTTP calls that mostly wait, so a thread per request the node's
    servers can take at once, plus a few for housekeeping tasks such as ping.
    """
    if config.worker.concurrency:
        return config.worker.concurrency
    return sum(s.in_flight_limit for s in config.node_services(node).values()) + 4


def worker_name(node: str) -> str:
    """The Celery node name: one worker per sparkjobs node on each host."""
    return f"{node}@{socket.gethostname()}"


def await_schema(config: Config, *, retry_s: float = 5.0) -> None:
    """Return once the database is reachable and its schema current.

    Raises:
        SchemaBehind: the schema needs `sparkjobs db upgrade` (exit 2): a worker
            must not write rows its code does not match.
    """
    from sparkjobs.store.schema import ensure_current

    while True:
        try:
            ensure_current(config)
        except Unreachable as exc:  # a daemon waits for infrastructure, it does not exit
            log.warning("%s; retrying in %g s", exc, retry_s)
            time.sleep(retry_s)
        else:
            return


# Celery's per-task lines ("received", "succeeded in", "retry"), at INFO.
TASK_LOGGERS = ("celery.app.trace", "celery.worker.strategy")


def quiet_task_lines(loglevel: str) -> None:
    """Keep Celery's two INFO lines a task for `--loglevel DEBUG`.

    Every attempt is recorded in SQL (`sparkjobs show`), and on a busy node writing
    the lines cost more CPU than some tasks. Celery decides whether to format them
    when it builds a task's tracer, so this runs before the worker starts.
    """
    if logging.getLevelName(loglevel.upper()) != logging.DEBUG:
        for name in TASK_LOGGERS:
            logging.getLogger(name).setLevel(logging.WARNING)


def run_worker(config: Config, node: str, *, loglevel: str = "INFO") -> NoReturn:
    """Consume exactly `node`'s queue until stopped, then exit the process."""
    queue = queue_for_node(config, node)
    await_schema(config)
    # SIGTERM (systemd, `up`) means: stop taking work, give running tasks the
    # grace period, then hand the rest back to the queue. Celery's warm shutdown
    # would wait without limit, so SIGTERM is remapped to its soft/cold shutdown.
    os.environ.setdefault("REMAP_SIGTERM", "SIGQUIT")
    app = create_app(config, role="daemon")
    quiet_task_lines(loglevel)
    worker_class = type("Worker", (GraceUntilIdle, app.Worker), {})
    worker = worker_class(
        hostname=worker_name(node),
        queues=[queue],
        pool="sparkjobs.worker.pool:HandBackThreadPool",
        concurrency=worker_concurrency(config, node),
        loglevel=loglevel,
        optimization="fair",
        without_mingle=not config.worker.mingle,
        # Survives a Redis restart instead of exiting (see sparkjobs.worker.consumer).
        consumer_cls="sparkjobs.worker.consumer:BrokerRestartConsumer",
    )
    # Task events are on only while Flower or `up` asks (sparkjobs.broker.events).
    task_events_while_watched(app)
    # The node's artifacts are served by its worker, on the node's bond address.
    artifacts = ServerThread(config, node).start()
    log.info("artifact server of %s on %s", node, ", ".join(artifacts.urls))
    # So are its Prometheus metrics, when a metrics port is configured.
    metrics = serve_metrics(config, node)
    if metrics is not None:
        install_metrics(app)
        log.info("metrics of %s on %s", node, ", ".join(metrics.urls))
    # It probes its services and publishes their health for every worker's gate.
    health = HealthMonitor(config, node, app.redis).start()
    # And it removes the node's artifact files that no row references any more.
    janitor = Janitor(config, node).start()
    # It says what it holds, and one worker's reconciler queues lost work again.
    heartbeat = Heartbeat(config, worker_name(node)).start()
    reconciler = Reconciler(config).start() if config.reconciler.enabled else None
    try:
        worker.start()
    finally:
        if reconciler is not None:
            reconciler.stop()
        heartbeat.stop()
        janitor.stop()
        health.stop()
        close_shared()
        artifacts.stop()
        if metrics is not None:
            metrics.stop()
    code = int(worker.exitcode or 0)
    logging.shutdown()
    # Threads of tasks that outlived the grace period must not keep the process
    # alive (the interpreter would join them at exit); their messages are back
    # in the queue already.
    os._exit(code)
