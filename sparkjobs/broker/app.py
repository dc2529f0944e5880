"""The Celery app, built from the config in one function.

Every process (worker, beat, Flower, the CLI) builds its app here, so all of them
agree on serialization, queues and routing. Daemons retry the broker forever;
the command line gives up fast and says what it could not reach.
"""

from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING, Literal

from celery import Celery
from kombu import Queue

from sparkjobs.broker import transport as broker_transport
from sparkjobs.config.routing import ServiceRouter

if TYPE_CHECKING:
    import redis

    from sparkjobs.broker.notify import Publisher
    from sparkjobs.config import Config

Role = Literal["daemon", "client"]

# Task modules every node loads (the same workers package is deployed everywhere).
TASK_MODULES = ("workers.ping", "workers.steps", "workers.pieces", "workers.join")


class SparkjobsApp(Celery):
    """A Celery app that carries the cluster config its tasks run under."""

    def __init__(self, config: Config, role: Role) -> None:
        # The task class hands a task back while the database is unreachable.
        super().__init__(
            "sparkjobs", set_as_current=False,
            task_cls="sparkjobs.execution.failures:OutageAwareTask",
        )  # fmt: skip
        self.sparkjobs_config = config
        self.role: Role = role
        # In a worker with an event loop, the writes it sends once per loop turn.
        self.turn_writes: Publisher | None = None

    @property
    def announcer(self) -> Publisher:
        """Where this process announces a run's end: with its worker loop's next
        writes (sparkjobs.worker.turn_writes), or straight to Redis."""
        return self.turn_writes or self.redis

    @cached_property
    def redis(self) -> redis.Redis:
        """A client for sparkjobs' own small keys in the broker's Redis."""
        from sparkjobs.broker.client import redis_client

        # No command timeout: callers block on BLPOP with their own timeouts.
        connect_s = 10.0 if self.role == "daemon" else 2.0
        return redis_client(self.sparkjobs_config, timeout_s=None, connect_timeout_s=connect_s)


def create_app(config: Config, *, role: Role = "client") -> SparkjobsApp:
    """Build the Celery app for `config`.

    Args:
        config: the validated cluster config.
        role: "daemon" (worker, beat, Flower: retry the broker forever) or
            "client" (the CLI and library callers: short timeouts, fail fast).
    """
    broker_transport.install()  # one redis-py client per channel, not per command
    app = SparkjobsApp(config, role)
    events_always = config.worker.task_events == "always"
    transport: dict[str, object] = {
        "visibility_timeout": config.tasks.visibility_s,
        # Interactive runs go first: Redis priority sub-queues, 0 the highest.
        "queue_order_strategy": "priority",
    }
    if config.broker_key_prefix:
        transport["global_keyprefix"] = config.broker_key_prefix
    if role == "client":
        transport |= {"socket_connect_timeout": 2, "socket_timeout": 5, "max_retries": 1}
    app.conf.update(
        broker_url=config.broker,
        broker_transport_options=transport,
        broker_connection_retry_on_startup=role == "daemon",
        broker_connection_max_retries=None if role == "daemon" else 1,
        broker_connection_timeout=2 if role == "client" else 4,
        # JSON only: a pickle message is refused, never executed.
        task_serializer="json",
        result_serializer="json",
        event_serializer="json",
        accept_content=["json"],
        result_accept_content=["json"],
        # Results and audio go to SQL and the artifact store, never to Redis.
        result_backend=None,
        task_ignore_result=True,
        # At-least-once: a task is acknowledged after it ran, and a worker holds
        # one message per free slot, so a dead worker's work is redelivered.
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        worker_cancel_long_running_tasks_on_connection_loss=True,
        worker_soft_shutdown_timeout=config.worker.shutdown_grace_s,
        # Explicit queues: one per node, and a typo never creates an orphan queue.
        task_queues=[Queue(node, routing_key=node) for node in config.nodes],
        task_default_queue=config.first_node(),
        task_create_missing_queues=False,
        task_routes=(ServiceRouter(config),),
        task_publish_retry=role == "daemon",
        # A step, piece or join published by a task keeps its run's priority.
        task_inherit_parent_priority=True,
        # Flower and `up` follow tasks through events, three Redis publishes a task
        # (and one more a message for task-sent). Nobody reads them unless one of
        # those watches, so by default workers start without and a watcher switches
        # them on (sparkjobs.broker.events); worker events (heartbeats) are always sent.
        worker_send_task_events=events_always,
        task_send_sent_event=events_always,
        timezone="UTC",
        enable_utc=True,
        include=list(TASK_MODULES),
    )
    return app
