"""Rules that span several keys of a config: names, placement, ports, binds, broker.

Each rule yields `Problem`s; `sparkjobs.config.load` turns them into one error
that names the file, the key, the bad value and the fix.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import urlsplit

from sparkjobs.config.model import Config
from sparkjobs.config.render import mask_url
from sparkjobs.config.values import IPAddress, is_loopback

BROKER_SCHEMES = ("redis", "rediss", "redis+socket")


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a config, phrased for the person who must fix it."""

    key: str
    value: object
    message: str
    fix: str


def check(config: Config) -> list[Problem]:
    """Every problem the config has, in a stable order (empty when it is sound)."""
    rules = (
        _names,
        _service_nodes,
        _defaults,
        _broker,
        _database,
        _port_clashes,
        _binds_need_secrets,
        _visibility,
    )
    return [problem for rule in rules for problem in rule(config)]


def _names(config: Config) -> Iterator[Problem]:
    if not config.nodes:
        yield Problem("nodes", "{}", "no node is defined", "add a [nodes.<name>] section")
    for name in sorted(set(config.nodes) & set(config.services)):
        yield Problem(
            f"services.{name}",
            name,
            f"the name {name!r} is used by a node and by a service",
            "give the service a name of its own, e.g. the model's name",
        )


def _service_nodes(config: Config) -> Iterator[Problem]:
    known = ", ".join(sorted(config.nodes)) or "none"
    for name, service in config.services.items():
        if service.node not in config.nodes:
            yield Problem(
                f"services.{name}.node",
                service.node,
                f"service {name!r} is placed on unknown node {service.node!r}",
                f"use one of the nodes defined under [nodes]: {known}",
            )
        if service.backend_url is not None and service.kind != "orpheus":
            yield Problem(
                f"services.{name}.backend_url",
                str(service.backend_url),
                "only an orpheus service has a completions backend",
                'remove backend_url, or set kind = "orpheus"',
            )
    for name in config.sim:
        if name not in config.services:
            yield Problem(
                f"sim.{name}",
                name,
                f"[sim.{name}] names no service",
                f"name one of the services: {', '.join(sorted(config.services)) or 'none'}",
            )
    for place, node in (("flower.node", config.flower.node), ("web.node", config.web.node)):
        if node is not None and node not in config.nodes:
            yield Problem(place, node, f"unknown node {node!r}", f"use one of: {known}")


def _defaults(config: Config) -> Iterator[Problem]:
    by_kind: dict[str, list[str]] = {}
    for name, service in config.services.items():
        if service.default:
            by_kind.setdefault(service.kind, []).append(name)
    for kind, names in by_kind.items():
        if len(names) > 1:
            yield Problem(
                f"services.{names[1]}.default",
                True,
                f"services {', '.join(names)} are all marked default for kind {kind!r}",
                "mark at most one service of each kind with default = true",
            )


def _broker(config: Config) -> Iterator[Problem]:
    url = config.broker
    scheme = urlsplit(url).scheme
    if scheme not in BROKER_SCHEMES:
        yield Problem(
            "broker_url",
            mask_url(url),
            f"unsupported broker scheme {scheme + '://' if scheme else '(none)'}",
            "use redis://HOST:PORT/DB, rediss://HOST:PORT/DB or redis+socket:///PATH",
        )
    elif scheme == "redis+socket" and len(urlsplit(url).path.encode()) > 107:
        yield Problem(
            "broker_url",
            url,
            "the unix socket path is longer than the 107 bytes the kernel allows",
            "choose a shorter data_dir, or give a shorter socket path",
        )


def _database(config: Config) -> Iterator[Problem]:
    scheme = urlsplit(config.database).scheme
    if scheme not in ("sqlite", "postgresql+psycopg"):
        yield Problem(
            "database_url",
            mask_url(config.database),
            f"unsupported database scheme {scheme + '://' if scheme else '(none)'}",
            "use sqlite:///PATH or postgresql+psycopg://USER:PASSWORD@HOST:PORT/DB",
        )


def _host_of(config: Config, node: str | None) -> str:
    """Which machine a node is. Nodes on loopback share this one machine."""
    name = node or next(iter(config.nodes), None)  # no node at all: `_names` says so
    spec = config.nodes.get(name) if name is not None else None
    if name is None or spec is None or is_loopback(spec.bond_address):
        return "this machine"
    return name


def _listeners(config: Config) -> Iterator[tuple[str, str, str, int]]:
    """(key, machine, address, port) of everything that listens."""
    for name, service in config.services.items():
        machine = _host_of(config, service.node)
        for key, url in (("url", service.url), ("backend_url", service.backend_url)):
            if url is not None and url.host is not None and url.port is not None:
                host = "loopback" if is_loopback(url.host) else url.host.strip("[]")
                yield f"services.{name}.{key}", machine, host, url.port
    for name, node in config.nodes.items():
        address = "loopback" if is_loopback(node.bond_address) else str(node.bond_address)
        key = f"nodes.{name}.artifacts_port" if node.artifacts_port else "artifacts.port"
        yield key, _host_of(config, name), address, config.artifacts_port(name)
        metrics_port = config.metrics_port(name)
        if metrics_port is not None:
            key = f"nodes.{name}.metrics_port" if node.metrics_port else "metrics.port"
            yield key, _host_of(config, name), address, metrics_port
    for key, section in (("flower", config.flower), ("web", config.web)):
        address = "loopback" if is_loopback(section.address) else str(section.address)
        yield f"{key}.port", _host_of(config, section.node), address, section.port


def _port_clashes(config: Config) -> Iterator[Problem]:
    seen: dict[tuple[str, int], list[tuple[str, str]]] = {}
    for key, machine, address, port in _listeners(config):
        for other_key, other_address in seen.get((machine, port), []):
            wildcard = {"0.0.0.0", "::"} & {address, other_address}
            if address == other_address or wildcard:
                where = "loopback" if address == "loopback" else address
                yield Problem(
                    key,
                    port,
                    f"port {port} on {where} ({machine}) is also used by {other_key}",
                    "give each listener on one address its own port",
                )
        seen.setdefault((machine, port), []).append((key, address))


def _binds_need_secrets(config: Config) -> Iterator[Problem]:
    if not is_loopback(config.flower.address) and not config.flower.basic_auth:
        yield _needs_secret(
            "flower.address",
            config.flower.address,
            "flower.basic_auth",
            '["admin:a-long-password"]',
        )
    if not is_loopback(config.web.address) and not (config.web.token or config.web.basic_auth):
        yield _needs_secret("web.address", config.web.address, "web.token", '"a-long-random-token"')
    exposed = [n for n, spec in config.nodes.items() if not is_loopback(spec.bond_address)]
    if exposed and config.artifacts.token is None:
        node = exposed[0]
        yield _needs_secret(
            f"nodes.{node}.bond_address",
            config.nodes[node].bond_address,
            "artifacts.token",
            '"a-long-random-token"',
            what="artifact server",
        )


def _needs_secret(
    key: str, address: IPAddress, secret: str, example: str, what: str | None = None
) -> Problem:
    listener = what or key.split(".", maxsplit=1)[0]
    return Problem(
        key,
        str(address),
        f"the {listener} would listen on {address}, off loopback, without authentication",
        f"set {secret} = {example} (or SPARKJOBS_{secret.upper().replace('.', '__')}), "
        "or bind to 127.0.0.1",
    )


def _visibility(config: Config) -> Iterator[Problem]:
    tasks = config.tasks
    floor = tasks.time_limit_s + tasks.max_retry_delay_s
    if tasks.visibility_timeout_s is not None and tasks.visibility_timeout_s <= floor:
        yield Problem(
            "tasks.visibility_timeout_s",
            tasks.visibility_timeout_s,
            "a message would be redelivered while its task may still run or wait to retry",
            f"set it above time_limit_s + max_retry_delay_s = {floor}, or leave it out",
        )
