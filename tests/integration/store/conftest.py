"""A migrated store per test, on the database of the test's leg (or on PostgreSQL)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, make_url
from sqlalchemy.orm import Session, sessionmaker

from sparkjobs.store.engine import make_engine, session_factory
from sparkjobs.store.schema import upgrade
from tests.support.db import POSTGRES_URL, postgres_schema
from tests.support.services import require


def _migrated(url: str) -> Iterator[Engine]:
    upgrade(url)
    engine = make_engine(url)
    yield engine
    engine.dispose()


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    """An engine on a database migrated to the newest revision."""
    yield from _migrated(database_url)


@pytest.fixture
def postgres_engine(postgres_unreachable: Exception | None) -> Iterator[Engine]:
    """An engine on a migrated PostgreSQL schema whatever the leg: for statements that
    only PostgreSQL runs."""
    require("PostgreSQL", str(make_url(POSTGRES_URL).host), postgres_unreachable)
    for url in postgres_schema(POSTGRES_URL):
        yield from _migrated(url)


@pytest.fixture
def sessions(engine: Engine) -> sessionmaker[Session]:
    return session_factory(engine)
