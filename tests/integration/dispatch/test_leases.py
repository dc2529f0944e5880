"""Leases in a real Redis: the limit holds under contention, expired leases free
themselves, and work that finds no slot waits in the service's line, interactive
work first, handed a slot as one frees."""

from __future__ import annotations

import functools
import json
import threading
import time

import pytest

from sparkjobs.broker.client import key
from sparkjobs.config.model import Config
from sparkjobs.dispatch.leases import Attempt, Handed, Lease, Leases
from tests.support.services import Broker

pytestmark = pytest.mark.redis
HANG_GUARD_S = 30.0


@pytest.fixture
def leases(broker: Broker) -> Leases:
    config = Config(broker_url=broker.url, broker_key_prefix=broker.prefix)
    return Leases(broker.client, functools.partial(key, config), ttl_s=30.0)


def test_many_threads_never_hold_more_than_the_limit(leases: Leases) -> None:
    limit, threads, rounds = 3, 12, 25
    lock = threading.Lock()
    held = 0
    most = 0
    admitted = 0

    def worker() -> None:
        nonlocal held, most, admitted
        for _ in range(rounds):
            lease, attempt = leases.try_acquire("gemma", limit)
            assert attempt.held <= limit
            if lease is None:
                continue
            with lock:
                held += 1
                admitted += 1
                most = max(most, held)
                assert leases.held("gemma") <= limit
            with lock:
                held -= 1
            leases.release(lease)

    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join(timeout=HANG_GUARD_S)
    assert admitted > 0
    assert most <= limit
    assert leases.held("gemma") == 0


def test_a_lease_nobody_renews_is_freed_by_its_ttl(broker: Broker) -> None:
    config = Config(broker_url=broker.url, broker_key_prefix=broker.prefix)
    short = Leases(broker.client, functools.partial(key, config), ttl_s=0.2)
    lease, _ = short.try_acquire("orpheus", 1)
    assert lease is not None
    assert short.try_acquire("orpheus", 1)[0] is None  # the only slot is taken
    deadline = time.monotonic() + HANG_GUARD_S
    while short.held("orpheus") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert short.held("orpheus") == 0
    assert short.try_acquire("orpheus", 1)[0] is not None
    assert not short.renew(lease)  # the expired holder cannot come back over the limit


def test_renewing_keeps_a_lease(leases: Leases) -> None:
    lease, _ = leases.try_acquire("qwen", 1)
    assert lease is not None
    assert leases.renew(lease)
    assert leases.held("qwen") == 1
    leases.release(lease)
    assert not leases.renew(lease)
    assert leases.held("qwen") == 0


def test_asking_again_with_the_same_holder_does_not_take_a_second_slot(leases: Leases) -> None:
    first, _ = leases.try_acquire("gemma", 2, holder="h1")
    again, attempt = leases.try_acquire("gemma", 2, holder="h1")
    assert first == again == Lease("gemma", "h1")
    assert attempt.held == 1


def test_a_full_service_lines_callers_up_interactive_first_then_by_arrival(
    leases: Leases,
) -> None:
    taken, _ = leases.try_acquire("orpheus", 1)
    assert taken is not None
    for unit in ("b1", "b2"):
        lease, attempt = leases.try_acquire("orpheus", 1, unit=unit, join=True)
        assert lease is None
    lease, attempt = leases.try_acquire("orpheus", 1, unit="i1", interactive=True, join=True)
    assert (lease, attempt.place) == (None, 0)  # ahead of both background units
    assert leases.lined("orpheus") == ["i1", "b1", "b2"]
    # Asking again keeps a unit's place: it is not sent to the back.
    _, again = leases.try_acquire("orpheus", 1, unit="b1", join=True)
    assert again.place == 1


def test_a_released_slot_is_handed_to_the_head_of_the_line_and_nobody_jumps_it(
    leases: Leases,
) -> None:
    taken, _ = leases.try_acquire("orpheus", 1)
    assert taken is not None
    leases.try_acquire("orpheus", 1, unit="b1", join=True)
    leases.try_acquire("orpheus", 1, unit="i1", interactive=True, join=True)

    handed = leases.release(taken)

    assert handed == (Handed("i1", interactive=True),)
    assert leases.lined("orpheus") == ["b1"]
    assert leases.held("orpheus") == 1  # the slot is reserved for i1
    newcomer, attempt = leases.try_acquire("orpheus", 1, unit="n1")
    assert (newcomer, attempt.place) == (None, None)  # no slot, and it did not join
    claimed, _ = leases.try_acquire("orpheus", 1, unit="i1")
    assert claimed is not None  # i1's task claims the slot reserved for it
    assert leases.held("orpheus") == 1
    assert leases.release(claimed) == (Handed("b1", interactive=False),)
    assert leases.lined("orpheus") == []


def test_a_slot_an_expired_lease_freed_goes_to_the_line_when_drained(broker: Broker) -> None:
    config = Config(broker_url=broker.url, broker_key_prefix=broker.prefix)
    short = Leases(broker.client, functools.partial(key, config), ttl_s=0.2)
    dead, _ = short.try_acquire("orpheus", 1)  # a worker killed mid-call: never released
    assert dead is not None
    short.try_acquire("orpheus", 1, unit="b1", join=True)
    deadline = time.monotonic() + HANG_GUARD_S
    handed: tuple[Handed, ...] = ()
    while not handed and time.monotonic() < deadline:
        handed = short.drain("orpheus", 1)
        time.sleep(0.05)
    assert handed == (Handed("b1", interactive=False),)
    assert short.lined("orpheus") == []


def test_a_unit_that_joins_when_an_expired_lease_left_a_slot_free_takes_it(
    broker: Broker,
) -> None:
    config = Config(broker_url=broker.url, broker_key_prefix=broker.prefix)
    short = Leases(broker.client, functools.partial(key, config), ttl_s=0.2)
    short.try_acquire("orpheus", 1)  # expires, never released
    short.try_acquire("orpheus", 1, unit="b1", join=True)  # waits behind it
    deadline = time.monotonic() + HANG_GUARD_S
    while short.held("orpheus") and time.monotonic() < deadline:
        time.sleep(0.05)
    lease, attempt = short.try_acquire("orpheus", 1, unit="b2", join=True)
    # b1 was first: the free slot is handed to it (to publish), and b2 waits.
    assert (lease, attempt.place) == (None, 0)
    assert attempt.handed == (Handed("b1", interactive=False),)


def test_a_reading_that_is_not_up_admits_nobody_and_is_read_in_the_same_try(
    leases: Leases, broker: Broker
) -> None:
    health = key(Config(broker_url=broker.url, broker_key_prefix=broker.prefix), "health", "gemma")
    fields = {"service": "gemma", "detail": "", "since": 1.0, "checked": 2.0}

    def publish(state: str) -> bytes:
        text = json.dumps({**fields, "state": state}).encode()
        broker.client.set(health, text)
        return text

    def attempt(interactive: bool = False) -> tuple[Lease | None, Attempt]:
        return leases.try_acquire("gemma", 2, interactive=interactive, unit="u1", join=True,
                                  health=(health, "up"))  # fmt: skip

    # No reading published yet: a slot, and no reading.
    lease, found = attempt()
    assert lease is not None
    assert found.health is None
    leases.release(lease)
    for state in ("down", "loading", "overloaded"):
        published = publish(state)
        lease, found = attempt(interactive=True)
        assert lease is None
        assert found.health == published
        assert (found.held, found.place) == (0, None)  # nobody taken into the line
        assert leases.waiting("gemma") == 0
    published = publish("up")
    lease, found = attempt()
    assert lease is not None
    assert (found.health, found.held) == (published, 1)
