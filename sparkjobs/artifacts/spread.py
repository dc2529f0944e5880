"""Spreading a fetch's connections evenly over the members of a layer3+4 bond.

A Linux bond with `xmit_hash_policy=layer3+4` sends each TCP flow over one member,
chosen by a hash of the two addresses and the two ports (`bond_ip_hash()` in the
kernel's bonding driver, then `hash % members`). A download's data is sent by the
*server's* bond, but the hash is symmetric in source and destination, so the client
can compute it from its own side of the connection. The client chooses its source
port, so it can give each stream a port whose hash lands on the member it wants:
with 8 streams and 2 members, exactly 4 per member, instead of a random split (with
kernel-chosen ports 6/2 or worse about 29 % of the time).

Which physical member index 0 or 1 is on either host is not known and does not
matter: ports of the same hash class share a member, ports of different classes do
not. A port that is taken (in use, or in TIME_WAIT from an earlier fetch) is skipped
for the next one of the same class; if none is free the kernel picks one.

Switches and routers that hash with their own (often seeded) functions, such as a
multipath route, are not predictable this way; there the chosen ports are as good as
random ones, and the fetch's shared chunk queue keeps every link that has a flow busy.
"""

from __future__ import annotations

import errno
import http.client
import ipaddress
import random
import socket
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

# Two members: the two halves of a DGX Spark's ConnectX-7 port, bonded.
BOND_MEMBERS = 2
# The Linux default when /proc does not say.
DEFAULT_PORT_RANGE = (32768, 60999)
PORT_RANGE_FILE = Path("/proc/sys/net/ipv4/ip_local_port_range")
# One 512-port block: for two members the class of a port is bit 1 xor bit 9 of it
# (xor a constant), so every aligned block holds both classes in equal numbers.
BLOCK_PORTS = 512
# Ports tried per connection before the kernel is left to choose.
TRIES = 16
_TAKEN = (errno.EADDRINUSE, errno.EADDRNOTAVAIL)


def _address_word(address: str) -> int:
    # The bonding driver XORs the addresses as they sit in the packet (big-endian),
    # loaded as a host-order u32 on a little-endian host (x86_64, aarch64); an IPv6
    # address is first folded to 32 bits by XOR of its four words.
    packed = ipaddress.ip_address(address).packed
    word = 0
    for (value,) in struct.iter_unpack("<I", packed):
        word ^= value
    return word


def bond_member(src: str, dst: str, sport: int, dport: int, members: int = BOND_MEMBERS) -> int:
    """The member index a layer3+4 bond of `members` links sends this TCP flow on.

    The kernel's formula on a little-endian host: the two 16-bit ports as they sit in
    the header, read as one u32; xor the addresses; fold (`h ^= h >> 16; h ^= h >> 8`);
    drop the lowest bit (`>> 1`, because connect() prefers even ports); modulo the
    member count. Symmetric: swapping source and destination gives the same index.
    """
    (hashed,) = struct.unpack("<I", struct.pack("!HH", sport, dport))
    hashed ^= _address_word(src) ^ _address_word(dst)
    hashed ^= hashed >> 16
    hashed ^= hashed >> 8
    return int((hashed >> 1) % members)


def local_port_range(path: Path = PORT_RANGE_FILE) -> tuple[int, int]:
    """The kernel's ephemeral port range (inclusive), where chosen ports are taken from."""
    try:
        low, high = (int(part) for part in path.read_text().split())
    except (OSError, ValueError):
        return DEFAULT_PORT_RANGE
    return (low, high) if 1024 <= low <= high <= 65535 else DEFAULT_PORT_RANGE


def local_address_for(host: str, port: int) -> str | None:
    """The source address this host would use to reach `host`, or None if unknown.

    A connected UDP socket asks the routing table without sending anything.
    """
    try:
        family, _, _, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)[0]
        with socket.socket(family, socket.SOCK_DGRAM) as probe:
            probe.connect(address)
            return str(probe.getsockname()[0])
    except (OSError, IndexError):
        return None


@dataclass(frozen=True)
class PortPlan:
    """Source ports for the connections to one server, spread over the bond's members.

    Slot `k` (the k-th connection to this server) belongs to member class
    `k % members`; its candidates are ports of that class no other slot uses.
    """

    members: int
    slots: tuple[tuple[int, ...], ...]

    def candidates(self, slot: int) -> tuple[int, ...]:
        """Ports to try, in order, for connection `slot`; empty: let the kernel choose."""
        return self.slots[slot] if 0 <= slot < len(self.slots) else ()


NO_PLAN = PortPlan(members=1, slots=())


def plan_ports(
    server_host: str,
    server_port: int,
    connections: int,
    *,
    members: int = BOND_MEMBERS,
    port_range: tuple[int, int] | None = None,
    rng: random.Random | None = None,
) -> PortPlan:
    """Choose source ports so `connections` flows to one server split evenly over members.

    The ports come from one randomly placed block of the ephemeral range, so two
    fetches in a row rarely meet each other's TIME_WAIT ports.
    """
    if connections < 1 or members < 2:
        return NO_PLAN
    server = _numeric(server_host, server_port)
    local = local_address_for(server_host, server_port)
    if server is None or local is None:
        return NO_PLAN
    low, high = port_range or local_port_range()
    rng = rng or random.Random()
    span = BLOCK_PORTS * max(1, -(-connections * TRIES // BLOCK_PORTS))
    start = _block_start(low, high, span, rng)
    ports = list(range(start, min(start + span, high + 1)))
    offset = rng.randrange(len(ports))
    ports = ports[offset:] + ports[:offset]
    classes: list[list[int]] = [[] for _ in range(members)]
    try:
        for port in ports:
            classes[bond_member(local, server, port, server_port, members)].append(port)
    except ValueError:  # an address the formula does not cover (e.g. a scoped IPv6)
        return NO_PLAN
    per_class = -(-connections // members)
    slots = tuple(
        tuple(classes[slot % members][slot // members :: per_class][:TRIES])
        for slot in range(connections)
    )
    return PortPlan(members=members, slots=slots)


def spread_connection(
    host: str, port: int, timeout: float, source_ports: Sequence[int] = ()
) -> http.client.HTTPConnection:
    """An HTTP connection to `host:port` that will connect from the first free port of
    `source_ports` (the kernel chooses when none is free or none is given)."""
    return _SpreadConnection(host, port, timeout=timeout, source_ports=tuple(source_ports))


class _SpreadConnection(http.client.HTTPConnection):
    def __init__(
        self, host: str, port: int, *, timeout: float, source_ports: tuple[int, ...]
    ) -> None:
        super().__init__(host, port, timeout=timeout)
        self._source_ports = source_ports

    def connect(self) -> None:
        address = (self.host, self.port)
        for source_port in self._source_ports:
            try:
                self.sock = socket.create_connection(address, self.timeout, ("", source_port))
                break
            except OSError as exc:
                if exc.errno not in _TAKEN:
                    raise
        else:
            self.sock = socket.create_connection(address, self.timeout)
        # As http.client does: requests are small writes that must not wait for ACKs.
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def _numeric(host: str, port: int) -> str | None:
    try:
        return str(socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][4][0])
    except (OSError, IndexError):
        return None


def _block_start(low: int, high: int, span: int, rng: random.Random) -> int:
    first = -(-low // BLOCK_PORTS) * BLOCK_PORTS
    last = (high + 1 - span) // BLOCK_PORTS * BLOCK_PORTS
    if last < first:  # a narrow range: use what there is
        return low
    return first + BLOCK_PORTS * rng.randrange((last - first) // BLOCK_PORTS + 1)
