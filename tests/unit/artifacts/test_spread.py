"""Source ports chosen so a fetch's flows split evenly over a layer3+4 bond's members."""

from __future__ import annotations

import random
import socket
import struct
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from sparkjobs.artifacts.spread import (
    DEFAULT_PORT_RANGE,
    bond_member,
    local_port_range,
    plan_ports,
    spread_connection,
)


def kernel_layer34(src: str, dst: str, sport: int, dport: int, members: int) -> int:
    """The bonding driver's steps spelled out on bytes, as an independent check.

    `flow.ports.ports` holds the source then destination port in network order and is
    copied into a u32 on a little-endian host; the addresses are __be32 loaded the
    same way; then `bond_ip_hash()` folds and drops bit 0, and the slave is
    `hash % count`.
    """
    header = sport.to_bytes(2, "big") + dport.to_bytes(2, "big")
    hashed = int.from_bytes(header, "little")
    hashed ^= int.from_bytes(socket.inet_aton(dst), "little")
    hashed ^= int.from_bytes(socket.inet_aton(src), "little")
    hashed ^= hashed >> 16
    hashed ^= hashed >> 8
    return (hashed >> 1) % members


def test_the_member_follows_the_kernel_formula_and_the_port_parity_rule() -> None:
    pick = random.Random(5)
    for _ in range(2000):
        src = socket.inet_ntoa(struct.pack("!I", pick.getrandbits(32)))
        dst = socket.inet_ntoa(struct.pack("!I", pick.getrandbits(32)))
        sport, dport, members = pick.randrange(65536), pick.randrange(65536), pick.choice((2, 3, 4))
        assert bond_member(src, dst, sport, dport, members) == kernel_layer34(
            src, dst, sport, dport, members
        )
    # For two members: ports 4k, 4k+1 on one member, 4k+2, 4k+3 on the other.
    members = [bond_member("10.0.0.1", "10.0.0.2", port, 8470) for port in range(40000, 40008)]
    assert members[0] == members[1] == members[4] == members[5]
    assert members[2] == members[3] == members[6] == members[7] != members[0]


def test_both_directions_of_a_flow_get_the_same_member() -> None:
    for port in range(30000, 30300):
        forward = bond_member("10.0.0.2", "10.0.0.1", port, 8470, 4)
        assert forward == bond_member("10.0.0.1", "10.0.0.2", 8470, port, 4)


@pytest.mark.parametrize(("connections", "members"), [(8, 2), (16, 2), (8, 4), (3, 2), (64, 2)])
def test_planned_ports_split_the_connections_evenly_and_never_share_a_port(
    connections: int, members: int
) -> None:
    plan = plan_ports("127.0.0.1", 8470, connections, members=members, rng=random.Random(1))

    low, high = local_port_range()
    seen: list[int] = []
    for slot in range(connections):
        ports = plan.candidates(slot)
        assert ports, slot
        assert all(low <= port <= high for port in ports)
        assert {bond_member("127.0.0.1", "127.0.0.1", p, 8470, members) for p in ports} == {
            bond_member("127.0.0.1", "127.0.0.1", ports[0], 8470, members)
        }
        seen += ports
    assert len(seen) == len(set(seen))
    first = Counter(
        bond_member("127.0.0.1", "127.0.0.1", plan.candidates(s)[0], 8470, members)
        for s in range(connections)
    )
    assert len(first) == min(members, connections)
    assert max(first.values()) - min(first.values()) <= 1
    assert plan.candidates(connections) == ()


def test_a_narrow_port_range_still_gives_each_connection_a_port() -> None:
    plan = plan_ports("127.0.0.1", 80, 4, port_range=(50000, 50099), rng=random.Random(2))

    ports = [port for slot in range(4) for port in plan.candidates(slot)]
    assert ports
    assert all(50000 <= port <= 50099 for port in ports)


def test_an_unknown_host_or_a_single_member_gets_no_plan() -> None:
    assert plan_ports("no-such-host.invalid", 80, 8).candidates(0) == ()
    assert plan_ports("127.0.0.1", 80, 8, members=1).candidates(0) == ()


def test_the_port_range_is_read_from_the_kernel_file_or_defaulted(tmp_path: Path) -> None:
    good, bad = tmp_path / "good", tmp_path / "bad"
    good.write_text("20000\t29999\n")
    bad.write_text("nonsense\n")

    assert local_port_range(good) == (20000, 29999)
    assert local_port_range(bad) == DEFAULT_PORT_RANGE
    assert local_port_range(tmp_path / "missing") == DEFAULT_PORT_RANGE


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    server = socket.create_server(("127.0.0.1", 0))
    try:
        yield server
    finally:
        server.close()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_a_connection_uses_the_first_free_planned_port(listener: socket.socket) -> None:
    taken = socket.socket()
    taken.bind(("", 0))
    wanted = _free_port()
    try:
        conn = spread_connection(
            "127.0.0.1", listener.getsockname()[1], 5.0, (taken.getsockname()[1], wanted)
        )
        conn.connect()
        assert conn.sock is not None
        assert conn.sock.getsockname()[1] == wanted
        conn.close()
    finally:
        taken.close()


def test_a_connection_lets_the_kernel_choose_when_every_planned_port_is_taken(
    listener: socket.socket,
) -> None:
    taken = socket.socket()
    taken.bind(("", 0))
    try:
        conn = spread_connection(
            "127.0.0.1", listener.getsockname()[1], 5.0, (taken.getsockname()[1],)
        )
        conn.connect()
        assert conn.sock is not None
        assert conn.sock.getsockname()[1] not in (0, taken.getsockname()[1])
        conn.close()
    finally:
        taken.close()


def test_a_refused_connection_is_an_error_not_a_port_hunt() -> None:
    conn = spread_connection("127.0.0.1", _free_port(), 5.0, (_free_port(), _free_port()))
    with pytest.raises(ConnectionRefusedError):
        conn.connect()
