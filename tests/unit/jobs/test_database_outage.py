"""Which database errors are an outage (retried until the database answers), and its clock."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import psycopg
import psycopg.errors
import pytest
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError

from sparkjobs.errors import BadInput, Unreachable
from sparkjobs.execution.failures import OutageClock, is_database_outage, outage
from sparkjobs.store.engine import make_engine


def wrapped(orig: Exception, cls: type[DBAPIError] = OperationalError) -> DBAPIError:
    return cls("SELECT 1", {}, orig)


@pytest.mark.parametrize(
    ("error", "outage"),
    [
        (wrapped(psycopg.OperationalError("connection failed: Connection refused")), True),
        (wrapped(psycopg.errors.AdminShutdown("terminating connection")), True),
        (wrapped(psycopg.errors.CannotConnectNow("the database system is starting up")), True),
        (wrapped(psycopg.errors.TooManyConnections("too many clients")), True),
        (wrapped(psycopg.errors.UniqueViolation("duplicate key"), IntegrityError), False),
        (wrapped(psycopg.errors.SerializationFailure("could not serialize")), False),
        (wrapped(sqlite3.OperationalError("database is locked")), False),
        (wrapped(sqlite3.OperationalError("no such table: runs")), False),
        (BadInput("no such run"), False),
    ],
)
def test_an_error_is_an_outage_only_when_no_server_answers(error: Exception, outage: bool) -> None:
    assert is_database_outage(error) is outage


def test_an_invalidated_connection_is_an_outage_whatever_the_driver_said() -> None:
    error = wrapped(sqlite3.OperationalError("disk I/O error"))
    error.connection_invalidated = True
    assert is_database_outage(error)


def test_an_outage_is_found_behind_the_error_that_reports_it() -> None:
    reported = Unreachable("PostgreSQL database on db:5432 is unreachable")
    reported.__cause__ = wrapped(psycopg.OperationalError("server closed the connection"))
    assert is_database_outage(reported)


def test_the_outage_clock_runs_from_the_first_failure_until_the_database_answers() -> None:
    now = [100.0]
    clock = OutageClock(lambda: now[0])
    assert clock.failed() == 0.0
    now[0] = 130.0
    assert clock.failed() == 30.0
    clock.answered()
    now[0] = 200.0
    assert clock.failed() == 0.0  # a new outage
    now[0] = 205.0
    assert clock.failed() == 5.0


def test_any_connection_a_pool_hands_out_ends_the_outage(tmp_path: Path) -> None:
    outage.failed()
    time.sleep(0.01)
    engine = make_engine(f"sqlite:///{tmp_path / 'answers.db'}")
    try:
        with engine.connect():
            pass
    finally:
        engine.dispose()
    assert outage.failed() == 0.0  # a new outage starts now
    outage.answered()
