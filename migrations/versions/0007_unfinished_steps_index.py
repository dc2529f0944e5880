"""Unfinished runs are found through their unfinished steps, not an index on run status.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-29

An index on `runs.status` made every change of a run's status, two a run, write a
new entry into each of the table's six indexes: PostgreSQL updates a row in place
(a HOT update, no index entries) only when no indexed column changes. The partial
index `ix_steps_unfinished` holds only steps not finished yet: a run is queued or
running while one of its steps is, so the reconciler and the overlap policy find
active runs through it, and a step's own finish already changes an indexed column
(`finished_at`, in `ix_steps_service_finished_at`).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | None = None
depends_on: str | None = None

UNFINISHED = sa.text("finished_at IS NULL")


def upgrade() -> None:
    op.drop_index(op.f("ix_runs_status"), table_name="runs")
    op.create_index(
        op.f("ix_steps_unfinished"), "steps", ["run_id"],
        postgresql_where=UNFINISHED, sqlite_where=UNFINISHED,
    )  # fmt: skip


def downgrade() -> None:
    op.drop_index(op.f("ix_steps_unfinished"), table_name="steps")
    op.create_index(op.f("ix_runs_status"), "runs", ["status"])
