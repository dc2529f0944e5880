"""Service -> node -> queue: where a task must go, decided from the config alone.

A task names the service it needs (`service="gemma"`) or, for node-level work
such as `ping`, the node itself (`node="spark2"`). The queue of a node is named
after the node. Nothing is sent for a service or node the config does not know.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from sparkjobs.errors import UnknownNode, UnknownService

if TYPE_CHECKING:
    from sparkjobs.config import Config, ServiceConfig


def queue_for_node(config: Config, node: str) -> str:
    """The queue that node `node`'s worker consumes."""
    if node not in config.nodes:
        raise UnknownNode(
            f"unknown node {node!r}; known: {', '.join(sorted(config.nodes))} "
            f"(defined under [nodes] in {config.source})"
        )
    return node


def service(config: Config, name: str) -> ServiceConfig:
    """The service called `name`, or an error that lists the known ones."""
    try:
        return config.services[name]
    except KeyError:
        known = ", ".join(sorted(config.services)) or "none"
        raise UnknownService(
            f"unknown service {name!r}; known: {known} (defined under [services] in "
            f"{config.source})"
        ) from None


def queue_for_service(config: Config, name: str) -> str:
    """The queue of the node that hosts service `name`."""
    return queue_for_node(config, service(config, name).node)


def default_service(config: Config, kinds: frozenset[str]) -> str:
    """The service marked default among `kinds`, else the first of those kinds."""
    candidates = [name for name, s in config.services.items() if s.kind in kinds]
    if not candidates:
        raise UnknownService(
            f"no service of kind {' or '.join(sorted(kinds))} is configured in {config.source}"
        )
    marked = [name for name in candidates if config.services[name].default]
    return (marked or candidates)[0]


class ServiceRouter:
    """A Celery router: sends each task to the queue of the node its target lives on.

    Celery calls it for every published task (`task_routes`). An explicit
    `queue=` option must agree with the target, so a mistake cannot strand a
    message on a queue nobody who can run it reads.
    """

    def __init__(self, config: Config) -> None:
        self._config = config

    def __call__(
        self,
        name: str,
        args: Sequence[Any],
        kwargs: Mapping[str, Any] | None,
        options: Mapping[str, Any],
        task: Any = None,
        **_: Any,
    ) -> dict[str, str] | None:
        kwargs = kwargs or {}
        if "service" in kwargs:
            queue = queue_for_service(self._config, str(kwargs["service"]))
        elif "node" in kwargs:
            queue = queue_for_node(self._config, str(kwargs["node"]))
        elif name.startswith("celery."):
            return None  # Celery's own housekeeping goes to the default queue
        else:
            raise UnknownService(
                f"task {name!r} names neither a service nor a node; pass service=NAME "
                f"(known: {', '.join(sorted(self._config.services))})"
            )
        explicit = options.get("queue")
        explicit_name = getattr(explicit, "name", explicit)
        if explicit_name and explicit_name != queue:
            raise UnknownService(
                f"task {name!r} for queue {queue!r} was given queue={explicit_name!r}; "
                "leave the queue to the router"
            )
        return {"queue": queue}
