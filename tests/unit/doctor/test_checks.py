"""The doctor's verdicts from fake observations: no network, no clock."""

from __future__ import annotations

import pytest

from sparkjobs.config.sections import NodeConfig, ServiceConfig
from sparkjobs.doctor.checks import (
    LocalAddress,
    Status,
    bond,
    broker_eviction,
    broker_password,
    broker_persistence,
    clock,
    identify,
    reachability,
    schema,
    service,
    worker,
    worker_queues,
)

NODES = {
    "spark1": NodeConfig(bond_address="10.0.0.1", lan_address="192.0.2.11"),  # type: ignore[arg-type]
    "spark2": NodeConfig(bond_address="10.0.0.2"),  # type: ignore[arg-type]
}
SERVICES = {
    "gemma": ServiceConfig(node="spark1", kind="openai", url="http://10.0.0.1:8002"),  # type: ignore[arg-type]
    "orpheus": ServiceConfig(node="spark2", kind="orpheus", url="http://10.0.0.2:8766"),  # type: ignore[arg-type]
    "clone": ServiceConfig(node="spark2", kind="qwen-clone", url="http://10.0.0.2:8765"),  # type: ignore[arg-type]
}
LOOPBACK = LocalAddress("lo", "127.0.0.1", 65536)


def test_the_node_whose_bond_address_is_local_is_this_host() -> None:
    local = [LOOPBACK, LocalAddress("bond0", "10.0.0.2", 9000)]
    node, finding = identify(NODES, local, None)
    assert node == "spark2"
    assert finding.status is Status.OK


def test_a_lan_address_identifies_a_node_too() -> None:
    node, _ = identify(NODES, [LOOPBACK, LocalAddress("eth0", "192.0.2.11", 1500)], None)
    assert node == "spark1"


def test_node_given_on_the_command_line_wins() -> None:
    node, finding = identify(NODES, [LocalAddress("bond0", "10.0.0.2", 9000)], "spark1")
    assert (node, finding.status) == ("spark1", Status.OK)


@pytest.mark.parametrize(
    "local",
    [
        [LOOPBACK],
        None,
        [LocalAddress("bond0", "10.0.0.1", 9000), LocalAddress("bond0", "10.0.0.2", 9000)],
    ],
    ids=["a client machine", "addresses unknown", "both nodes"],
)
def test_no_single_match_is_a_warning_that_asks_for_node(local: list[LocalAddress] | None) -> None:
    node, finding = identify(NODES, local, None)
    assert node is None
    assert finding.status is Status.WARN
    assert "--node" in finding.fix


def test_a_jumbo_bond_is_ok_and_names_its_interface_and_mtu() -> None:
    finding = bond("spark1", NODES["spark1"], [LocalAddress("bond0", "10.0.0.1", 9000)])
    assert finding.status is Status.OK
    assert finding.detail == "10.0.0.1 on bond0, MTU 9000"


def test_a_bond_below_jumbo_frames_is_a_warning() -> None:
    finding = bond("spark1", NODES["spark1"], [LocalAddress("bond0", "10.0.0.1", 1500)])
    assert finding.status is Status.WARN
    assert "mtu: 9000 on bond0" in finding.fix


def test_a_bond_address_on_no_interface_is_down() -> None:
    finding = bond("spark1", NODES["spark1"], [LOOPBACK])
    assert finding.status is Status.DOWN
    assert "10.0.0.1 is on no interface" in finding.detail


def test_reachability_reports_the_round_trip_or_the_reason() -> None:
    up = reachability("broker", "redis://10.0.0.1:6379/0", 0.42, None, "start it")
    assert (up.status, up.detail) == (Status.OK, "redis://10.0.0.1:6379/0 answered in 0.4 ms")
    down = reachability("broker", "redis://10.0.0.1:6379/0", None, "refused", "start it")
    assert (down.status, down.fix) == (Status.DOWN, "start it")


def test_a_schema_behind_is_down_and_says_to_upgrade() -> None:
    assert schema("0005", "0005").status is Status.OK
    behind = schema("0004", "0005")
    assert behind.status is Status.DOWN
    assert "sparkjobs db upgrade" in behind.fix


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        ({"appendonly": "yes", "save": ""}, Status.OK),
        ({"appendonly": "no", "save": "3600 1"}, Status.WARN),
        ({"appendonly": "no", "save": ""}, Status.WARN),
        (None, Status.OK),
    ],
    ids=["append-only", "snapshots only", "none", "CONFIG disabled"],
)
def test_broker_persistence(settings: dict[str, str] | None, expected: Status) -> None:
    assert broker_persistence(settings).status is expected


def test_a_broker_that_evicts_keys_is_a_warning() -> None:
    assert broker_eviction("noeviction").status is Status.OK
    assert broker_eviction("allkeys-lru").status is Status.WARN
    assert broker_eviction(None).status is Status.OK


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("redis://:pw@10.0.0.1:6379/0", Status.OK),
        ("redis://10.0.0.1:6379/0", Status.WARN),
        ("redis://127.0.0.1:6379/0", Status.OK),
        ("redis+socket:///run/redis.sock", Status.OK),
    ],
)
def test_a_broker_off_loopback_needs_a_password(url: str, expected: Status) -> None:
    assert broker_password(url).status is expected


def test_a_node_whose_worker_did_not_answer_is_down() -> None:
    answered = ["spark1@host-a"]
    assert worker("spark1", answered).status is Status.OK
    down = worker("spark2", answered)
    assert down.status is Status.DOWN
    assert "sparkjobs worker --node spark2" in down.fix


def test_a_worker_consuming_another_nodes_queue_is_a_warning_naming_its_services() -> None:
    assert worker_queues("spark1@a", ["spark1"], SERVICES) is None
    finding = worker_queues("spark1@a", ["spark1", "spark2"], SERVICES)
    assert finding is not None
    assert finding.status is Status.WARN
    assert "clone, orpheus" in finding.detail


@pytest.mark.parametrize(
    ("skew_s", "expected"),
    [(0.05, Status.OK), (-1.5, Status.OK), (7.0, Status.WARN), (-30.0, Status.WARN)],
)
def test_clocks_out_of_step_are_a_warning(skew_s: float, expected: Status) -> None:
    assert clock("spark2@b", skew_s).status is expected


def test_a_clock_ahead_or_behind_says_which() -> None:
    assert "behind" in clock("spark2@b", 7.0).detail
    assert "ahead of" in clock("spark2@b", -7.0).detail


@pytest.mark.parametrize(
    ("state", "expected"),
    [
        ("up", Status.OK),
        ("overloaded", Status.WARN),
        ("loading", Status.WARN),
        ("down", Status.DOWN),
        (None, Status.DOWN),
    ],
)
def test_service_health_maps_to_a_status(state: str | None, expected: Status) -> None:
    finding = service("gemma", SERVICES["gemma"], state, "", published=True)
    assert finding.status is expected
    assert "reported by its worker" in finding.detail


def test_a_down_service_gets_the_fix_its_probe_saw_and_only_without_one_a_guess() -> None:
    seen = "services.gemma.models lists gemma-4-26b-a4b; the server at URL serves gemma-3-270m"
    fix = 'set models = ["gemma-3-270m"] or start the server with --served-model-name gemma-4'
    finding = service("gemma", SERVICES["gemma"], "down", seen, published=True, fix=fix)
    assert finding.status is Status.DOWN
    assert seen in finding.detail
    assert finding.fix == fix
    refused = service("gemma", SERVICES["gemma"], None, "", published=False)
    assert refused.fix.startswith("start the openai server on spark1")
    loading = service("gemma", SERVICES["gemma"], "loading", "", published=True, fix="wait")
    assert (loading.status, loading.fix) == (Status.WARN, "wait")
