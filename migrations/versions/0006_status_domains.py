"""On PostgreSQL, every status and kind column is a domain instead of a checked VARCHAR.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-29

PostgreSQL compiles a table's CHECK constraints again for each statement that writes
one of its rows, even one that leaves the checked column alone; a domain's check is
compiled once per connection and evaluated only where a value is assigned
(`sparkjobs.store.choice`). The values allowed stay the same. SQLite keeps its CHECK
constraints: this revision changes nothing there.

Changing a column's type rewrites its table (and rebuilds its indexes) under an
exclusive lock: upgrade a large store while its workers are stopped.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | None = None
depends_on: str | None = None

STATUSES = ("queued", "running", "succeeded", "failed", "cancelled", "skipped")

# domain: (table, column, the values it allows)
DOMAINS: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "run_kind": ("runs", "kind", ("chat", "speak", "clone", "pipeline", "custom")),
    "run_trigger": ("runs", "trigger", ("schedule", "submit", "manual", "api", "retry")),
    "run_status": ("runs", "status", STATUSES),
    "step_status": ("steps", "status", STATUSES),
    "attempt_status": ("step_attempts", "status", ("running", "succeeded", "failed")),
    "piece_status": ("step_pieces", "status", ("queued", "running", "succeeded", "failed")),
    "artifact_role": ("step_artifacts", "role", ("input", "output", "piece")),
}


def _listed(values: tuple[str, ...]) -> str:
    return "(" + ", ".join(f"'{value}'" for value in values) + ")"


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for domain, (table, column, values) in DOMAINS.items():
        op.execute(
            sa.text(
                f"CREATE DOMAIN {domain} AS VARCHAR(16) "
                f"CONSTRAINT ck_{domain} CHECK (VALUE IN {_listed(values)})"
            )
        )
        op.drop_constraint(op.f(f"ck_{table}_{domain}"), table, type_="check")
        op.execute(sa.text(f"ALTER TABLE {table} ALTER COLUMN {column} TYPE {domain}"))


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for domain, (table, column, values) in DOMAINS.items():
        op.execute(sa.text(f"ALTER TABLE {table} ALTER COLUMN {column} TYPE VARCHAR(16)"))
        op.create_check_constraint(
            op.f(f"ck_{table}_{domain}"), table, f"{column} IN {_listed(values)}"
        )
        op.execute(sa.text(f"DROP DOMAIN {domain}"))
