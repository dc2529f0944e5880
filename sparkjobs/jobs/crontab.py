"""Five-field cron expressions in an IANA time zone: parsing, and the next fire time.

Pure functions, no clock: callers pass the instant to search after. The semantics
around daylight-saving changes are explicit (docs/jobs.md, "Time zones and DST"):

- a wall time that does not exist (spring forward: 02:30 in America/Los_Angeles on
  2026-03-08) fires once, at the first valid instant after it, the moment the clocks
  jump (03:00 PDT); several such wall times in one gap fire once between them;
- a wall time that happens twice (fall back: 01:30 on 2026-11-01) fires once, at its
  first occurrence (01:30 PDT), never in the repeated hour.

Why not croniter: it is in maintenance mode, and its DST behaviour differs from the
rules above; a 5-field parser is small and table-testable here.
"""

from __future__ import annotations

import calendar
import difflib
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from sparkjobs.errors import BadInput

MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_MONTHS = {name: i for i, name in enumerate(calendar.month_abbr) if name}
_DAYS = {name: i for i, name in enumerate(("sun", "mon", "tue", "wed", "thu", "fri", "sat"))}
# (name, lowest, highest, names) for minute, hour, day of month, month, day of week.
_FIELDS: tuple[tuple[str, int, int, dict[str, int]], ...] = (
    ("minute", 0, 59, {}),
    ("hour", 0, 23, {}),
    ("day of month", 1, 31, {}),
    ("month", 1, 12, {k.lower(): v for k, v in _MONTHS.items()}),
    ("day of week", 0, 7, _DAYS),
)
# Feb 29 on a given weekday recurs within 28 years; searching longer finds nothing new.
_SEARCH_DAYS = 366 * 29


class CronError(BadInput):
    """A cron expression that cannot be parsed; the message says which field and why."""


class UnknownTimeZone(BadInput):
    """A time zone name that is not in the IANA database."""


@dataclass(frozen=True)
class CronSpec:
    """A parsed expression: the allowed values of each field (day of week 0 = Sunday)."""

    minutes: tuple[int, ...]
    hours: tuple[int, ...]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]
    days_restricted: bool
    weekdays_restricted: bool

    def matches_day(self, day: date) -> bool:
        """Vixie cron: when both day fields are restricted, either one may match."""
        if day.month not in self.months:
            return False
        in_days = day.day in self.days
        in_weekdays = (day.isoweekday() % 7) in self.weekdays
        if self.days_restricted and self.weekdays_restricted:
            return in_days or in_weekdays
        return in_days and in_weekdays


@lru_cache(maxsize=512)
def parse_cron(expression: str) -> CronSpec:
    """Parse `minute hour day-of-month month day-of-week`, or a macro such as @hourly.

    Each field takes `*`, numbers, ranges `a-b`, steps `*/n` and `a-b/n`, lists
    `a,b`, and names for months (jan) and days (mon); day of week 7 is Sunday too.

    Raises:
        CronError: naming the field, the bad part and the allowed range.
    """
    text = MACROS.get(expression.strip().lower(), expression.strip())
    parts = text.split()
    if len(parts) != 5:
        raise CronError(
            f"cron {expression!r} has {len(parts)} fields, not 5; write "
            "'minute hour day-of-month month day-of-week', e.g. '0 7 * * 1-5'"
        )
    values = [_field(part, *spec, expression) for part, spec in zip(parts, _FIELDS, strict=True)]
    weekdays = frozenset(day % 7 for day in values[4])
    spec = CronSpec(
        minutes=tuple(sorted(values[0])),
        hours=tuple(sorted(values[1])),
        days=frozenset(values[2]),
        months=frozenset(values[3]),
        weekdays=weekdays,
        days_restricted=not parts[2].startswith("*"),
        weekdays_restricted=not parts[4].startswith("*"),
    )
    if not spec.weekdays_restricted and not any(
        day <= _month_days(month) for month in spec.months for day in spec.days
    ):
        raise CronError(
            f"cron {expression!r} names no day that exists in its months (e.g. 30 February); "
            "fix the day-of-month or month field"
        )
    return spec


def _field(part: str, name: str, low: int, high: int, names: dict[str, int], expr: str) -> set[int]:
    found: set[int] = set()
    for item in part.lower().split(","):
        body, _, step_text = item.partition("/")
        try:
            step = int(step_text) if step_text else 1
            if step < 1:
                raise ValueError
            if body == "*":
                first, last = low, high
            elif "-" in body:
                a, b = body.split("-", 1)
                first, last = _value(a, names), _value(b, names)
            else:
                first = _value(body, names)
                last = high if step_text else first
        except ValueError:
            raise CronError(
                f"cron {expr!r}: {name} field {part!r} is not valid; use *, a number, "
                f"a range a-b, a step */n or a list a,b (allowed {low}-{high})"
            ) from None
        if not low <= first <= last <= high:
            raise CronError(
                f"cron {expr!r}: {name} {item!r} is out of range; allowed {low}-{high}, "
                "ranges ascending"
            )
        found.update(range(first, last + 1, step))
    return found


def _value(text: str, names: dict[str, int]) -> int:
    return names[text] if text in names else int(text)


def _month_days(month: int) -> int:
    return 29 if month == 2 else calendar.monthrange(2001, month)[1]


def zone(name: str) -> ZoneInfo:
    """The IANA zone `name`.

    Raises:
        UnknownTimeZone: with the closest known names as the fix.
    """
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        close = difflib.get_close_matches(name, sorted(available_timezones()), n=3)
        hint = f"did you mean {', '.join(close)}?" if close else "e.g. Europe/Berlin or UTC"
        raise UnknownTimeZone(f"unknown time zone {name!r}; use an IANA name: {hint}") from None


def next_cron(spec: CronSpec, tz: ZoneInfo, after: datetime) -> datetime | None:
    """The first fire time strictly after `after`, in UTC; None if it never fires again.

    Walks wall times in `tz` in order and maps each to one instant (see the module
    docstring for gaps and repeats); that mapping never goes backwards, so the first
    instant past `after` is the answer.
    """
    if after.tzinfo is None:
        raise BadInput(f"next_cron needs an aware time, not {after.isoformat()}")
    local = after.astimezone(tz)
    start = local.date()
    for offset in range(_SEARCH_DAYS):
        day = start + timedelta(days=offset)
        if not spec.matches_day(day):
            continue
        for hour in spec.hours:
            if day == start and hour < local.hour:
                continue
            for minute in spec.minutes:
                instant = wall_instant(datetime.combine(day, time(hour, minute)), tz)
                if instant > after:
                    return instant
    return None


def wall_instant(wall: datetime, tz: ZoneInfo) -> datetime:
    """The UTC instant a naive wall time in `tz` fires at: its first occurrence, or
    for a wall time inside a spring-forward gap, the instant the gap ends."""
    first = wall.replace(tzinfo=tz, fold=0)
    instant = first.astimezone(UTC)
    if instant.astimezone(tz).replace(tzinfo=None) == wall:
        return instant
    # In a gap, fold=0 reads the wall time with the offset from before the jump and
    # lands past the gap; fold=1 with the one after and lands before it. The clocks
    # jump between the two: find the first instant whose wall time is past `wall`.
    low = wall.replace(tzinfo=tz, fold=1).astimezone(UTC)
    high = instant
    while high - low > timedelta(seconds=1):
        middle = low + (high - low) / 2
        if middle.astimezone(tz).replace(tzinfo=None) > wall:
            high = middle
        else:
            low = middle
    return high.replace(microsecond=0)
