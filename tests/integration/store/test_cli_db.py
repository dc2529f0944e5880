"""`sparkjobs db upgrade | current | prune`, in process and as the real command."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from sparkjobs.cli import context, db
from sparkjobs.config import Config
from sparkjobs.store.engine import make_engine, session_factory
from sparkjobs.store.models import RunKind, Status, Trigger
from sparkjobs.store.runs import create_run, utc_now
from sparkjobs.store.schema import head_revision
from tests.support.cluster import clean_env


@pytest.fixture
def cli(database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> typer.Typer:
    config = Config(data_dir=tmp_path, database_url=database_url)
    monkeypatch.setattr(context, "get_config", lambda: config)
    app = typer.Typer()
    app.callback()(lambda: None)  # a group, as in the real command
    db.register(app)
    return app


def test_db_upgrade_migrates_and_then_says_it_is_current(
    cli: typer.Typer, database_url: str
) -> None:
    runner = CliRunner()
    first = runner.invoke(cli, ["db", "upgrade"])
    assert first.exit_code == 0, first.output
    assert f"upgraded from empty to revision {head_revision()}" in first.output
    again = runner.invoke(cli, ["db", "upgrade"])
    assert "already at revision" in again.output
    current = runner.invoke(cli, ["db", "current", "--json"])
    assert json.loads(current.output)["current"] == head_revision()


def test_db_prune_reports_what_it_freed_as_json(cli: typer.Typer, database_url: str) -> None:
    runner = CliRunner()
    assert runner.invoke(cli, ["db", "upgrade"]).exit_code == 0
    engine = make_engine(database_url)
    try:
        with session_factory(engine).begin() as session:
            create_run(
                session,
                job="old",
                kind=RunKind.CHAT,
                trigger=Trigger.MANUAL,
                status=Status.SKIPPED,
                now=utc_now() - timedelta(days=31),
            )
    finally:
        engine.dispose()
    result = runner.invoke(cli, ["db", "prune", "--older-than", "30d", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert (report["runs"], report["artifacts"], report["bytes_freed"]) == (1, 0, 0)


def _sparkjobs(tmp_path: Path, database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = clean_env(SPARKJOBS_DATA_DIR=str(tmp_path), SPARKJOBS_DATABASE_URL=database_url)
    return subprocess.run(
        [sys.executable, "-m", "sparkjobs", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_prune_before_upgrade_exits_2_and_says_to_run_db_upgrade(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'sparkjobs.db'}"
    result = _sparkjobs(tmp_path, url, "db", "prune", "--older-than", "30d")
    assert result.returncode == 2, result.stderr
    assert "sparkjobs db upgrade" in result.stderr


def test_an_unreachable_database_exits_3_naming_its_host_but_not_its_password(
    tmp_path: Path,
) -> None:
    url = "postgresql+psycopg://sparkjobs:s3cret-pw@127.0.0.1:1/sparkjobs"
    result = _sparkjobs(tmp_path, url, "db", "upgrade")
    assert result.returncode == 3, result.stderr
    assert "127.0.0.1" in result.stderr
    assert "s3cret-pw" not in result.stderr + result.stdout
