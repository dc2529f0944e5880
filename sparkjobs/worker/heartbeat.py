"""A worker's heartbeat: it is alive, and these are the units of work it holds.

Every `reconciler.heartbeat_interval_s` a worker writes its own key (`worker:<name>`,
expiring after `heartbeat_ttl_s`) and renews a claim, with the same expiry, on every
unit whose message it holds: reserved, running, or waiting out a countdown. A message
it receives is claimed within `CLAIM_GATHER_S`: a Celery signal wakes the thread, so a
message never sits unseen in a worker for a whole interval. A killed worker renews
nothing; its key and its claims expire, which the reconciler reads as "nobody holds
this any more".
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from typing import TYPE_CHECKING, Any

from celery.signals import task_received

from sparkjobs.broker.client import key, redis_client
from sparkjobs.broker.kombu_private import worker_requests
from sparkjobs.broker.units import Unit

if TYPE_CHECKING:
    import redis

    from sparkjobs.config import Config

log = logging.getLogger(__name__)

# How long a received message may wait for its claim, so that claims go in batches.
CLAIM_GATHER_S = 0.1

# KEYS: claims zset, the worker's key, workers zset. ARGV: ttl_ms, worker name, the
# worker's record (JSON), then the unit keys. Expired claims go (finished work is
# never unclaimed, it just stops being renewed). Expiries are on Redis' own clock,
# so the hosts need not agree on the time.
BEAT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local expiry = now + tonumber(ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
for i = 4, #ARGV do
  redis.call('ZADD', KEYS[1], expiry, ARGV[i])
end
redis.call('SET', KEYS[2], ARGV[3], 'PX', tonumber(ARGV[1]))
redis.call('ZADD', KEYS[3], now, ARGV[2])
return now
"""


def claims_key(config: Config) -> str:
    """The sorted set of claimed unit keys, scored by when each claim expires (ms)."""
    return key(config, "claims")


def worker_key(config: Config, worker: str) -> str:
    return key(config, "worker", worker)


def workers_key(config: Config) -> str:
    """Every worker name ever seen beating, scored by its last beat (ms)."""
    return key(config, "workers")


def held_units() -> list[Unit]:
    """The units whose messages this worker process holds (Celery's worker state)."""
    for _ in range(5):  # the consumer thread changes these sets while we read them
        try:
            requests = worker_requests()
            break
        except RuntimeError:
            continue
    else:
        return []
    units = [Unit.of_task(request.task_name, request.kwargs) for request in requests]
    return [unit for unit in units if unit is not None]


class Heartbeat:
    """Beats for `worker` in a daemon thread until `stop()`."""

    def __init__(self, config: Config, worker: str, client: redis.Redis | None = None) -> None:
        self.config = config
        self.worker = worker
        settings = config.reconciler
        self.interval_s = settings.heartbeat_interval_s
        self.ttl_ms = int(settings.heartbeat_ttl_s * 1000)
        # Its own client with timeouts: a hung Redis must not hang the heartbeat.
        self.client = client or redis_client(config, timeout_s=max(1.0, self.interval_s))
        self.started_at = time.time()
        self._received: set[Unit] = set()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._warned = False
        self._thread = threading.Thread(target=self._run, name="sparkjobs-heartbeat", daemon=True)

    def start(self) -> Heartbeat:
        task_received.connect(self._on_received, weak=False)
        self._thread.start()
        return self

    def stop(self) -> None:
        task_received.disconnect(self._on_received)
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)

    def beat(self, *, full: bool = True) -> bool:
        """Publish the heartbeat and this worker's claims once; False if Redis failed.

        Args:
            full: claim everything held; False claims only the messages received
                since the last beat (the cheap call a newly received message makes).
        """
        import redis as redis_lib

        with self._lock:
            received, self._received = self._received, set()
        units = {unit.key for unit in [*(held_units() if full else ()), *received]}
        record = {"pid": os.getpid(), "started_at": self.started_at, "held": len(units)}
        try:
            self.client.eval(
                BEAT, 3, claims_key(self.config), worker_key(self.config, self.worker),
                workers_key(self.config), self.ttl_ms, self.worker, json.dumps(record),
                *sorted(units),
            )  # fmt: skip
        except (redis_lib.RedisError, OSError) as exc:
            with self._lock:  # claim them next time
                self._received |= received
            if not self._warned:
                log.warning("heartbeat of %s: cannot reach Redis (%s)", self.worker, exc)
                self._warned = True
            return False
        if self._warned:
            log.info("heartbeat of %s: Redis answers again", self.worker)
            self._warned = False
        return True

    def _on_received(self, sender: Any = None, request: Any = None, **_: Any) -> None:
        unit = Unit.of_task(getattr(request, "task_name", None), getattr(request, "kwargs", None))
        if unit is None:
            return
        with self._lock:
            self._received.add(unit)
        self._wake.set()

    def _run(self) -> None:
        due = 0.0
        while not self._stop.is_set():
            full = time.monotonic() >= due
            if full:
                due = time.monotonic() + self.interval_s
            self.beat(full=full)
            if self._wake.wait(max(0.0, due - time.monotonic())):
                # A message arrived: gather those that follow it into one claim. A busy
                # worker then claims a batch a few times a second, not one per message,
                # and no message goes unclaimed for long next to the reconciler's wait.
                self._stop.wait(CLAIM_GATHER_S)
            self._wake.clear()
