"""Celery task events on demand: workers send them while someone watches.

A worker publishes three task events a task (received, started, succeeded), each a
Redis PUBLISH that nobody reads unless Flower or the live view of `sparkjobs up`
runs. With `[worker] task_events = "on-demand"` (the default) workers start with
task events off (worker events such as heartbeats stay on), and a watcher switches
them on the Celery way, with the `enable_events` remote-control command: at its
start and every few seconds, for workers started later (as Flower itself does).

A broadcast reaches only the workers already listening, so a watcher also leaves a
key with a TTL in Redis; a worker that finds it when it is ready switches itself
on. The key is written before each broadcast, so a worker either sees the key or
is already listening when the broadcast comes. A watcher never switches events off,
since another one may still be watching: each worker looks at the key every
`ENABLE_INTERVAL_S` and switches its task events off when the key it saw has
expired, that is once no watcher has renewed it for `WATCHED_TTL_S`. Events switched
on without the key (by hand with `celery control enable_events`, or by a Flower
started outside sparkjobs, which broadcasts but leaves no key) stay on.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING, Any

from sparkjobs.broker.client import key

if TYPE_CHECKING:
    from sparkjobs.broker.app import SparkjobsApp

log = logging.getLogger(__name__)

# Flower's own interval (flower.events.Events.events_enable_interval is 5000 ms).
ENABLE_INTERVAL_S = 5.0
# The key outlives a few missed renewals, then says nobody watches any more.
WATCHED_TTL_S = 3 * ENABLE_INTERVAL_S
# A worker's look at the key gives up after this long (it blocks the event loop).
LOOK_TIMEOUT_S = 1.0


def watched_key(app: SparkjobsApp) -> str:
    """The key a watcher renews while it watches; workers read it when ready."""
    return key(app.sparkjobs_config, "events", "watched")


def ask_for_task_events(app: SparkjobsApp) -> None:
    """Say that someone watches: the key first, then the broadcast (see above)."""
    app.redis.set(watched_key(app), "1", ex=int(WATCHED_TTL_S))
    app.control.enable_events()


class Watching(threading.Thread):
    """Asks the workers for task events now and every `interval_s`, until stopped."""

    def __init__(self, app: SparkjobsApp, *, interval_s: float = ENABLE_INTERVAL_S) -> None:
        super().__init__(name="task-events", daemon=True)
        self.app = app
        self.interval_s = interval_s
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            try:
                ask_for_task_events(self.app)
            except Exception as exc:  # the broker is away: ask again next time
                log.info("could not ask the workers for task events: %s", exc)
            self._halt.wait(self.interval_s)

    def stop(self) -> None:
        """Stop asking (workers already asked keep sending until the key expires)."""
        self._halt.set()


def task_events_while_watched(app: SparkjobsApp) -> None:
    """In a worker: task events on while a watcher's key is there, off once it is gone.

    Off only when the key this worker saw is gone (see the module's docstring).
    Looked at when the worker is ready, then every `ENABLE_INTERVAL_S` on the worker's
    own timer (its event loop, where Celery's `enable_events` command makes the same
    change). Does nothing with `task_events = "always"`: the worker sends them from
    the start, for good.
    """
    from celery.signals import worker_ready

    if app.sparkjobs_config.worker.task_events == "always":
        return

    from sparkjobs.broker.client import redis_client

    # Its own client, with a command timeout: a look runs in the worker's event loop.
    client = redis_client(app.sparkjobs_config, timeout_s=LOOK_TIMEOUT_S)
    seen = False  # whether the last look found the key

    def follow(consumer: Any) -> None:
        nonlocal seen
        dispatcher = getattr(consumer, "event_dispatcher", None)
        if dispatcher is None or not dispatcher.groups:  # events off altogether
            return
        try:
            watched = bool(client.exists(watched_key(app)))
        except Exception as exc:  # the next look, or a watcher's broadcast, settles it
            log.info("could not tell whether anyone watches task events: %s", exc)
            return
        gone, seen = seen and not watched, watched
        if watched and "task" not in dispatcher.groups:
            dispatcher.groups.add("task")
            log.info("task events on: a watcher asked for them")
        elif gone and "task" in dispatcher.groups:
            dispatcher.groups.discard("task")
            log.info("task events off: no watcher asked for them in %g s", WATCHED_TTL_S)

    def on_ready(sender: Any = None, **_: Any) -> None:
        if getattr(sender, "app", None) is not app:
            return
        follow(sender)
        sender.timer.call_repeatedly(ENABLE_INTERVAL_S, follow, (sender,))

    worker_ready.connect(on_ready, weak=False)
