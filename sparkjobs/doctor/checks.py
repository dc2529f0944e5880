"""What `sparkjobs doctor` concludes: each check a pure function from observations to a Finding.

Nothing here touches the network or the clock; `sparkjobs.doctor.observe` gathers the
facts, so that every verdict can be tested from fake inputs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from ipaddress import ip_address
from urllib.parse import urlsplit

from sparkjobs.config.sections import NodeConfig, ServiceConfig
from sparkjobs.config.values import is_loopback

BOND_MTU = 9000  # jumbo frames, as the Sparks' bond is set up
CLOCK_TOLERANCE_S = 2.0  # slots, leases and health TTLs are seconds long


class Status(StrEnum):
    OK = "ok"
    WARN = "warn"
    DOWN = "down"


@dataclass(frozen=True)
class Finding:
    """One line of the report: what was checked, its verdict, what was seen, how to fix it."""

    name: str
    status: Status
    detail: str
    fix: str = ""


@dataclass(frozen=True)
class LocalAddress:
    """An address held by an interface of this host."""

    interface: str
    address: str
    mtu: int | None


def identify(
    nodes: Mapping[str, NodeConfig], local: Sequence[LocalAddress] | None, chosen: str | None
) -> tuple[str | None, Finding]:
    """Which node this host is: `--node`, else the node whose bond or LAN address is local.

    Args:
        local: this host's addresses; None when they could not be listed.
    """
    if chosen is not None:
        return chosen, Finding("identity", Status.OK, f"{chosen} (given with --node)")
    fix = "pass --node NAME"
    if local is None:
        return None, Finding("identity", Status.WARN, "cannot list this host's addresses", fix)
    held = {_normal(a.address) for a in local}
    matches = [
        name
        for name, node in nodes.items()
        if str(node.bond_address) in held or (node.lan_address and str(node.lan_address) in held)
    ]
    if len(matches) == 1:
        node = nodes[matches[0]]
        return matches[0], Finding(
            "identity", Status.OK, f"{matches[0]} (this host holds {node.bond_address})"
        )
    if not matches:
        known = ", ".join(f"{n} {c.bond_address}" for n, c in nodes.items()) or "none"
        detail = f"no node's address is on this host (nodes: {known}); a client machine?"
        return None, Finding("identity", Status.WARN, detail, fix)
    detail = f"addresses of several nodes are on this host: {', '.join(matches)}"
    return None, Finding("identity", Status.WARN, detail, fix)


def bond(node: str, config: NodeConfig, local: Sequence[LocalAddress] | None) -> Finding:
    """The interface that holds `node`'s bond address, and its MTU."""
    address = str(config.bond_address)
    name = f"bond {node}"
    if local is None:
        return Finding(name, Status.WARN, "cannot list this host's addresses (no `ip`?)")
    holders = [a for a in local if _normal(a.address) == address]
    if not holders:
        return Finding(
            name,
            Status.DOWN,
            f"{address} is on no interface of this host",
            f"bring the bond up with {address} (netplan), or fix bond_address of {node}",
        )
    holder = holders[0]
    seen = f"{address} on {holder.interface}, MTU {holder.mtu or '?'}"
    if is_loopback(address) or holder.interface == "lo" or holder.mtu is None:
        return Finding(name, Status.OK, seen)
    if holder.mtu < BOND_MTU:
        return Finding(
            name,
            Status.WARN,
            f"{seen} (below {BOND_MTU}: artifacts move slower)",
            f"set mtu: {BOND_MTU} on {holder.interface} on both nodes",
        )
    return Finding(name, Status.OK, seen)


def reachability(
    name: str, where: str, round_trip_ms: float | None, error: str | None, fix: str
) -> Finding:
    """Broker or database: answered in so many ms, or did not answer."""
    if error is not None or round_trip_ms is None:
        return Finding(name, Status.DOWN, f"{where} is unreachable: {error}", fix)
    return Finding(name, Status.OK, f"{where} answered in {round_trip_ms:.1f} ms")


def schema(current: str | None, head: str) -> Finding:
    if current == head:
        return Finding("schema", Status.OK, f"at {head}")
    at = f"revision {current}" if current else "no schema yet"
    return Finding(
        "schema", Status.DOWN, f"{at}; this sparkjobs needs {head}", "run `sparkjobs db upgrade`"
    )


def broker_persistence(settings: Mapping[str, str] | None) -> Finding:
    """Append-only or snapshots; `settings` is None where CONFIG is disabled."""
    name = "broker persistence"
    if settings is None:
        return Finding(name, Status.OK, "not checked: CONFIG is disabled on this Redis")
    appendonly = settings.get("appendonly", "").lower() == "yes"
    save = settings.get("save", "").strip()
    if appendonly:
        return Finding(name, Status.OK, "append-only file on")
    if save:
        return Finding(
            name,
            Status.WARN,
            f"snapshots only (save {save!r}): a crash loses the queue since the last one",
            "set `appendonly yes` in redis.conf",
        )
    return Finding(
        name,
        Status.WARN,
        "none: a restart of Redis loses every queued message and the scheduler lock",
        "set `appendonly yes` in redis.conf",
    )


def broker_eviction(policy: str | None) -> Finding:
    name = "broker eviction"
    if policy is None:
        return Finding(name, Status.OK, "not checked: CONFIG is disabled on this Redis")
    if policy == "noeviction":
        return Finding(name, Status.OK, "maxmemory-policy noeviction")
    return Finding(
        name,
        Status.WARN,
        f"maxmemory-policy {policy}: Redis may drop queued messages when full",
        "set `maxmemory-policy noeviction` in redis.conf",
    )


def broker_password(broker_url: str) -> Finding:
    """A broker off loopback must ask for a password: anyone on the link could queue tasks."""
    name = "broker password"
    parts = urlsplit(broker_url)
    if parts.scheme == "redis+socket":
        return Finding(name, Status.OK, "unix socket")
    host = parts.hostname or "localhost"
    if parts.password:
        return Finding(name, Status.OK, f"a password is set for {host}")
    if is_loopback(host):
        return Finding(name, Status.OK, f"none needed on loopback ({host})")
    return Finding(
        name,
        Status.WARN,
        f"broker on {host} without a password: anyone who reaches it can queue tasks",
        "set `requirepass` in redis.conf and put it in broker_url (redis://:PASSWORD@...)",
    )


def worker(node: str, workers: Sequence[str]) -> Finding:
    """Whether a worker of `node` answered; `workers` are the Celery names that did."""
    mine = sorted(w for w in workers if w.split("@", 1)[0] == node)
    if mine:
        return Finding(f"worker {node}", Status.OK, f"{', '.join(mine)} answered")
    return Finding(
        f"worker {node}",
        Status.DOWN,
        f"no worker of {node} answered",
        f"start `sparkjobs worker --node {node}` on {node} (systemctl start sparkjobs-worker)",
    )


def worker_queues(
    worker_name: str, queues: Sequence[str], services: Mapping[str, ServiceConfig]
) -> Finding | None:
    """A worker that consumes another node's queue runs calls for services it does not host."""
    node = worker_name.split("@", 1)[0]
    foreign = sorted(q for q in queues if q != node)
    if not foreign:
        return None
    hosted = sorted(n for n, s in services.items() if s.node in foreign)
    return Finding(
        f"queues {worker_name}",
        Status.WARN,
        f"consumes {', '.join(foreign)}, the queue of services it does not host "
        f"({', '.join(hosted) or 'none'})",
        f"run one `sparkjobs worker --node NAME` per node, on that node (not -Q {foreign[0]})",
    )


def clock(worker_name: str, skew_s: float) -> Finding:
    """`skew_s`: this host's time minus the time in the worker's latest heartbeat."""
    name = f"clock {worker_name}"
    if abs(skew_s) <= CLOCK_TOLERANCE_S:
        return Finding(name, Status.OK, f"in step ({skew_s:+.2f} s)")
    side = "behind" if skew_s > 0 else "ahead of"
    return Finding(
        name,
        Status.WARN,
        f"its clock is {abs(skew_s):.1f} s {side} this host's: slots and leases drift",
        "run NTP on every node (timedatectl set-ntp true)",
    )


def service(
    name: str,
    config: ServiceConfig,
    state: str | None,
    detail: str,
    *,
    published: bool,
    fix: str = "",
) -> Finding:
    """A service's health: `state` is up, busy, overloaded, loading or down (None:
    unknown), as the run page shows it (busy: every slot taken, which is fine).

    Args:
        fix: what the probe saw calls for (e.g. the models to configure); without one,
            a server that is not up is to be started, or its URL fixed.
    """
    source = "reported by its worker" if published else "probed from here"
    where = f"{config.url} on {config.node}"
    said = f": {detail}" if detail else ""
    if state in ("up", "busy", "overloaded"):
        status = Status.OK if state in ("up", "busy") else Status.WARN
        return Finding(f"service {name}", status, f"{state} at {where} ({source}){said}")
    if state == "loading":
        return Finding(f"service {name}", Status.WARN, f"loading at {where} ({source}){said}",
                       fix)  # fmt: skip
    return Finding(
        f"service {name}",
        Status.DOWN,
        f"{state or 'unknown'} at {where} ({source}){said}",
        fix or f"start the {config.kind} server on {config.node}, or fix services.{name}.url",
    )


def _normal(address: str) -> str:
    try:
        return str(ip_address(address.split("%", 1)[0]))
    except ValueError:
        return address
