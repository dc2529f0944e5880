"""Interactive runs, and what a waiting step waits for.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-29

`runs.interactive` marks runs whose submitter waits for them (`submit --wait`):
every message of such a run is published with the highest priority. A step that
cannot start yet records why in `steps.waiting_for` (a lease, a server's health,
backpressure or a retry delay) and since when in `steps.waiting_since`.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.add_column(
            sa.Column("interactive", sa.Boolean(), nullable=False, server_default=sa.false())
        )
    with op.batch_alter_table("steps") as batch:
        batch.add_column(sa.Column("waiting_for", sa.Text(), nullable=True))
        batch.add_column(sa.Column("waiting_since", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("steps") as batch:
        batch.drop_column("waiting_since")
        batch.drop_column("waiting_for")
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("interactive")
