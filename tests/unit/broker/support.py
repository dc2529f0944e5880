"""Stand-ins for what kombu's Redis channel would reach the server through, so that
its own code runs in a unit test: the client a poll uses, and pipelines and publish
batches that record their commands."""

from __future__ import annotations

from typing import Any

BODY = '[[], {"run_id": "r1", "index": 0}, {}]'  # a Celery task message's body


class RedisConnection:
    """Stands in for the redis-py connection a channel polls on."""

    def __init__(self) -> None:
        self.sent: list[tuple[Any, ...]] = []

    def send_command(self, *args: Any) -> None:
        self.sent.append(args)


class Client:
    """Stands in for the channel's redis-py client: the poll's connection and reply."""

    def __init__(self) -> None:
        self.connection = RedisConnection()
        self.reply: Any = None

    def parse_response(self, connection: Any, command: str, **options: Any) -> Any:
        return self.reply


class Recorder:
    """Stands in for a Redis pipeline or a publish batch: records every command."""

    def __init__(self) -> None:
        self.commands: list[tuple[Any, ...]] = []

    def __getattr__(self, command: str) -> Any:
        def record(*args: Any, **kwargs: Any) -> Recorder:
            self.commands.append((command, *args))
            return self

        return record

    def add(self, command: str, *args: Any) -> None:  # kombu's publish batch
        self.commands.append((command, *args))


def published(channel: Any, priority: int = 0) -> tuple[str, str]:
    """The Redis list and the JSON that kombu's channel pushes a Celery message as."""
    batch = Recorder()
    message = channel.prepare_message(BODY, priority, "application/json", "utf-8",
                                      {"task": "sparkjobs.step"})  # fmt: skip
    channel.basic_publish(message, "", "spark1", _publish_batch=batch)
    [(command, key, raw)] = batch.commands
    assert command == "lpush"
    return key, raw
