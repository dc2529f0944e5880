"""sparkjobs' own Prometheus metrics, exposed by each worker on its node's metrics port.

Counters and histograms are observed as steps finish and artifacts move; gauges (runs
and steps by status, queue depth, in-flight against the limit, service health) are
read when Prometheus scrapes. Labels are node, service, kind and status names only:
never a URL, a prompt or a secret.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from wsgiref.simple_server import WSGIServer

    from sparkjobs.config import Config
    from sparkjobs.dispatch.probe import ServiceHealth
    from sparkjobs.store.models import Step

log = logging.getLogger(__name__)

REGISTRY = CollectorRegistry(auto_describe=True)
_SECONDS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900)

STEPS_FINISHED = Counter(
    "sparkjobs_steps_finished", "Steps that reached an end, by outcome",
    ["node", "service", "kind", "status"], registry=REGISTRY,
)  # fmt: skip
LATENCY = Histogram(
    "sparkjobs_step_latency_seconds", "Duration of the call that finished a step",
    ["node", "service", "kind"], buckets=_SECONDS, registry=REGISTRY,
)  # fmt: skip
FIRST_OUTPUT = Histogram(
    "sparkjobs_time_to_first_output_seconds", "Time to first token (LLM) or first audio (TTS)",
    ["node", "service", "kind"], buckets=_SECONDS, registry=REGISTRY,
)  # fmt: skip
TOKENS_PER_S = Histogram(
    "sparkjobs_tokens_per_second", "Decode speed of LLM steps",
    ["node", "service"], buckets=(1, 5, 10, 20, 40, 60, 80, 120, 200, 400, 1000),
    registry=REGISTRY,
)  # fmt: skip
REALTIME_FACTOR = Histogram(
    "sparkjobs_audio_realtime_factor", "Audio seconds / wall seconds (above 1: faster)",
    ["node", "service"], buckets=(0.25, 0.5, 1, 1.5, 2, 4, 8, 16, 32), registry=REGISTRY,
)  # fmt: skip
ARTIFACT_BYTES = Counter(
    "sparkjobs_artifact_bytes", "Artifact bytes pulled into a node's store over the network",
    ["node"], registry=REGISTRY,
)  # fmt: skip
ARTIFACT_SPEED = Histogram(
    "sparkjobs_artifact_fetch_bytes_per_second", "Speed of each artifact fetch into a node",
    ["node"], buckets=tuple(10.0**e for e in range(4, 11)), registry=REGISTRY,
)  # fmt: skip


def record_transfer(node: str, size_bytes: int, seconds: float) -> None:
    """Count an artifact fetch into `node`'s store."""
    ARTIFACT_BYTES.labels(node).inc(size_bytes)
    if seconds > 0:
        ARTIFACT_SPEED.labels(node).observe(size_bytes / seconds)


class _Seen:
    """Step ids already observed, so a redelivered task is not counted twice."""

    def __init__(self, size: int = 4096) -> None:
        self._ids: OrderedDict[uuid.UUID, None] = OrderedDict()
        self._size = size
        self._lock = threading.Lock()

    def first(self, step_id: uuid.UUID) -> bool:
        with self._lock:
            if step_id in self._ids:
                return False
            self._ids[step_id] = None
            if len(self._ids) > self._size:
                self._ids.popitem(last=False)
            return True


_seen = _Seen()


def observe_step(step: Step) -> None:
    """Observe a finished step's outcome and timings (once per step per process)."""
    if not step.status.terminal or not _seen.first(step.id):
        return
    kind = str((step.spec or {}).get("kind", step.name or "custom"))
    STEPS_FINISHED.labels(step.node, step.service, kind, step.status.value).inc()
    if step.status.value != "succeeded":
        return
    if step.latency_ms is not None:
        LATENCY.labels(step.node, step.service, kind).observe(step.latency_ms / 1000)
    if step.ttft_ms is not None:
        FIRST_OUTPUT.labels(step.node, step.service, kind).observe(step.ttft_ms / 1000)
    if step.tokens_per_s is not None:
        TOKENS_PER_S.labels(step.node, step.service).observe(step.tokens_per_s)
    if step.rtf is not None:
        REALTIME_FACTOR.labels(step.node, step.service).observe(step.rtf)


@dataclass(eq=False)  # registries keep collectors in a dict
class StateCollector(Collector):
    """Gauges read at scrape time from SQL, Redis and the last health probes."""

    config: Config
    node: str
    health: dict[str, ServiceHealth] = field(default_factory=dict)

    def collect(self) -> Iterator[Metric]:
        from sparkjobs.observe.collect import queue_depth, runs_by_status, steps_now

        services = self.config.node_services(self.node)
        runs = GaugeMetricFamily("sparkjobs_runs", "Runs in the store by status", labels=["status"])
        steps = GaugeMetricFamily(
            "sparkjobs_steps", "Steps of this node by service and status",
            labels=["node", "service", "status"],
        )  # fmt: skip
        flight = GaugeMetricFamily(
            "sparkjobs_in_flight", "Calls running now on a service", labels=["node", "service"]
        )
        limit = GaugeMetricFamily(
            "sparkjobs_in_flight_limit", "The service's max_in_flight", labels=["node", "service"]
        )
        depth = GaugeMetricFamily(
            "sparkjobs_queue_depth", "Messages waiting in the node's queue", labels=["node"]
        )
        up = GaugeMetricFamily(
            "sparkjobs_service_up",
            "1 when the service's health check passed",
            labels=["node", "service"],
        )
        try:
            for status, count in runs_by_status(self.config).items():
                runs.add_metric([status], count)
            counts, running = steps_now(self.config, self.node)
            for (name, status), count in counts.items():
                steps.add_metric([self.node, name, status], count)
            for name, spec in services.items():
                flight.add_metric([self.node, name], running.get(name, 0))
                limit.add_metric([self.node, name], spec.in_flight_limit)
        except Exception as exc:  # a scrape reports what it can
            log.warning("metrics: the store did not answer: %s", exc)
        found = queue_depth(self.config, self.node)
        if found is not None:
            depth.add_metric([self.node], found)
        for name in services:
            probe = self.health.get(name)
            if probe is not None:
                up.add_metric([self.node, name], 1.0 if probe.ok else 0.0)
        yield from (runs, steps, flight, limit, depth, up)


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
    from sparkjobs.artifacts.server import bind_addresses

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
