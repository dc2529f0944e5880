"""The pure parts of dispatch: wait reasons, delays, countdown caps, health readings."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from sparkjobs.config.sections import TasksConfig
from sparkjobs.dispatch import wait_reason
from sparkjobs.dispatch.gate import health_delay_s
from sparkjobs.dispatch.health import Reading, ServerState
from sparkjobs.dispatch.retry import max_countdown_s
from sparkjobs.dispatch.waits import Wait, WaitKind, kind_of
from sparkjobs.store.models import Status, Step

SINCE = datetime(2026, 11, 29, 12, 0, 3, tzinfo=UTC)


def step(status: Status, waiting_for: str | None) -> Step:
    return Step(id=uuid.uuid4(), run_id=uuid.uuid4(), index=0, node="spark1", service="gemma",
                status=status, queued_at=SINCE, waiting_for=waiting_for,
                waiting_since=SINCE if waiting_for else None)  # fmt: skip


def test_a_waiting_step_says_what_it_waits_for_and_since_when() -> None:
    line = Wait(WaitKind.LEASE, "all 8 slot(s) of gemma are in use", 0.1).line
    assert wait_reason(step(Status.QUEUED, line)) == (
        "lease: all 8 slot(s) of gemma are in use (since 12:00:03 UTC)"
    )
    assert wait_reason(step(Status.RUNNING, "retry: attempt 1 failed")) is not None


@pytest.mark.parametrize("status", [Status.SUCCEEDED, Status.FAILED, Status.CANCELLED])
def test_a_finished_step_waits_for_nothing(status: Status) -> None:
    assert wait_reason(step(status, "lease: all 1 slot(s) of orpheus are in use")) is None


def test_a_step_that_never_waited_has_no_reason() -> None:
    assert wait_reason(step(Status.QUEUED, None)) is None


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("health: gemma is down", WaitKind.HEALTH),
        ("backpressure: gemma is overloaded", WaitKind.BACKPRESSURE),
        ("retry: attempt 2 failed", WaitKind.RETRY),
        ("lease: all 1 slot(s)", WaitKind.LEASE),
        ("something else: x", None),
        (None, None),
        ("", None),
    ],
)
def test_the_kind_of_a_recorded_wait_is_its_prefix(text: str | None, kind: WaitKind | None) -> None:
    assert kind_of(text) is kind


@pytest.mark.parametrize(
    ("waited_s", "cap_s", "expected"),
    [(0.0, 30.0, 1.0), (1.0, 30.0, 1.0), (10.0, 30.0, 5.0), (100.0, 30.0, 30.0), (10, 2, 2.0)],
)
def test_waits_for_health_grow_with_the_time_waited_up_to_the_cap(
    waited_s: float, cap_s: float, expected: float
) -> None:
    assert health_delay_s(waited_s, cap_s=cap_s, rand=lambda: 1.0) == expected
    assert health_delay_s(waited_s, cap_s=cap_s, rand=lambda: 0.0) == expected / 2


@pytest.mark.parametrize(
    ("tasks", "expected"),
    [
        (TasksConfig(), 300.0),  # visibility 2400 - 1800 - 60 leaves room for the cap
        (TasksConfig(time_limit_s=600, max_retry_delay_s=300, visibility_timeout_s=700), 40.0),
        (TasksConfig(time_limit_s=600, max_retry_delay_s=0), 1.0),
        (TasksConfig(time_limit_s=100, visibility_timeout_s=120), 1.0),
    ],
)
def test_countdowns_stay_below_the_visibility_timeout_minus_the_time_limit(
    tasks: TasksConfig, expected: float
) -> None:
    assert max_countdown_s(tasks) == expected
    assert max_countdown_s(tasks) < max(2.0, tasks.visibility_s - tasks.time_limit_s)


def test_a_reading_says_which_server_is_down_and_for_how_long() -> None:
    reading = Reading("gemma", ServerState.DOWN, "connection refused", since=100.0, checked=140.0)
    assert Reading.from_json(reading.to_json()) == reading
    assert reading.describe("http://127.0.0.1:8002/", now=142.4) == (
        "gemma (http://127.0.0.1:8002/) is down for 42 s: connection refused"
    )
    assert not reading.state.reachable
    assert ServerState.OVERLOADED.reachable
