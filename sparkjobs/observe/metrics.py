"""sparkjobs' own Prometheus metrics, exposed by each worker on its node's metrics port.

Counters and histograms (`counters`) are observed as steps finish and artifacts move;
gauges (`collect`: runs and steps by status, queue depth, in-flight against the limit,
service health) are read when Prometheus scrapes.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
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
    """The HTTP servers of one node's metrics and the thread that probes its services."""

    servers: list[WSGIServer]
    collector: StateCollector
    stopping: threading.Event = field(default_factory=threading.Event)

    @property
    def urls(self) -> list[str]:
        return [f"http://{_host(s.server_address[0])}:{s.server_address[1]}/metrics"
                for s in self.servers]  # fmt: skip

    def probe_forever(self, every_s: float) -> None:
        from sparkjobs.dispatch.probe import probe_services

        config, node = self.collector.config, self.collector.node
        while not self.stopping.is_set():
            for probe in probe_services(config, config.node_services(node)):
                self.collector.health[probe.service] = probe
            self.stopping.wait(every_s)

    def stop(self) -> None:
        self.stopping.set()
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
    metrics = MetricsServer(servers, collector)
    thread = threading.Thread(
        target=metrics.probe_forever, args=(config.alerts.health_every_s,),
        name=f"metrics-probe-{node}", daemon=True,
    )  # fmt: skip
    thread.start()
    return metrics


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
