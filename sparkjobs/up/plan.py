"""What `sparkjobs up` runs: the one place where components register.

Each provider is a function `(config) -> list[Component]`, named by dotted path
so that `up` imports only what it runs. A later part of sparkjobs (the store,
the simulators, the run page) joins `up` by adding its provider here.
"""

from __future__ import annotations

import functools
import importlib
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

from sparkjobs.up.component import Component, Stage

if TYPE_CHECKING:
    from sparkjobs.config import Config

PROVIDERS = (
    "sparkjobs.up.plan:broker",
    "sparkjobs.up.simulators:components",
    "sparkjobs.up.store:components",
    "sparkjobs.up.plan:workers",
    "sparkjobs.up.plan:scheduler",
    "sparkjobs.up.plan:flower",
    "sparkjobs.up.plan:web",
)


def sparkjobs_argv(*args: str) -> tuple[str, ...]:
    """A child `sparkjobs` command run by this very interpreter."""
    return (sys.executable, "-m", "sparkjobs", *args)


def plan(config: Config) -> list[Component]:
    """Every component for this config, in start order."""
    found: list[Component] = []
    for dotted in PROVIDERS:
        module_name, _, function = dotted.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:  # a part that is not built yet
            if exc.name is None or not module_name.startswith(exc.name):
                raise
            continue
        provider: Callable[[Config], list[Component]] = getattr(module, function)
        found.extend(provider(config))
    return sorted(found, key=lambda component: component.stage)


def broker(config: Config) -> list[Component]:
    """The embedded Redis, unless broker_url points at one the operator runs."""
    if not config.uses_embedded_broker:
        return []
    from sparkjobs.up.probes import redis_answers
    from sparkjobs.up.redis_server import find_redis_server, redis_server_argv

    socket = config.embedded_socket
    state = config.data_dir / "redis"
    state.mkdir(parents=True, exist_ok=True)
    socket.parent.mkdir(parents=True, exist_ok=True)
    argv = redis_server_argv(find_redis_server(), socket=socket, data_dir=state)
    return [
        Component(
            name="redis",
            argv=tuple(argv),
            where=f"unix socket {socket}, append-only in {state}",
            stage=Stage.BROKER,
            ready=lambda: redis_answers(config),
        )
    ]


def workers(config: Config) -> list[Component]:
    """One worker per configured node."""
    from sparkjobs.up.probes import worker_answers
    from sparkjobs.worker.process import worker_concurrency, worker_name

    found = []
    for node in config.nodes:
        services = ", ".join(config.node_services(node)) or "no services"
        found.append(
            Component(
                name=f"worker {node}",
                argv=sparkjobs_argv("worker", "--node", node),
                where=f"queue {node}, {worker_concurrency(config, node)} threads ({services})",
                stage=Stage.WORKERS,
                ready=functools.partial(worker_answers, config, worker_name(node)),
            )
        )
    return found


def scheduler(config: Config) -> list[Component]:
    return [
        Component(
            name="beat",
            argv=sparkjobs_argv("beat"),
            where=f"jobs from {config.schedules_dir}",
            stage=Stage.SCHEDULER,
        )
    ]


def flower(config: Config) -> list[Component]:
    from sparkjobs.up.probes import http_answers

    url = f"http://{_host(str(config.flower.address))}:{config.flower.port}"
    return [
        Component(
            name="flower",
            argv=sparkjobs_argv("flower"),
            where=url,
            stage=Stage.WATCH,
            ready=lambda: http_answers(f"{url}/healthcheck"),
        )
    ]


def web(config: Config) -> list[Component]:
    """The run page and JSON API."""
    from sparkjobs.up.probes import http_answers
    from sparkjobs.web.app import public_url

    url = f"http://{_host(str(config.web.address))}:{config.web.port}"
    return [
        Component(
            name="web",
            argv=sparkjobs_argv("web"),
            where=public_url(config),
            stage=Stage.WATCH,
            ready=lambda: http_answers(f"{url}/healthz"),
        )
    ]


def _host(address: str) -> str:
    return f"[{address}]" if ":" in address else address
