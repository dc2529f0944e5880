"""`sparkjobs doctor` in one call: observe everything, judge it, return the findings.

The broker and the database come first: without the broker nothing else that goes
through it (workers, published health) can be asked, and the report says so.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sparkjobs.doctor import checks
from sparkjobs.doctor.checks import Finding, Status
from sparkjobs.doctor.observe import (
    local_addresses,
    observe_broker,
    observe_database,
    observe_service,
    observe_workers,
)
from sparkjobs.doctor.report import Report

if TYPE_CHECKING:
    from sparkjobs.broker.app import SparkjobsApp
    from sparkjobs.config import Config


def diagnose(config: Config, *, node: str | None = None, timeout_s: float = 2.0) -> Report:
    """Check this node and the cluster it belongs to.

    Args:
        node: which node this host is; default: the node whose address is local.
        timeout_s: how long workers get to answer a ping.
    """
    from sparkjobs.broker.client import describe as describe_broker
    from sparkjobs.config.routing import queue_for_node
    from sparkjobs.store.engine import describe as describe_database

    if node is not None:
        queue_for_node(config, node)  # an unknown node is bad input (exit 2)
    local = local_addresses()
    me, identity = checks.identify(config.nodes, local, node)
    findings: list[Finding] = [identity]
    if me is not None:
        findings.append(checks.bond(me, config.nodes[me], local))

    broker = observe_broker(config)
    findings.append(
        checks.reachability(
            "broker",
            describe_broker(config.broker),
            broker.reach.round_trip_ms,
            broker.reach.error,
            "start `sparkjobs up` (the embedded broker)"
            if config.uses_embedded_broker
            else "start Redis on the broker's host, check broker_url and the bond",
        )
    )
    database = observe_database(config)
    findings.append(
        checks.reachability(
            "database",
            describe_database(config.database),
            database.reach.round_trip_ms,
            database.reach.error,
            "start the database server, check database_url and the bond",
        )
    )
    if database.reach.error is None:
        findings.append(checks.schema(database.current, database.head))
    findings.append(checks.broker_password(config.broker))

    app: SparkjobsApp | None = None
    if broker.reach.error is None:
        from sparkjobs.broker.app import create_app

        app = create_app(config)
        findings.append(checks.broker_persistence(broker.settings))
        settings = broker.settings
        findings.append(
            checks.broker_eviction(settings.get("maxmemory-policy") if settings else None)
        )
        findings.extend(_workers(config, app, timeout_s))
    else:
        findings.extend(
            Finding(f"worker {name}", Status.DOWN, "not asked: the broker is unreachable")
            for name in config.nodes
        )
    for name, service in config.services.items():
        seen = observe_service(config, app, name)
        findings.append(
            checks.service(
                name, service, seen.state, seen.detail, published=seen.published, fix=seen.fix
            )
        )
    broker_down = broker.reach.error is not None
    return Report(me, findings, unreachable=broker_down or database.reach.error is not None)


def _workers(config: Config, app: SparkjobsApp, timeout_s: float) -> list[Finding]:
    facts = observe_workers(app, timeout_s=timeout_s)
    findings = [checks.worker(name, facts.answered) for name in config.nodes]
    for name in facts.answered:
        misplaced = checks.worker_queues(name, facts.queues.get(name, []), config.services)
        if misplaced is not None:
            findings.append(misplaced)
        if name in facts.skew_s:
            findings.append(checks.clock(name, facts.skew_s[name]))
    return findings
