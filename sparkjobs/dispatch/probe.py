"""Whether each model server answers: probed concurrently with short timeouts.

The run page, the workers' metrics and the alert watcher all ask this. A service is
healthy when its client's health check passes (Orpheus: its backend answers too).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterable

    from sparkjobs.backends.http import Health
    from sparkjobs.config import Config

PROBE_TIMEOUT_S = 2.0


@dataclass(frozen=True)
class ServiceHealth:
    """One probe of one service."""

    service: str
    node: str
    kind: str
    ok: bool
    problem: str | None
    checked_at: datetime


def probe_service(config: Config, name: str) -> ServiceHealth:
    """Probe `name` once, with timeouts short enough for a page or a scrape."""
    from sparkjobs.backends import client_for
    from sparkjobs.config.sections import TimeoutsConfig

    service = config.services[name]
    quick = TimeoutsConfig(
        connect_s=PROBE_TIMEOUT_S, first_byte_s=PROBE_TIMEOUT_S, total_s=PROBE_TIMEOUT_S
    )
    client = client_for(service.model_copy(update={"timeouts": quick}), name=name)
    ok: bool
    problem: str | None
    try:
        health: Health = getattr(client, "health")()  # noqa: B009  (every kind's client has one)
    except Exception as exc:  # a probe reports; it never raises
        ok, problem = False, f"{type(exc).__name__}: {exc}"
    else:
        ok, problem = health.ok, "; ".join(health.problems) or None
    finally:
        client.close()
    return ServiceHealth(name, service.node, service.kind, ok, problem, datetime.now(UTC))


def probe_services(config: Config, names: Iterable[str] | None = None) -> list[ServiceHealth]:
    """Probe every service (or those named) at once; in config order."""
    wanted = [n for n in (config.services if names is None else names) if n in config.services]
    if not wanted:
        return []
    with ThreadPoolExecutor(max_workers=min(16, len(wanted))) as pool:
        return list(pool.map(lambda name: probe_service(config, name), wanted))
