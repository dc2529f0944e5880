"""A pooled PostgreSQL connection is tested before use only after it sat idle.

A busy worker's connections go back and forth every few milliseconds: pinging each
checkout would add a round trip to every transaction. One that sat idle may have
been cut (a server restart): it is pinged, and replaced when the ping fails.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, create_engine, make_url, text
from sqlalchemy.exc import DBAPIError

from sparkjobs.store import engine as store_engine
from tests.support.db import POSTGRES_URL, postgres_schema
from tests.support.services import require


@pytest.fixture
def engine(postgres_unreachable: Exception | None) -> Iterator[Engine]:
    require("PostgreSQL", str(make_url(POSTGRES_URL).host), postgres_unreachable)
    for url in postgres_schema(POSTGRES_URL):
        made = store_engine.make_engine(url)
        yield made
        made.dispose()


def _backend_pid(engine: Engine) -> int:
    with engine.connect() as connection:
        return int(connection.execute(text("SELECT pg_backend_pid()")).scalar_one())


def _terminate(pid: int) -> None:
    admin = create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
    finally:
        admin.dispose()


def _count_pings(engine: Engine) -> list[int]:
    pings: list[int] = []
    original = engine.dialect.do_ping

    def counted(dbapi_connection: object) -> bool:
        pings.append(1)
        return bool(original(dbapi_connection))

    engine.dialect.do_ping = counted  # type: ignore[method-assign]
    return pings


def test_a_connection_in_use_a_moment_ago_is_not_pinged(engine: Engine) -> None:
    first = _backend_pid(engine)
    pings = _count_pings(engine)
    for _ in range(5):
        assert _backend_pid(engine) == first  # the same pooled connection, reused
    assert pings == []


def test_a_connection_cut_while_idle_is_replaced_at_checkout(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store_engine, "PING_AFTER_IDLE_S", 0.0)
    first = _backend_pid(engine)
    pings = _count_pings(engine)
    _terminate(first)  # as a server restart would: the pooled connection is dead
    second = _backend_pid(engine)  # no error: the ping found it dead, the pool reconnected
    assert second != first
    assert pings  # it was tested before use


def test_a_connection_cut_moments_after_use_fails_once_then_the_pool_reconnects(
    engine: Engine,
) -> None:
    # Not idle long enough to be pinged: the query meets the cut (a task retries it as
    # a database outage), SQLAlchemy drops the pool, and the next checkout reconnects.
    first = _backend_pid(engine)
    _terminate(first)
    with pytest.raises(DBAPIError) as caught:
        _backend_pid(engine)
    assert caught.value.connection_invalidated
    assert _backend_pid(engine) != first
