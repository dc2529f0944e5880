"""Next fire times, table-driven: cron fields, intervals, and the 2026 DST changes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from sparkjobs.jobs.crontab import CronError, UnknownTimeZone, parse_cron, zone
from sparkjobs.jobs.define import Cron, Every, Schedule
from sparkjobs.jobs.slots import due_slots, next_fire

LA = "America/Los_Angeles"
BERLIN = "Europe/Berlin"


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


def fires(schedule: Schedule, after: str, count: int) -> list[str]:
    found, cursor = [], utc(after)
    for _ in range(count):
        upcoming = next_fire(schedule, cursor)
        assert upcoming is not None
        found.append(upcoming.astimezone(zone(getattr(schedule, "tz", "UTC"))).isoformat())
        cursor = upcoming
    return found


@pytest.mark.parametrize(
    ("expression", "tz", "after", "expected"),
    [
        # plain fields, steps, ranges, lists, names
        ("0 7 * * *", "UTC", "2026-01-01T06:59:59+00:00", ["2026-01-01T07:00:00+00:00"]),
        ("0 7 * * *", "UTC", "2026-01-01T07:00:00+00:00", ["2026-01-02T07:00:00+00:00"]),
        ("*/20 9 * * *", "UTC", "2026-01-01T09:00:00+00:00",
         ["2026-01-01T09:20:00+00:00", "2026-01-01T09:40:00+00:00", "2026-01-02T09:00:00+00:00"]),
        ("0 7 * * mon-fri", "UTC", "2026-01-02T08:00:00+00:00", ["2026-01-05T07:00:00+00:00"]),
        ("0 0 1 jan,jul *", "UTC", "2026-01-01T00:00:00+00:00", ["2026-07-01T00:00:00+00:00"]),
        ("@hourly", "UTC", "2026-01-01T00:30:00+00:00", ["2026-01-01T01:00:00+00:00"]),
        ("0 12 * * 7", "UTC", "2026-01-01T00:00:00+00:00", ["2026-01-04T12:00:00+00:00"]),
        # both day fields restricted: either matches (Vixie cron)
        ("0 0 13 * fri", "UTC", "2026-02-01T00:00:00+00:00",
         ["2026-02-06T00:00:00+00:00", "2026-02-13T00:00:00+00:00"]),
        ("0 0 29 2 *", "UTC", "2026-01-01T00:00:00+00:00", ["2028-02-29T00:00:00+00:00"]),
        # spring forward, Los Angeles, 2026-03-08: 02:00-02:59 does not exist;
        # a missing wall time fires once when the clocks jump (03:00 PDT)
        ("30 2 * * *", LA, "2026-03-07T12:00:00-08:00",
         ["2026-03-08T03:00:00-07:00", "2026-03-09T02:30:00-07:00"]),
        ("*/20 2 * * *", LA, "2026-03-08T00:00:00-08:00",
         ["2026-03-08T03:00:00-07:00", "2026-03-09T02:00:00-07:00"]),
        ("0 * * * *", LA, "2026-03-08T00:30:00-08:00",
         ["2026-03-08T01:00:00-08:00", "2026-03-08T03:00:00-07:00", "2026-03-08T04:00:00-07:00"]),
        # fall back, Los Angeles, 2026-11-01: 01:00-01:59 happens twice; first one only
        ("30 1 * * *", LA, "2026-10-31T12:00:00-07:00",
         ["2026-11-01T01:30:00-07:00", "2026-11-02T01:30:00-08:00"]),
        ("0 * * * *", LA, "2026-11-01T00:30:00-07:00",
         ["2026-11-01T01:00:00-07:00", "2026-11-01T02:00:00-08:00"]),
        ("45 1 * * *", LA, "2026-11-01T01:10:00-08:00", ["2026-11-02T01:45:00-08:00"]),
        # Berlin, 2026-03-29 (02:00 -> 03:00) and 2026-10-25 (03:00 -> 02:00)
        ("30 2 * * *", BERLIN, "2026-03-28T12:00:00+01:00",
         ["2026-03-29T03:00:00+02:00", "2026-03-30T02:30:00+02:00"]),
        ("0 7 * * *", BERLIN, "2026-03-28T12:00:00+01:00",
         ["2026-03-29T07:00:00+02:00", "2026-03-30T07:00:00+02:00"]),
        ("30 2 * * *", BERLIN, "2026-10-24T12:00:00+02:00",
         ["2026-10-25T02:30:00+02:00", "2026-10-26T02:30:00+01:00"]),
        ("*/30 2 * * *", BERLIN, "2026-10-25T02:40:00+02:00", ["2026-10-26T02:00:00+01:00"]),
    ],
)  # fmt: skip
def test_cron_next_fire(expression: str, tz: str, after: str, expected: list[str]) -> None:
    assert fires(Cron(expression, tz), after, len(expected)) == expected


@pytest.mark.parametrize(
    ("interval", "after", "expected"),
    [
        (timedelta(hours=1), "2026-03-08T09:59:59+00:00", "2026-03-08T10:00:00+00:00"),
        (timedelta(hours=1), "2026-03-08T10:00:00+00:00", "2026-03-08T11:00:00+00:00"),
        (timedelta(minutes=7), "1970-01-01T00:00:00+00:00", "1970-01-01T00:07:00+00:00"),
        (timedelta(seconds=1), "2026-01-01T00:00:00.500+00:00", "2026-01-01T00:00:01+00:00"),
        # epoch-aligned and zone-free: DST does not move an interval
        (timedelta(hours=1), "2026-11-01T01:30:00-07:00", "2026-11-01T09:00:00+00:00"),
    ],
)
def test_every_is_aligned_to_the_epoch(interval: timedelta, after: str, expected: str) -> None:
    assert next_fire(Every(interval), utc(after)) == utc(expected)


def test_due_slots_lists_the_newest_and_counts_the_rest() -> None:
    due = due_slots(Every(timedelta(seconds=1)), utc("2026-01-01T00:00:00+00:00"),
                    utc("2026-01-01T00:10:00+00:00"))  # fmt: skip
    assert len(due.slots) == 100
    assert due.unlisted == 500
    assert due.slots[-1] == utc("2026-01-01T00:10:00+00:00")


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("0 7 * *", "has 4 fields, not 5"),
        ("61 * * * *", "minute '61' is out of range"),
        ("0 7 * * funday", "day of week field 'funday' is not valid"),
        ("*/0 * * * *", r"minute field '\*/0' is not valid"),
        ("0 0 30 2 *", "names no day that exists"),
        ("5-1 * * * *", "out of range"),
    ],
)
def test_bad_cron_expressions_say_which_field(expression: str, message: str) -> None:
    with pytest.raises(CronError, match=message):
        parse_cron(expression)


def test_unknown_time_zone_suggests_close_names() -> None:
    with pytest.raises(UnknownTimeZone, match="Europe/Berlin"):
        zone("Europe/Berln")
