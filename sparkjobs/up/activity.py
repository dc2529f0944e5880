"""The live view of `sparkjobs up`: one line per task event, read from Celery's events,
and one line when a unit of work joins a service's line (waiting is no task event)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from sparkjobs.broker.client import redis_client
from sparkjobs.broker.events import Watching
from sparkjobs.broker.units import Unit
from sparkjobs.dispatch.handoff import waiting_channel

if TYPE_CHECKING:
    from sparkjobs.broker.app import SparkjobsApp

# The events a person wants to see, and how each reads.
_VERBS = {
    "task-received": "queued on",
    "task-started": "started on",
    "task-succeeded": "succeeded on",
    "task-failed": "FAILED on",
    "task-retried": "will retry on",
    "task-rejected": "rejected by",
    "worker-online": "online:",
    "worker-offline": "offline:",
}


def describe(event: dict[str, Any], names: dict[str, str]) -> str | None:
    """One line for a Celery event, or None for events not worth a line."""
    kind = event.get("type", "")
    verb = _VERBS.get(kind)
    if verb is None:
        return None
    stamp = time.strftime("%H:%M:%S", time.localtime(event.get("timestamp", time.time())))
    host = event.get("hostname", "?")
    if kind.startswith("worker-"):
        return f"{stamp}  worker {verb} {host}"
    uuid = event.get("uuid", "")
    if "name" in event:
        names[uuid] = event["name"]
    name = names.get(uuid, "task")
    line = f"{stamp}  {name}[{uuid[:8]}] {verb} {host}"
    if kind == "task-succeeded" and "runtime" in event:
        line += f" in {event['runtime'] * 1000:.0f} ms"
    if kind in ("task-failed", "task-retried") and event.get("exception"):
        line += f": {event['exception']}"
    if kind in ("task-succeeded", "task-failed", "task-rejected"):
        names.pop(uuid, None)
    return line


def describe_waiting(notice: bytes | str, now: float | None = None) -> str | None:
    """One line for a unit that joined a line, e.g. "12:00:03  sparkjobs.speak_piece[
    1c2d3e4f] step 0 piece 4: waiting for orpheus (3rd in line)"; None if unreadable."""
    try:
        found = json.loads(notice)
        unit = Unit.parse(str(found["unit"]))
        text = str(found["text"])
    except (ValueError, KeyError, TypeError):
        return None
    if unit is None:
        return None
    stamp = time.strftime("%H:%M:%S", time.localtime(time.time() if now is None else now))
    piece = "" if unit.piece is None else f" piece {unit.piece + 1}"
    return f"{stamp}  {unit.task}[{str(unit.run_id)[:8]}] step {unit.index}{piece}: {text}"


def follow(app: SparkjobsApp, emit: Callable[[str], None], stop: threading.Event) -> None:
    """Call `emit` with a line per event until `stop` is set (run it in a thread)."""
    names: dict[str, str] = {}

    def on_event(event: dict[str, Any]) -> None:
        line = describe(event, names)
        if line is not None:
            emit(line)

    waiting = threading.Thread(target=_follow_waiting, args=(app, emit, stop),
                               name="activity-waiting", daemon=True)  # fmt: skip
    waiting.start()
    # Workers send task events only while someone asks for them (sparkjobs.broker.events).
    watching = Watching(app)
    watching.start()
    try:
        _capture(app, on_event, stop)
    finally:
        watching.stop()
        waiting.join(timeout=5)


def _follow_waiting(app: SparkjobsApp, emit: Callable[[str], None], stop: threading.Event) -> None:
    channel = waiting_channel(app.sparkjobs_config)
    while not stop.is_set():
        client = redis_client(app.sparkjobs_config, timeout_s=5.0)
        try:
            pubsub = client.pubsub(ignore_subscribe_messages=True)  # type: ignore[no-untyped-call]
            pubsub.subscribe(channel)
            while not stop.is_set():
                message = pubsub.get_message(timeout=1.0)
                line = None if message is None else describe_waiting(message["data"])
                if line is not None:
                    emit(line)
        except Exception:  # the broker went away: try again
            stop.wait(1.0)
        finally:
            client.close()


def _capture(
    app: SparkjobsApp, on_event: Callable[[dict[str, Any]], None], stop: threading.Event
) -> None:
    while not stop.is_set():
        try:
            with app.connection_for_read() as connection:
                receiver = app.events.Receiver(connection, handlers={"*": on_event})
                while not stop.is_set():
                    try:
                        receiver.capture(limit=None, timeout=1.0, wakeup=False)
                    except TimeoutError:
                        continue
        except (TimeoutError, OSError):  # the broker went away: try again
            stop.wait(1.0)
        except Exception:
            stop.wait(1.0)
