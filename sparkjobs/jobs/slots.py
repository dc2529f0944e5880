"""Which slots of a job are due, and what to do with each: fire, or skip and say why.

Pure functions of (job, the last slot handled, now): the scheduler supplies the
clock, so misfire and overlap rules are tested with a table of instants, no sleeping.

A slot is *on time* when it is handled at most `on_time` after its instant (beat's
own jitter and a failover to the standby fit in it). Later slots are *missed*:
`misfire="skip"` records each as skipped; `misfire="run_once"` fires the latest
missed slot that is within `job.grace` (unless an on-time slot fires in the same
batch) and records the rest as skipped.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sparkjobs.jobs.crontab import next_cron, parse_cron, zone
from sparkjobs.jobs.define import Cron, Every, Job, Schedule

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
ON_TIME = timedelta(seconds=30)
# At most this many missed slots are listed (and recorded as skipped) per batch;
# a week's downtime of an every-second job must not write 600,000 rows.
MAX_LISTED = 100
# Cron slots older than this before `now` are not enumerated at all.
LOOKBACK = timedelta(days=31)


def describe(schedule: Schedule | None) -> str:
    """How a schedule reads in lists and in the jobs table."""
    if schedule is None:
        return "on demand"
    if isinstance(schedule, Cron):
        return f"cron {schedule.expression}"
    return f"every {_span(schedule.interval)}"


def _span(span: timedelta) -> str:
    seconds = span.total_seconds()
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


def schedule_tz(schedule: Schedule | None) -> str:
    """The schedule's time zone name (intervals are zone-free: UTC)."""
    return schedule.tz if isinstance(schedule, Cron) else "UTC"


def next_fire(schedule: Schedule, after: datetime) -> datetime | None:
    """The first slot strictly after `after` (UTC), or None if there is none.

    Every: slots are whole multiples of the interval since the Unix epoch, so a
    restart never shifts them. Cron: see `sparkjobs.jobs.crontab`.
    """
    if isinstance(schedule, Every):
        step_us = _micros(schedule.interval)
        elapsed_us = _micros(after.astimezone(UTC) - EPOCH)
        return EPOCH + timedelta(microseconds=(elapsed_us // step_us + 1) * step_us)
    return next_cron(parse_cron(schedule.expression), zone(schedule.tz), after)


def _micros(span: timedelta) -> int:
    return (span.days * 86400 + span.seconds) * 1_000_000 + span.microseconds


@dataclass(frozen=True)
class Due:
    """The slots in (after, until], the newest `MAX_LISTED` of them, oldest first."""

    slots: tuple[datetime, ...]
    unlisted: int  # older due slots left out of `slots`


def due_slots(schedule: Schedule, after: datetime, until: datetime) -> Due:
    """Every slot of `schedule` in (after, until]."""
    if isinstance(schedule, Every):
        first = next_fire(schedule, after)
        assert first is not None
        if first > until:
            return Due((), 0)
        count = (_micros(until - first) // _micros(schedule.interval)) + 1
        shown = min(count, MAX_LISTED)
        start = first + schedule.interval * (count - shown)
        return Due(tuple(start + schedule.interval * i for i in range(shown)), count - shown)
    newest: deque[datetime] = deque(maxlen=MAX_LISTED)
    total = 0
    cursor = next_fire(schedule, max(after, until - LOOKBACK))
    while cursor is not None and cursor <= until:
        newest.append(cursor)
        total += 1
        cursor = next_fire(schedule, cursor)
    return Due(tuple(newest), total - len(newest))


@dataclass(frozen=True)
class Decision:
    """What to do with one slot: fire it, or record it as skipped with `reason`."""

    slot: datetime
    fire: bool
    reason: str | None = None


@dataclass(frozen=True)
class Plan:
    """The decisions for the due slots, and where the job stands afterwards."""

    decisions: tuple[Decision, ...]
    last_slot: datetime  # the newest slot handled: the next search starts after it
    next_slot: datetime | None
    unlisted: int  # missed slots too old to be listed or recorded


def plan_slots(
    job: Job,
    last_slot: datetime,
    now: datetime,
    *,
    paused: bool = False,
    on_time: timedelta = ON_TIME,
) -> Plan:
    """Decide about every slot of `job` after `last_slot` up to `now`.

    Args:
        job: a job with a schedule.
        last_slot: the newest slot already handled (fired, skipped or passed).
        now: the current instant.
        paused: a paused job passes its slots without firing or recording them.
        on_time: how late a slot may be handled and still count as on time.
    """
    assert job.schedule is not None, f"job {job.name!r} has no schedule"
    due = due_slots(job.schedule, last_slot, now)
    newest = due.slots[-1] if due.slots else last_slot
    following = next_fire(job.schedule, max(newest, now))
    if paused:
        return Plan((), newest, following, 0)
    on_time_slots = [slot for slot in due.slots if now - slot <= on_time]
    missed = [slot for slot in due.slots if now - slot > on_time]
    catch_up = None
    if job.misfire == "run_once" and not on_time_slots:
        within = [slot for slot in missed if now - slot <= job.grace]
        catch_up = within[-1] if within else None
    decisions = [
        _missed(job, slot, now, catch_up) if slot in missed else Decision(slot, True)
        for slot in due.slots
    ]
    return Plan(tuple(decisions), newest, following, due.unlisted)


def _missed(job: Job, slot: datetime, now: datetime, catch_up: datetime | None) -> Decision:
    if slot == catch_up:
        return Decision(slot, True)
    late = _span(timedelta(seconds=round((now - slot).total_seconds())))
    # Down, or no beat could take the lock (Redis unreachable): either way none fired it.
    why = f"missed by {late} (no scheduler was active)"
    if job.misfire == "skip":
        return Decision(slot, False, f"{why}; misfire='skip'")
    if catch_up is None and now - slot > job.grace:
        return Decision(slot, False, f"{why}; beyond misfire grace {_span(job.grace)}")
    ran = f"slot {catch_up.isoformat()}" if catch_up else "an on-time slot"
    return Decision(slot, False, f"{why}; misfire='run_once' ran {ran} instead")


def overlap_skip_reason(job: Job, previous_active: bool) -> str | None:
    """Why a slot of `job` must be skipped for overlap, or None to fire it.

    Args:
        previous_active: a run of this job is still queued or running.
    """
    if job.overlap == "skip" and previous_active:
        return "a previous run is still queued or running; overlap='skip'"
    return None
