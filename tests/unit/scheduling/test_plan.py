"""Misfire and overlap decisions, table-driven: a job, the last slot handled, and now."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from sparkjobs.jobs.define import Job, Misfire, chat, cron, every
from sparkjobs.jobs.slots import overlap_skip_reason, plan_slots


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def hourly(misfire: Misfire = "skip", grace: timedelta = timedelta(minutes=10)) -> Job:
    return Job("digest", (chat("hi"),), every(hours=1), misfire=misfire, grace=grace)


def fired(job: Job, last: str, now: str, **options: bool) -> list[tuple[str, bool]]:
    plan = plan_slots(job, at(last), at(now), **options)
    return [(d.slot.strftime("%H:%M"), d.fire) for d in plan.decisions]


@pytest.mark.parametrize(
    ("job", "last", "now", "expected"),
    [
        # on time (within 30 s of the slot): fire
        (hourly(), "2026-01-01T09:00", "2026-01-01T10:00:00", [("10:00", True)]),
        (hourly(), "2026-01-01T09:00", "2026-01-01T10:00:25", [("10:00", True)]),
        (hourly(), "2026-01-01T09:00", "2026-01-01T09:59:59", []),
        # down from 09:30 to 12:05, misfire=skip: every missed slot recorded as skipped
        (hourly("skip"), "2026-01-01T09:00", "2026-01-01T12:05",
         [("10:00", False), ("11:00", False), ("12:00", False)]),
        # run_once: the newest missed slot within grace runs, the others are skipped
        (hourly("run_once"), "2026-01-01T09:00", "2026-01-01T12:05",
         [("10:00", False), ("11:00", False), ("12:00", True)]),
        # run_once but the newest missed slot is beyond grace: nothing runs
        (hourly("run_once"), "2026-01-01T09:00", "2026-01-01T12:20",
         [("10:00", False), ("11:00", False), ("12:00", False)]),
        (hourly("run_once", timedelta(hours=2)), "2026-01-01T09:00", "2026-01-01T12:20",
         [("10:00", False), ("11:00", False), ("12:00", True)]),
        # run_once and an on-time slot in the same batch: only the on-time one runs
        (hourly("run_once"), "2026-01-01T09:00", "2026-01-01T11:00:10",
         [("10:00", False), ("11:00", True)]),
    ],
)  # fmt: skip
def test_misfire_policies(job: Job, last: str, now: str, expected: list[tuple[str, bool]]) -> None:
    assert fired(job, last, now) == expected


def test_skipped_slots_say_why() -> None:
    plan = plan_slots(hourly("skip"), at("2026-01-01T09:00"), at("2026-01-01T11:05"))
    reasons = [d.reason for d in plan.decisions]
    assert reasons[0] is not None
    assert "missed by 65m" in reasons[0]
    assert "misfire='skip'" in reasons[0]
    assert plan.last_slot == at("2026-01-01T11:00")
    assert plan.next_slot == at("2026-01-01T12:00")


def test_a_paused_job_passes_its_slots_without_firing_or_recording() -> None:
    plan = plan_slots(hourly(), at("2026-01-01T09:00"), at("2026-01-01T12:05"), paused=True)
    assert plan.decisions == ()
    assert plan.last_slot == at("2026-01-01T12:00")


def test_a_cron_job_over_the_berlin_spring_forward_fires_once_at_the_jump() -> None:
    job = Job("night", (chat("hi"),), cron("30 2 * * *", tz="Europe/Berlin"))
    plan = plan_slots(job, at("2026-03-28T12:00"), at("2026-03-29T01:00:05"))
    assert [(d.slot, d.fire) for d in plan.decisions] == [(at("2026-03-29T01:00"), True)]


@pytest.mark.parametrize(
    ("overlap", "previous_active", "skipped"),
    [("skip", True, True), ("skip", False, False), ("queue", True, False), ("queue", False, False)],
)
def test_overlap_policy(overlap: str, previous_active: bool, skipped: bool) -> None:
    job = Job("j", (chat("hi"),), every(minutes=1), overlap=overlap)  # type: ignore[arg-type]
    assert (overlap_skip_reason(job, previous_active) is not None) == skipped
