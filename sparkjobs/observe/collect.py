"""The metrics gauges, read at scrape time, and the worker hook that observes steps.

Counts come from SQL (the truth about runs and steps), the queue's length from
Redis, and the services' health and line lengths from the readings the workers
publish in Redis (`sparkjobs.dispatch.status`, what dispatch obeys); `install(app)`
connects the hook that observes each finished step once.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import func, select

from sparkjobs.store.models import Attempt, AttemptStatus, Run, Status, Step

if TYPE_CHECKING:
    from sqlalchemy.orm import Session, sessionmaker

    from sparkjobs.broker.app import SparkjobsApp
    from sparkjobs.config import Config

log = logging.getLogger(__name__)

# The tasks after which a step may have finished: a step itself, or the join of a
# speak step's pieces.
FINISHING_TASKS = ("sparkjobs.step", "sparkjobs.join_audio")


def _sessions(database_url: str) -> sessionmaker[Session]:
    from sparkjobs.store.engine import shared_sessions

    return shared_sessions(database_url)


def runs_by_status(config: Config) -> dict[str, int]:
    """How many runs the store holds in each status (every status, zeros included)."""
    with _sessions(config.database)() as session:
        rows = session.execute(select(Run.status, func.count()).group_by(Run.status))
        found = {Status(status).value: int(count) for status, count in rows}
    return {status.value: found.get(status.value, 0) for status in Status}


def steps_now(config: Config, node: str) -> tuple[dict[tuple[str, str], int], dict[str, int]]:
    """Steps of `node` by (service, status), and running attempts by service."""
    with _sessions(config.database)() as session:
        rows = session.execute(
            select(Step.service, Step.status, func.count())
            .where(Step.node == node)
            .group_by(Step.service, Step.status)
        )
        counts = {(service, Status(status).value): int(n) for service, status, n in rows}
        running = session.execute(
            select(Step.service, func.count())
            .join(Attempt, Attempt.step_id == Step.id)
            .where(Step.node == node, Attempt.status == AttemptStatus.RUNNING)
            .group_by(Step.service)
        )
        return counts, {service: int(n) for service, n in running}


def queue_depth(config: Config, node: str) -> int | None:
    """Messages waiting in `node`'s queue, or None when Redis does not answer."""
    from sparkjobs.broker.client import queue_keys, redis_client

    try:
        client = redis_client(config, timeout_s=1.0)
        try:
            # Every priority level is a list of its own.
            keys = queue_keys(config.broker_key_prefix, node)
            return sum(int(client.llen(key)) for key in keys)
        finally:
            client.close()
    except Exception as exc:  # a scrape reports what it can
        log.warning("metrics: the broker did not answer: %s", exc)
        return None


def observe_finished(config: Config, run_id: str, index: int) -> None:
    """Observe step `index` of a run if it has finished (see `sparkjobs.observe.metrics`)."""
    from sparkjobs.observe.counters import observe_step

    with _sessions(config.database)() as session:
        step = session.scalar(
            select(Step).where(Step.run_id == uuid.UUID(run_id), Step.index == index)
        )
        if step is not None:
            observe_step(step)


def install(app: SparkjobsApp) -> None:
    """Observe steps as this worker's tasks finish them."""
    from celery.signals import task_postrun

    config = app.sparkjobs_config

    def after_task(sender: Any = None, kwargs: dict[str, Any] | None = None, **_: Any) -> None:
        if getattr(sender, "name", None) not in FINISHING_TASKS or not kwargs:
            return
        try:
            observe_finished(config, str(kwargs["run_id"]), int(kwargs["index"]))
        except Exception as exc:  # metrics never fail a task
            log.warning("metrics: could not observe step: %s", exc)

    task_postrun.connect(after_task, weak=False)


@dataclass(eq=False)  # registries keep collectors in a dict
class StateCollector(Collector):
    """Gauges read at scrape time from SQL and Redis (queues, readings, lines)."""

    config: Config
    node: str

    def collect(self) -> Iterator[Metric]:
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
            "1 when the service's published reading is up, busy or overloaded; 0 when down "
            "or loading; absent when no worker publishes one",
            labels=["node", "service"],
        )
        busy = GaugeMetricFamily(
            "sparkjobs_service_busy",
            "1 when the service is up with every slot taken (its reading says busy)",
            labels=["node", "service"],
        )
        line = GaugeMetricFamily(
            "sparkjobs_line_length", "Units of work waiting in the service's line",
            labels=["node", "service"],
        )  # fmt: skip
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
        from sparkjobs.dispatch.status import read_statuses

        for said in read_statuses(self.config, services):
            if said.known:
                up.add_metric([self.node, said.service], 1.0 if said.ok else 0.0)
                busy.add_metric([self.node, said.service], float(said.state == "busy"))
            if said.line is not None:
                line.add_metric([self.node, said.service], said.line)
        yield from (runs, steps, flight, limit, depth, up, busy, line)
