"""The health-probe thread of a node's worker: probe the node's services, publish.

Every `dispatch.health_interval_s` the worker probes each service of its node at
once (a slow server does not delay the others' readings) and publishes the readings
with their TTL, marked busy when every slot of the service is held (the leases say
so). Its first probe of a service also compares the configured models with what the
server serves, and so does every probe after the server was not up (a restart may
bring another model) and one a minute besides. It logs changes of state only, so a
server that stays down does not fill the log.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

from sparkjobs.broker.client import key
from sparkjobs.dispatch.health import HealthBoard, ServerState, busy_when_full
from sparkjobs.dispatch.leases import Leases
from sparkjobs.dispatch.probe import probe_service

if TYPE_CHECKING:
    import redis

    from sparkjobs.config import Config

log = logging.getLogger(__name__)

MODELS_RECHECK_S = 60.0  # an up server's model list is compared again after this


class HealthMonitor:
    """Probes `node`'s services in a daemon thread until `stop()`."""

    def __init__(self, config: Config, node: str, client: redis.Redis) -> None:
        self.config = config
        self.node = node
        self.services = config.node_services(node)
        self.board = HealthBoard(client, config)
        self.leases = Leases(client, functools.partial(key, config),
                             ttl_s=config.dispatch.lease_ttl_s)  # fmt: skip
        self._stop = threading.Event()
        self._states: dict[str, ServerState] = {}
        # When each service's models were last found served (monotonic seconds).
        self._models_seen: dict[str, float] = {}
        self._thread = threading.Thread(target=self._run, name=f"sparkjobs-health-{node}",
                                        daemon=True)  # fmt: skip

    def start(self) -> HealthMonitor:
        if self.services:
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)

    def probe_once(self, pool: ThreadPoolExecutor | None = None) -> None:
        """Probe every service of the node once and publish the readings."""
        names = list(self.services)
        if pool is None:
            for name in names:
                self._probe(name)
        else:
            list(pool.map(self._probe, names))

    def _probe(self, name: str) -> None:
        try:
            spec = self.services[name]
            held = self.leases.held(name)
            now = time.monotonic()
            seen = self._models_seen.get(name)
            check = seen is None or now - seen >= MODELS_RECHECK_S
            probe = probe_service(name, spec, self.config, busy=held > 0, check_models=check)
            if not probe.state.reachable:
                self._models_seen.pop(name, None)
            elif check:
                self._models_seen[name] = now
            reading = self.board.publish(name, busy_when_full(probe, held, spec.in_flight_limit))
        except Exception:  # a daemon thread must outlive a Redis or server blip
            log.warning("health probe of %s failed", name, exc_info=True)
            return
        if self._states.get(name) != reading.state:
            self._states[name] = reading.state
            level = logging.INFO if reading.state is ServerState.UP else logging.WARNING
            log.log(level, "service %s is %s%s%s", name, reading.state.value,
                    f": {reading.detail}" if reading.detail else "",
                    f"; fix: {reading.fix}" if reading.fix else "")  # fmt: skip

    def _run(self) -> None:
        with ThreadPoolExecutor(max_workers=len(self.services),
                                thread_name_prefix="sparkjobs-probe") as pool:  # fmt: skip
            while not self._stop.is_set():
                self.probe_once(pool)
                self._stop.wait(self.config.dispatch.health_interval_s)
