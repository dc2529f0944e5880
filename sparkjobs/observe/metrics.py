"""sparkjobs' own Prometheus metrics, exposed by each worker on its node's metrics port.

Counters and histograms (`counters`) are observed as steps finish and artifacts move;
gauges (`collect`: runs and steps by status, queue depth, in-flight against the limit,
the services' published health and line lengths) are read when Prometheus scrapes.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from wsgiref.simple_server import WSGIServer

    from sparkjobs.config import Config

from sparkjobs.observe.collect import StateCollector
from sparkjobs.observe.counters import REGISTRY

log = logging.getLogger(__name__)


@dataclass
class MetricsServer:
    """The HTTP servers of one node's metrics."""

    servers: list[WSGIServer]
    collector: StateCollector

    @property
    def urls(self) -> list[str]:
        return [f"http://{_host(s.server_address[0])}:{s.server_address[1]}/metrics"
                for s in self.servers]  # fmt: skip

    def stop(self) -> None:
        for server in self.servers:
            server.shutdown()
            server.server_close()


def serve(config: Config, node: str) -> MetricsServer | None:
    """Serve `node`'s metrics on its metrics port and addresses; None when metrics are off."""
    from sparkjobs.config.binds import bind_addresses

    port = config.metrics_port(node)
    if port is None:
        return None
    collector = StateCollector(config, node)
    registry = CollectorRegistry()
    registry.register(_Merged(collector))
    servers = [start_http_server(port, addr, registry)[0] for addr in bind_addresses(config, node)]
    return MetricsServer(servers, collector)


@dataclass(eq=False)
class _Merged(Collector):
    """The process's event metrics and the node's state gauges, in one registry."""

    state: StateCollector

    def collect(self) -> Iterator[Metric]:
        yield from REGISTRY.collect()
        yield from self.state.collect()


def _host(address: Any) -> str:
    text = str(address)
    return f"[{text}]" if ":" in text else text
