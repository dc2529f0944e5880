"""The migrations build the whole store from nothing, on both engines, and match the models."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, text
from sqlalchemy.exc import IntegrityError

from sparkjobs.config import Config
from sparkjobs.errors import SchemaBehind
from sparkjobs.store.engine import make_engine
from sparkjobs.store.models import Base
from sparkjobs.store.schema import (
    alembic_config,
    current_revision,
    ensure_current,
    head_revision,
    status,
    upgrade,
)

TABLES = {
    "runs",
    "steps",
    "step_attempts",
    "results",
    "artifacts",
    "artifact_locations",
    "step_artifacts",
}


def test_upgrade_from_empty_creates_every_table_and_reaches_head(database_url: str) -> None:
    before = upgrade(database_url)
    engine = make_engine(database_url)
    try:
        assert before.current is None
        assert current_revision(engine) == head_revision()
        assert set(inspect(engine).get_table_names()) >= TABLES
    finally:
        engine.dispose()


def test_models_and_migrations_agree(database_url: str) -> None:
    upgrade(database_url)
    engine = make_engine(database_url)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            assert compare_metadata(context, Base.metadata) == []
    finally:
        engine.dispose()


def test_upgrading_again_changes_nothing(database_url: str) -> None:
    upgrade(database_url)
    again = upgrade(database_url)
    assert again.current == again.head == head_revision()


def test_downgrade_to_base_removes_the_store_and_upgrade_rebuilds_it(database_url: str) -> None:
    upgrade(database_url)
    engine = make_engine(database_url)
    try:
        with engine.begin() as connection:
            command.downgrade(alembic_config(connection), "base")
        assert not TABLES & set(inspect(engine).get_table_names())
        upgrade(database_url)
        assert set(inspect(engine).get_table_names()) >= TABLES
    finally:
        engine.dispose()


def test_worker_check_refuses_an_empty_database_and_says_to_run_db_upgrade(
    database_url: str, tmp_path: Path
) -> None:
    config = Config(data_dir=tmp_path, database_url=database_url)
    with pytest.raises(SchemaBehind, match="sparkjobs db upgrade") as raised:
        ensure_current(config)
    assert raised.value.exit_code == 2


def test_worker_check_accepts_a_migrated_database(database_url: str, tmp_path: Path) -> None:
    upgrade(database_url)
    ensure_current(Config(data_dir=tmp_path, database_url=database_url))


def test_status_of_a_missing_sqlite_file_is_empty_and_does_not_create_it(tmp_path: Path) -> None:
    path = tmp_path / "absent" / "sparkjobs.db"
    found = status(f"sqlite:///{path}")
    assert found.current is None
    assert not found.is_current
    assert not path.exists()


# A run whose status no version of the store allows.
UNKNOWN_STATUS = text(
    "INSERT INTO runs (id, job, kind, trigger, idempotency_key, status, created_at,"
    " params) VALUES (:id, 'j', 'chat', 'api', :key, 'exploded', :now, '{}')"
)


def _unknown_status() -> dict[str, object]:
    return {"id": uuid.uuid4().hex, "key": "some-key", "now": datetime.now(UTC)}


def test_the_database_itself_refuses_a_status_it_does_not_know(database_url: str) -> None:
    upgrade(database_url)
    engine = make_engine(database_url)
    try:
        with pytest.raises(IntegrityError, match="run_status"), engine.begin() as conn:
            conn.execute(UNKNOWN_STATUS, _unknown_status())
    finally:
        engine.dispose()


def test_downgrading_below_the_status_domains_checks_statuses_on_the_tables_again(
    database_url: str,
) -> None:
    upgrade(database_url)
    engine = make_engine(database_url)
    try:
        with engine.begin() as connection:
            command.downgrade(alembic_config(connection), "0005")
        with pytest.raises(IntegrityError, match="ck_runs_run_status"), engine.begin() as conn:
            conn.execute(UNKNOWN_STATUS, _unknown_status())
        assert "ix_runs_status" in {index["name"] for index in inspect(engine).get_indexes("runs")}
        upgrade(database_url)
        with pytest.raises(IntegrityError, match="run_status"), engine.begin() as conn:
            conn.execute(UNKNOWN_STATUS, _unknown_status())
        assert "ix_runs_status" not in {i["name"] for i in inspect(engine).get_indexes("runs")}
    finally:
        engine.dispose()
