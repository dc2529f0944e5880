"""The facts `sparkjobs doctor` judges, gathered from this host, the broker, the database,
the workers and the model servers, each with a short timeout and never raising.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sparkjobs.doctor.checks import LocalAddress

if TYPE_CHECKING:
    import redis

    from sparkjobs.broker.app import SparkjobsApp
    from sparkjobs.config import Config

TIMEOUT_S = 2.0


def local_addresses() -> list[LocalAddress] | None:
    """Every address on this host's interfaces (`ip -j addr`); None without `ip`."""
    binary = shutil.which("ip")
    if binary is None:
        return None
    try:
        done = subprocess.run(
            [binary, "-j", "addr", "show"], capture_output=True, text=True, timeout=5, check=True
        )
        interfaces = json.loads(done.stdout)
    except (OSError, subprocess.SubprocessError, ValueError):
        return None
    found = []
    for interface in interfaces:
        name = str(interface.get("ifname", "?"))
        mtu = interface.get("mtu")
        mtu = int(mtu) if mtu is not None else _sys_mtu(name)
        for info in interface.get("addr_info", []):
            if "local" in info:
                found.append(LocalAddress(name, str(info["local"]), mtu))
    return found


def _sys_mtu(interface: str) -> int | None:
    try:
        return int(Path("/sys/class/net", interface, "mtu").read_text())
    except (OSError, ValueError):
        return None


@dataclass(frozen=True)
class Timed:
    """A round trip that answered (`round_trip_ms`) or the reason it did not (`error`)."""

    round_trip_ms: float | None = None
    error: str | None = None


@dataclass(frozen=True)
class BrokerFacts:
    reach: Timed
    settings: dict[str, str] | None = None  # None: CONFIG disabled (or unreachable)


def observe_broker(config: Config) -> BrokerFacts:
    """PING the broker, then read its persistence settings (CONFIG may be disabled)."""
    import redis as redis_lib

    from sparkjobs.broker.client import redis_client

    client = redis_client(config, timeout_s=TIMEOUT_S)
    try:
        started = time.perf_counter()
        client.ping()
        reach = Timed(round_trip_ms=(time.perf_counter() - started) * 1000)
        return BrokerFacts(reach, _persistence_settings(client))
    except redis_lib.AuthenticationError as exc:
        # Up but refusing us: say so, rather than "unreachable" alone.
        said = "it asks for a password and broker_url has none" if "HELLO" in str(exc) else (
            f"it refused the password ({_reason(exc)})"
        )  # fmt: skip
        return BrokerFacts(Timed(error=f"{said}; fix the password in broker_url"))
    except (redis_lib.RedisError, OSError) as exc:
        return BrokerFacts(Timed(error=_reason(exc)))
    finally:
        client.close()


def _persistence_settings(client: redis.Redis) -> dict[str, str] | None:
    import redis as redis_lib

    settings: dict[str, str] = {}
    try:
        for name in ("appendonly", "save", "maxmemory-policy"):
            got: dict[Any, Any] = dict(client.config_get(name))
            settings[name] = _text(got.get(name, got.get(name.encode(), "")))
    except redis_lib.ResponseError:  # CONFIG renamed or disabled: tolerated
        return None
    return settings


@dataclass(frozen=True)
class DatabaseFacts:
    reach: Timed
    current: str | None = None
    head: str = ""


def observe_database(config: Config) -> DatabaseFacts:
    """Connect, SELECT 1, and read the schema's revision."""
    from sqlalchemy import text
    from sqlalchemy.exc import SQLAlchemyError

    from sparkjobs.store.engine import make_engine
    from sparkjobs.store.schema import current_revision, head_revision

    engine = make_engine(config.database, connect_timeout_s=int(TIMEOUT_S))
    database = engine.url.database
    if engine.dialect.name == "sqlite" and database and not Path(database).exists():
        # Connecting would create an empty file where `up` expects its own.
        return DatabaseFacts(Timed(error=f"no file {database} (not created yet?)"))
    try:
        started = time.perf_counter()
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
        reach = Timed(round_trip_ms=(time.perf_counter() - started) * 1000)
        return DatabaseFacts(reach, current_revision(engine), head_revision())
    except (SQLAlchemyError, OSError) as exc:
        return DatabaseFacts(Timed(error=_reason(exc)))
    finally:
        engine.dispose()


@dataclass(frozen=True)
class WorkerFacts:
    """The workers that answered a ping, the queues each consumes, and clock skews."""

    answered: list[str] = field(default_factory=list)
    queues: dict[str, list[str]] = field(default_factory=dict)
    skew_s: dict[str, float] = field(default_factory=dict)


def observe_workers(app: SparkjobsApp, *, timeout_s: float = TIMEOUT_S) -> WorkerFacts:
    """Celery remote-control ping and active_queues, then one heartbeat from each worker."""
    replies = app.control.ping(timeout=timeout_s) or []
    answered = sorted(name for reply in replies for name in reply)
    if not answered:
        return WorkerFacts()
    inspected = app.control.inspect(destination=answered, timeout=timeout_s).active_queues()
    queues = {
        name: sorted(str(q["name"]) for q in found or [])
        for name, found in (inspected or {}).items()
    }
    return WorkerFacts(answered, queues, heartbeat_skews(app, answered, timeout_s=timeout_s))


def heartbeat_skews(
    app: SparkjobsApp, workers: Sequence[str], *, timeout_s: float
) -> dict[str, float]:
    """This host's time minus the timestamp of each worker's next heartbeat event.

    Asks the workers to beat at once (`wakeup`), so the wait is a round trip, not the
    heartbeat interval. Workers whose beat does not arrive in time are left out.
    """
    skews: dict[str, float] = {}
    wanted = set(workers)

    def on_heartbeat(event: dict[str, Any]) -> None:
        name = str(event.get("hostname", ""))
        if name in wanted and name not in skews and "timestamp" in event:
            skews[name] = time.time() - float(event["timestamp"])
            if set(skews) == wanted:
                receiver.should_stop = True

    try:
        with app.connection_for_read() as connection:
            receiver = app.events.Receiver(connection, handlers={"worker-heartbeat": on_heartbeat})
            receiver.capture(limit=None, timeout=timeout_s, wakeup=True)
    except (TimeoutError, OSError):
        pass  # a worker that did not beat in time has no reading
    return skews


@dataclass(frozen=True)
class ServiceFacts:
    state: str | None
    detail: str
    published: bool
    fix: str = ""


def observe_service(config: Config, app: SparkjobsApp | None, name: str) -> ServiceFacts:
    """The health its worker published in Redis (as the run page shows it: busy
    included), else an HTTP probe from this host, judged as the worker would judge it
    (a probe that waits behind a call in progress is busy, not down). Either way the
    configured models are compared with what the server serves, from here: a server
    that serves others is down, whatever its worker last found."""
    import functools

    from sparkjobs.broker.client import key
    from sparkjobs.dispatch.health import HealthBoard, ServerState, busy_when_full
    from sparkjobs.dispatch.leases import Leases
    from sparkjobs.dispatch.probe import probe_service, served_problem

    spec = config.services[name]
    held = 0
    if app is not None:
        try:
            reading = HealthBoard(app.redis, config).read(name)
            leases = Leases(app.redis, functools.partial(key, config),
                            ttl_s=config.dispatch.lease_ttl_s)  # fmt: skip
            held = leases.held(name) if reading is None else 0
        except Exception:  # a bad reading must not stop the report
            reading = None
        if reading is not None:
            mismatch = served_problem(name, spec) if reading.state.reachable else None
            if mismatch is not None:
                said = f"{mismatch.detail} (read from here; its worker reports {reading.label})"
                return ServiceFacts("down", said, published=False, fix=mismatch.fix)
            return ServiceFacts(reading.label, reading.detail, published=True, fix=reading.fix)
    probe = busy_when_full(probe_service(name, spec, config, busy=held > 0, check_models=True),
                           held, spec.in_flight_limit)  # fmt: skip
    state = "busy" if probe.busy and probe.state is ServerState.UP else probe.state.value
    return ServiceFacts(state, probe.detail, published=False, fix=probe.fix)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _reason(exc: BaseException) -> str:
    reason = str(getattr(exc, "orig", None) or exc).strip()
    return (reason.splitlines() or [type(exc).__name__])[0]
