"""The reconciler: unfinished work whose message is gone is queued again, within a minute.

SQL says which unit of work each unfinished run waits for (`units.pending_units`);
Redis says which units have a message in a queue, which ones wait in a service's line,
and which ones a live worker holds (its heartbeat claims). Each pass also hands the
slots that expired leases freed to the lines' heads. A unit that has none of these
for `reconciler.unclaimed_s` lost its message: the publish failed, Redis restarted
without it, or the worker holding it was killed. Its attempts still marked running are
closed as lost, and its message comes back: the dead worker's unacknowledged copy is
restored (kombu's own restore), or a new one is published. Execution is idempotent, so
a unit that was not lost after all only runs twice, harmlessly. Unacknowledged copies
of finished work that no live worker holds are dropped, so the visibility timeout never
redelivers them.

Every worker runs a Reconciler thread; a lock in Redis makes one of them active.
A pass reads every unfinished run and every queued message, so its cost grows with
the backlog (about 25 µs a queued run here): passes are spaced so that they take at
most 1/PASS_SPACING of the time, and a message already decoded is not decoded again.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy import select, update
from sqlalchemy.exc import DBAPIError

from sparkjobs.broker.client import key, queue_keys, redis_client
from sparkjobs.broker.kombu_private import (
    UNACKED_INDEX_KEY,
    UNACKED_KEY,
    restore_unacked,
    unacked_payload,
)
from sparkjobs.broker.leader import LeaderLock
from sparkjobs.broker.publish import PIECE_TASK
from sparkjobs.broker.units import PendingUnit, Unit, decode_message, pending_units
from sparkjobs.dispatch.admission import gate_of, send
from sparkjobs.store.engine import reading
from sparkjobs.store.models import Attempt, AttemptStatus
from sparkjobs.store.runs import utc_now
from sparkjobs.worker.heartbeat import claims_key, worker_key

if TYPE_CHECKING:
    import redis
    from sqlalchemy.orm import Session, sessionmaker

    from sparkjobs.broker.app import SparkjobsApp
    from sparkjobs.config import Config

log = logging.getLogger(__name__)

# KEYS: claims zset. Drops expired claims, returns the live ones (Redis' clock).
LIVE_CLAIMS = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
return redis.call('ZRANGE', KEYS[1], 0, -1)
"""

# A pass starts no sooner than this many times its predecessor's duration after that
# one started (and never sooner than `interval_s` after it ended): at most 5% of the
# worker's time goes to passes, however long the queues.
PASS_SPACING = 20


@dataclass
class Pass:
    """What one reconciler pass saw and did."""

    pending: int = 0
    missing: int = 0
    restored: list[Unit] = field(default_factory=list)
    published: list[Unit] = field(default_factory=list)
    lost_attempts: int = 0
    dropped: int = 0  # unacknowledged copies of finished work
    handed: int = 0  # units handed slots that expired leases had left free


@dataclass(frozen=True)
class Unacked:
    tag: str
    unit: Unit
    delivered_at: float  # the consumer's time.time()


class Reconciler:
    """Queues lost work again; one pass every `reconciler.interval_s` while it holds the lock."""

    def __init__(
        self,
        config: Config,
        *,
        client: redis.Redis | None = None,
        app: SparkjobsApp | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        from sparkjobs.broker.app import create_app
        from sparkjobs.execution.context import sessions_for

        self.config = config
        self.settings = config.reconciler
        self.client = client or redis_client(config, timeout_s=5.0)
        # A client app: publishing fails fast while Redis is down (the next pass retries).
        self.app = app or create_app(config, role="client")
        self.sessions: sessionmaker[Session] = sessions_for(config.database)
        self.lock = LeaderLock(self.client, key(config, "reconciler"),
                               ttl_s=self.settings.lock_ttl_s, role="reconciler")  # fmt: skip
        # When each suspect was first seen without a message, kept in Redis so that a
        # reconciler taking over the lock goes on counting instead of starting afresh
        # (wall-clock seconds: the next holder may run on another host).
        self.suspects_key = key(config, "reconciler", "suspects")
        self.clock = clock
        self._units: dict[bytes, str | None] = {}  # a queued message's unit key, by its bytes
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sparkjobs-reconciler", daemon=True)

    def start(self) -> Reconciler:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)
        self.lock.release()

    def _run(self) -> None:
        due = 0.0
        while not self._stop.wait(self.settings.interval_s):
            if not self.lock.hold() or time.monotonic() < due:
                continue  # the lock is renewed every interval, even between spaced passes
            started = time.monotonic()
            try:
                self.reconcile()
            except DBAPIError as exc:
                log.warning("reconciler: the database did not answer: %s", exc)
            except Exception:  # a daemon thread must outlive a Redis blip or a bug
                log.warning("reconciler: pass failed", exc_info=True)
            due = next_pass_due(started, time.monotonic())

    def reconcile(self) -> Pass:
        """One pass: find units without a message and queue them again.

        A unit is queued again only after it was seen without a message and without
        a claim for `unclaimed_s`, over at least two passes, so a message in transit
        between a queue and a worker is never mistaken for a lost one.
        """
        done = Pass()
        with reading(self.sessions) as session:
            pending = {p.unit.key: p for p in pending_units(session)}
        # A lease that expired (its worker was killed) freed a slot nobody handed on.
        done.handed = self._drain_lines()
        claimed = {_text(k) for k in self.client.eval(LIVE_CLAIMS, 1, claims_key(self.config))}
        queued = self._queued()
        lined = self._lined()
        unacked = self._unacked()
        done.pending = len(pending)
        missing = set(pending) - claimed - queued - lined
        done.missing = len(missing)
        now = self.clock()
        seen = self._seen_since(missing, now)
        due = [pending[k] for k in sorted(missing)
               if now - seen[k] >= self.settings.unclaimed_s]  # fmt: skip
        copies: dict[str, list[Unacked]] = {}
        for entry in unacked:
            copies.setdefault(entry.unit.key, []).append(entry)
        for unit in due:
            done.lost_attempts += self._lose_attempts(unit)
            if self._requeue(unit, copies.pop(unit.unit.key, [])):
                done.restored.append(unit.unit)
            else:
                done.published.append(unit.unit)
            seen[unit.unit.key] = now  # its new message needs time to be claimed
        self._keep_seen(seen)
        done.dropped = self._drop_finished(unacked, set(pending) | claimed)
        return done

    # --- what Redis holds -----------------------------------------------------

    def _seen_since(self, missing: set[str], now: float) -> dict[str, float]:
        """When each missing unit was first seen missing (now, for a new suspect)."""
        stored: dict[bytes, bytes] = self.client.hgetall(self.suspects_key)  # type: ignore[assignment]
        known = {_text(k): float(v) for k, v in stored.items()}
        return {k: min(known.get(k, now), now) for k in missing}

    def _keep_seen(self, seen: dict[str, float]) -> None:
        """Replace the stored suspects with this pass's (units found again are forgotten)."""
        pipe = self.client.pipeline(transaction=True)
        pipe.delete(self.suspects_key)
        if seen:
            pipe.hset(self.suspects_key, mapping={k: repr(v) for k, v in seen.items()})
            pipe.expire(self.suspects_key, int(4 * self.settings.unclaimed_s) + 60)
        pipe.execute()

    def _queued(self) -> set[str]:
        prefix = self.config.broker_key_prefix
        pipe = self.client.pipeline(transaction=False)
        for node in self.config.nodes:
            for name in queue_keys(prefix, node):
                pipe.lrange(name, 0, -1)
        known, self._units = self._units, {}
        for raw in (raw for batch in pipe.execute() for raw in batch):
            if raw not in self._units:
                self._units[raw] = known[raw] if raw in known else _unit_key(raw)
        return {unit for unit in self._units.values() if unit is not None}

    def _drain_lines(self) -> int:
        gate = gate_of(self.app)
        return sum(gate.drain(service) for service in self.config.services)

    def _lined(self) -> set[str]:
        """The units waiting in the services' lines: their runs hold nothing, and lose
        nothing, while they wait there."""
        gate = gate_of(self.app)
        pipe = self.client.pipeline(transaction=False)
        for service in self.config.services:
            pipe.zrange(gate.leases.line_key(service), 0, -1)
        return {_text(unit) for batch in pipe.execute() for unit in batch}

    def _unacked(self) -> list[Unacked]:
        prefix = self.config.broker_key_prefix
        raw: dict[bytes, bytes] = self.client.hgetall(prefix + UNACKED_KEY)  # type: ignore[assignment]
        if not raw:
            return []
        ranked: list[tuple[bytes, float]] = self.client.zrange(  # type: ignore[assignment]
            prefix + UNACKED_INDEX_KEY, 0, -1, withscores=True
        )
        scores = dict(ranked)
        entries = []
        for tag, value in raw.items():
            try:
                payload = unacked_payload(value)
            except (ValueError, IndexError, TypeError):
                continue
            unit = decode_message(json.dumps(payload))
            if unit is not None:
                entries.append(Unacked(_text(tag), unit, float(scores.get(tag, 0.0))))
        return entries

    # --- what the pass does -------------------------------------------------------

    def _lose_attempts(self, pending: PendingUnit) -> int:
        """Close the unit's attempts still marked running: their worker is gone."""
        unit = pending.unit
        which = Attempt.piece.is_(None) if unit.piece is None else Attempt.piece == unit.piece
        running = (
            (Attempt.step_id == pending.step_id) & which & (Attempt.status == AttemptStatus.RUNNING)
        )
        with self.sessions.begin() as session:
            attempts = session.execute(select(Attempt.id, Attempt.worker).where(running)).all()
            for attempt in attempts:
                gone = "restarted" if self.client.exists(worker_key(self.config, attempt.worker)) \
                    else "stopped heartbeating"  # fmt: skip
                error = (f"lost: worker {attempt.worker} {gone} while running it; "
                         "the reconciler queued it again")  # fmt: skip
                session.execute(
                    update(Attempt)
                    .where(Attempt.id == attempt.id, Attempt.status == AttemptStatus.RUNNING)
                    .values(status=AttemptStatus.FAILED, finished_at=utc_now(), error=error)
                )
        return len(attempts)

    def _requeue(self, pending: PendingUnit, copies: list[Unacked]) -> bool:
        """Put the unit's message back; True if a dead worker's copy was restored."""
        unit = pending.unit
        prefix = self.config.broker_key_prefix
        for copy in copies:
            if not self.client.hexists(prefix + UNACKED_KEY, copy.tag):
                continue  # acknowledged meanwhile: restoring it would push nothing
            try:
                with self.app.connection_for_write() as connection:
                    restore_unacked(connection.default_channel, copy.tag)
            except Exception:
                log.warning("reconciler: could not restore %s; publishing it anew", unit.key,
                            exc_info=True)  # fmt: skip
                break
            else:
                self._log(unit, "restored the unacknowledged message of a worker that is gone")
                self._drop(copies[1:])  # one copy is enough
                return True
        # A piece goes through its service's line; a step whose kind the gate admits
        # joins it when its task finds no slot.
        sent = send(self.app, unit, pending.service, interactive=pending.interactive,
                    gated=unit.task == PIECE_TASK)  # fmt: skip
        self._log(unit, "published it again" if sent else "put it in its service's line")
        return False

    def _drop_finished(self, unacked: list[Unacked], wanted: set[str]) -> int:
        """Drop unacknowledged copies of work nobody waits for and no live worker holds."""
        horizon = time.time() - self.settings.unclaimed_s - self.settings.heartbeat_ttl_s
        stale = [e for e in unacked if e.unit.key not in wanted and e.delivered_at < horizon]
        self._drop(stale)
        return len(stale)

    def _drop(self, entries: list[Unacked]) -> None:
        if not entries:
            return
        prefix = self.config.broker_key_prefix
        pipe = self.client.pipeline(transaction=True)
        for entry in entries:
            pipe.zrem(prefix + UNACKED_INDEX_KEY, entry.tag)
            pipe.hdel(prefix + UNACKED_KEY, entry.tag)
        pipe.execute()

    def _log(self, unit: Unit, action: str) -> None:
        piece = "" if unit.piece is None else f" piece {unit.piece}"
        log.warning(
            "reconciler: %s of run %s step %d%s had no message and no live worker for "
            "%.0f s; %s", unit.task, unit.run_id, unit.index, piece,
            self.settings.unclaimed_s, action,
        )  # fmt: skip


def next_pass_due(started: float, ended: float) -> float:
    """When the pass after one that ran from `started` to `ended` may start."""
    return started + PASS_SPACING * (ended - started)


def _unit_key(raw: bytes) -> str | None:
    unit = decode_message(raw)
    return None if unit is None else unit.key


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
