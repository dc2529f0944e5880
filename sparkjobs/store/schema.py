"""Which migration a database is at, bringing it to the latest, and refusing old ones.

The Alembic scripts live in the repository's top-level `migrations/` and ship inside
the package as `sparkjobs.migrations` (pyproject.toml maps the one to the other), so an
installed sparkjobs finds them as well as a checkout; there is no alembic.ini.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import TYPE_CHECKING

from sparkjobs.errors import ConfigError, SchemaBehind

if TYPE_CHECKING:
    from alembic.config import Config as AlembicConfig
    from alembic.script import ScriptDirectory
    from sqlalchemy import Connection, Engine

    from sparkjobs.config import Config

# Any constant works: it only keeps two `db upgrade`s on PostgreSQL from interleaving.
_PG_UPGRADE_LOCK = 0x5350_4B4A  # "SPKJ"


@dataclass(frozen=True)
class SchemaStatus:
    """A database's migration revision next to the newest one this code knows."""

    database: str
    current: str | None
    head: str

    @property
    def is_current(self) -> bool:
        return self.current == self.head


def migrations_dir() -> Path:
    """The directory of the Alembic environment: `sparkjobs.migrations`, wherever installed.

    A wheel and an editable install both put it on the file system, where Alembic reads it
    (a zipped install would not: this refuses it rather than hand Alembic a wrong path).
    """
    found = files("sparkjobs.migrations")
    if not isinstance(found, Path):
        raise RuntimeError(f"sparkjobs.migrations is not a directory on disk ({found!r})")
    return found


def alembic_config(connection: Connection | None = None) -> AlembicConfig:
    """An Alembic config for the store's migrations, optionally bound to `connection`.

    With it, Alembic's command API works without an ini file, e.g.
    `alembic.command.revision(alembic_config(conn), "add x", autogenerate=True)`.
    """
    from alembic.config import Config as AlembicConfig

    config = AlembicConfig()
    config.set_main_option("script_location", str(migrations_dir()))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def _scripts() -> ScriptDirectory:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config())


def head_revision() -> str:
    """The newest migration this code ships."""
    head = _scripts().get_current_head()
    assert head is not None, "the store's migrations have no head"
    return head


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at; None for an empty database.

    Raises:
        Unreachable: the database did not answer.
    """
    from alembic.runtime.migration import MigrationContext
    from sqlalchemy.exc import DBAPIError

    from sparkjobs.store.engine import unreachable

    try:
        with engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()
    except DBAPIError as exc:
        raise unreachable(engine.url.render_as_string(hide_password=False), exc) from exc


def upgrade(url: str, revision: str = "head") -> SchemaStatus:
    """Apply the migrations the database at `url` lacks (creating a SQLite file's folder).

    Returns:
        The status before the upgrade (`current`) and the revision now in place (`head`).

    Raises:
        Unreachable: the database did not answer.
    """
    from alembic import command
    from sqlalchemy import text
    from sqlalchemy.exc import DBAPIError

    from sparkjobs.store.engine import describe, make_engine, unreachable

    engine = make_engine(url)
    try:
        if engine.dialect.name == "sqlite" and engine.url.database:
            Path(engine.url.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        before = current_revision(engine)
        try:
            with engine.begin() as connection:
                if connection.dialect.name == "postgresql":
                    # Held to the end of this transaction, which runs every migration.
                    connection.execute(text(f"SELECT pg_advisory_xact_lock({_PG_UPGRADE_LOCK})"))
                command.upgrade(alembic_config(connection), revision)
        except DBAPIError as exc:
            raise unreachable(url, exc) from exc
        return SchemaStatus(describe(url), before, current_revision(engine) or "")
    finally:
        engine.dispose()


def status(url: str) -> SchemaStatus:
    """Where the database at `url` stands; an absent SQLite file counts as empty."""
    from sparkjobs.store.engine import describe, make_engine

    engine = make_engine(url)
    try:
        database = engine.url.database
        if engine.dialect.name == "sqlite" and database and not Path(database).exists():
            # Connecting would create an empty file where `up` expects its own.
            return SchemaStatus(describe(url), None, head_revision())
        return SchemaStatus(describe(url), current_revision(engine), head_revision())
    finally:
        engine.dispose()


def ensure_current(config: Config) -> None:
    """Refuse to go on unless the config's database is at the newest migration.

    Workers call this before they take tasks.

    Raises:
        SchemaBehind: the schema is empty or older; the message says to run
            `sparkjobs db upgrade`.
        ConfigError: the database is at a revision this code does not know (it was
            migrated by a newer sparkjobs).
        Unreachable: the database did not answer.
    """
    found = status(config.database)
    if found.is_current:
        return
    known = {script.revision for script in _scripts().walk_revisions()}
    if found.current is not None and found.current not in known:
        raise ConfigError(
            f"the {found.database} is at schema revision {found.current}, which this "
            f"sparkjobs does not know (its newest is {found.head}). Fix: install the "
            "sparkjobs version that migrated it on this node"
        )
    at = f"revision {found.current}" if found.current else "no schema yet"
    raise SchemaBehind(
        f"the {found.database} is behind: {at}, this sparkjobs needs {found.head}. "
        "Fix: run `sparkjobs db upgrade` (with the same --config), then start again"
    )
