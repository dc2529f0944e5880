"""Database fixtures: `database_url` gives each test an empty database of its leg.

Leg "embedded": a SQLite file in the test's tmp_path. Leg "services": a fresh schema in
the shared PostgreSQL's `test` database (reached through `search_path`), dropped
afterwards; those tests carry the `postgres` mark, and fail under CI=true when the
server does not answer (skip elsewhere). TEST_POSTGRES_URL points at another server.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, make_url, text
from sqlalchemy.exc import OperationalError

from tests.support.services import require

POSTGRES_URL = os.environ.get(
    "TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Before `-m` selects: a test that takes `database_url` on the services leg
    # needs PostgreSQL, so `-m "not postgres"` leaves it out.
    for item in items:
        callspec = getattr(item, "callspec", None)
        uses_db = "database_url" in getattr(item, "fixturenames", ())
        if uses_db and callspec is not None and callspec.params.get("leg") == "services":
            item.add_marker(pytest.mark.postgres)


@pytest.fixture(scope="session")
def postgres_unreachable() -> Exception | None:
    """None when the PostgreSQL server answers, else the reason it did not."""
    engine = create_engine(POSTGRES_URL, connect_args={"connect_timeout": 3})
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except OperationalError as exc:
        return exc
    finally:
        engine.dispose()
    return None


def postgres_schema(server_url: str) -> Iterator[str]:
    """A URL whose connections see only a new, empty schema; the schema is dropped after."""
    schema = f"sjtest_{secrets.token_hex(6)}"
    admin = create_engine(server_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(text(f"CREATE SCHEMA {schema}"))
        url = make_url(server_url).update_query_dict({"options": f"-csearch_path={schema}"})
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            # A connection a test leaked must not hang the run: give up loudly instead.
            connection.execute(text("SET lock_timeout = '10s'"))
            connection.execute(text(f"DROP SCHEMA IF EXISTS {schema} CASCADE"))
        admin.dispose()


@pytest.fixture
def database_url(request: pytest.FixtureRequest, leg: str, tmp_path: Path) -> Iterator[str]:
    """An empty database of this test's leg: a SQLite file, or a fresh PostgreSQL schema."""
    from sparkjobs.store.engine import dispose_shared

    if leg == "embedded":
        url = f"sqlite:///{tmp_path / 'sparkjobs.db'}"
        yield url
        dispose_shared(url)
        return
    host = make_url(POSTGRES_URL).host
    require("PostgreSQL", f"{host}", request.getfixturevalue("postgres_unreachable"))
    for url in postgres_schema(POSTGRES_URL):
        yield url
        # Pools this process opened on the schema close before it is dropped.
        dispose_shared(url)
