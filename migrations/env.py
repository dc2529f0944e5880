"""The Alembic environment of the store: run through `sparkjobs.store.schema`.

There is no alembic.ini: `schema.upgrade` (and `sparkjobs db upgrade`) hand this file
an open connection, so that SQLite's pragmas and PostgreSQL's lock are already in place.
"""

from __future__ import annotations

from typing import Any, Literal

from alembic import context
from alembic.autogenerate.api import AutogenContext

from sparkjobs.store.models import Base, UTCDateTime


def _render_item(kind: str, item: Any, autogen_context: AutogenContext) -> str | Literal[False]:
    # Migrations stay self-contained: our UTC wrapper is a timestamptz in the schema.
    if kind == "type" and isinstance(item, UTCDateTime):
        return "sa.DateTime(timezone=True)"
    return False


connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError(
        "run migrations with `sparkjobs db upgrade` (sparkjobs.store.schema.upgrade), "
        "which passes an open connection; offline SQL generation is not supported"
    )
context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    # SQLite cannot ALTER most things: later migrations copy and swap tables.
    render_as_batch=connection.dialect.name == "sqlite",
    render_item=_render_item,
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
