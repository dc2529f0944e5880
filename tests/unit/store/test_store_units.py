"""The store's pure parts: ages, percentiles, URLs for people, the `up` component."""

from __future__ import annotations

import sys
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from sparkjobs.config import Config
from sparkjobs.errors import BadInput, Unreachable
from sparkjobs.store.engine import check_reachable, describe, make_engine
from sparkjobs.store.models import UTCDateTime
from sparkjobs.store.prune import parse_age
from sparkjobs.store.queries import percentile
from sparkjobs.store.runs import slot_key
from sparkjobs.up.component import Stage
from sparkjobs.up.store import components


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30d", timedelta(days=30)),
        ("12h", timedelta(hours=12)),
        ("90m", timedelta(minutes=90)),
        ("2w", timedelta(weeks=2)),
        (" 45s ", timedelta(seconds=45)),
    ],
)
def test_ages_are_a_number_and_a_unit(text: str, expected: timedelta) -> None:
    assert parse_age(text) == expected


@pytest.mark.parametrize("text", ["30", "d", "1.5d", "30 days", "-3d", ""])
def test_other_ages_are_bad_input_with_examples(text: str) -> None:
    with pytest.raises(BadInput, match="30d, 12h"):
        parse_age(text)


@pytest.mark.parametrize(
    ("values", "fraction", "expected"),
    [
        ([], 0.5, None),
        ([7.0], 0.95, 7.0),
        ([1.0, 2.0, 3.0, 4.0], 0.5, 2.5),
        ([float(n) for n in range(1, 11)], 0.95, 9.55),
        ([3.0, 1.0, 2.0], 0.0, 1.0),
    ],
)
def test_percentiles_interpolate_like_numpy(
    values: list[float], fraction: float, expected: float | None
) -> None:
    assert percentile(values, fraction) == pytest.approx(expected)


def test_sqlite_in_the_data_dir_is_migrated_by_up_before_the_workers(tmp_path: Path) -> None:
    (component,) = components(Config(data_dir=tmp_path))
    assert component.argv == (sys.executable, "-m", "sparkjobs", "db", "upgrade")
    assert component.stage == Stage.PREPARE
    assert component.oneshot
    assert component.env["SPARKJOBS_DATABASE_URL"] == f"sqlite:///{tmp_path / 'sparkjobs.db'}"


def test_up_leaves_a_shared_postgresql_to_the_operator(tmp_path: Path) -> None:
    url = "postgresql+psycopg://sparkjobs:pw@10.0.0.1:5432/sparkjobs"
    assert components(Config(data_dir=tmp_path, database_url=url)) == []


def test_people_see_where_the_database_is_without_its_password() -> None:
    described = describe("postgresql+psycopg://u:secret@10.0.0.1:5433/jobs")
    assert described == "PostgreSQL database jobs on 10.0.0.1:5433"
    assert describe("sqlite:///var/sparkjobs.db") == "SQLite database var/sparkjobs.db"


def test_a_database_that_refuses_connections_is_unreachable_with_the_password_masked() -> None:
    engine = make_engine("postgresql+psycopg://u:secret@127.0.0.1:1/jobs", connect_timeout_s=2)
    try:
        with pytest.raises(Unreachable) as raised:
            check_reachable(engine)
    finally:
        engine.dispose()
    message = str(raised.value)
    assert "127.0.0.1:1" in message
    assert "secret" not in message
    assert raised.value.exit_code == 3


def test_a_sqlite_file_in_a_missing_folder_is_unreachable(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'nowhere' / 'x.db'}")
    with pytest.raises(Unreachable, match="does not exist"):
        check_reachable(engine)


def test_naive_times_are_refused_before_they_reach_the_database() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        UTCDateTime().process_bind_param(datetime(2026, 1, 1), make_engine("sqlite://").dialect)
    with pytest.raises(BadInput, match="no time zone"):
        slot_key("briefing", datetime(2026, 1, 1, 7))
