"""Leases in a real Redis: the limit holds under contention, expired leases free
themselves, interactive waiters go first."""

from __future__ import annotations

import functools
import json
import threading
import time

import pytest

from sparkjobs.broker.client import key
from sparkjobs.config.model import Config
from sparkjobs.dispatch.leases import Attempt, Lease, Leases
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


def test_background_work_leaves_free_slots_to_waiting_interactive_work(leases: Leases) -> None:
    busy, _ = leases.try_acquire("gemma", 2)
    assert busy is not None
    blocker, _ = leases.try_acquire("gemma", 2)
    assert blocker is not None
    # Interactive work finds no slot and registers as a waiter.
    none, attempt = leases.try_acquire("gemma", 2, interactive=True, waiter="run-i:0:",
                                       waiter_ttl_s=30)  # fmt: skip
    assert none is None
    assert attempt.interactive_waiting == 1
    leases.release(busy)
    # One slot is free, but one interactive waiter wants it: background waits.
    background, attempt = leases.try_acquire("gemma", 2, waiter="run-b:0:")
    assert background is None
    assert attempt.held == 1
    interactive, attempt = leases.try_acquire("gemma", 2, interactive=True, waiter="run-i:0:",
                                              waiter_ttl_s=30)  # fmt: skip
    assert interactive is not None
    assert attempt.interactive_waiting == 0
    leases.release(blocker)
    background, _ = leases.try_acquire("gemma", 2, waiter="run-b:0:")
    assert background is not None


def test_an_interactive_waiter_that_gives_up_stops_holding_slots_back(broker: Broker) -> None:
    config = Config(broker_url=broker.url, broker_key_prefix=broker.prefix)
    leases = Leases(broker.client, functools.partial(key, config), ttl_s=30)
    taken, _ = leases.try_acquire("gemma", 1)
    assert taken is not None
    leases.try_acquire("gemma", 1, interactive=True, waiter="gone", waiter_ttl_s=0.1)
    leases.release(taken)
    deadline = time.monotonic() + HANG_GUARD_S
    background = None
    while background is None and time.monotonic() < deadline:
        background, _ = leases.try_acquire("gemma", 1)
        time.sleep(0.05)
    assert background is not None


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
        return leases.try_acquire("gemma", 2, interactive=interactive, waiter="run-i:0:",
                                  waiter_ttl_s=30, health=(health, "up"))  # fmt: skip

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
        assert (found.held, found.interactive_waiting) == (0, 0)  # no waiter registered
    published = publish("up")
    lease, found = attempt()
    assert lease is not None
    assert (found.health, found.held) == (published, 1)
