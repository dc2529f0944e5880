"""Steps carry their definition; long speech is tracked piece by piece.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28

`steps.spec` is the step as submitted (kind, prompt or text, voice...), so a worker
needs only ids in its message. Long text for a speak step is split into
`step_pieces`; `steps.pieces_done` counts finished pieces with one atomic UPDATE, so
exactly one piece (the last) triggers the join. A piece's audio is linked to its
step with the new artifact role "piece", and each piece's attempts are step
attempts with `piece` set.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | None = None
depends_on: str | None = None

ROLE_CHECK = "ck_step_artifacts_artifact_role"
PIECE_STATUSES = ("queued", "running", "succeeded", "failed")


def _json() -> sa.types.TypeEngine[Any]:
    return sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def _roles(*values: str) -> str:
    return "role IN (" + ", ".join(f"'{value}'" for value in values) + ")"


def upgrade() -> None:
    with op.batch_alter_table("steps") as batch:
        batch.add_column(sa.Column("spec", _json(), nullable=True))
        batch.add_column(sa.Column("pieces_total", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("pieces_done", sa.Integer(), nullable=False, server_default="0"))
    with op.batch_alter_table("step_attempts") as batch:
        batch.add_column(sa.Column("piece", sa.Integer(), nullable=True))
    with op.batch_alter_table("step_artifacts") as batch:
        batch.drop_constraint(op.f(ROLE_CHECK), type_="check")
        batch.create_check_constraint("artifact_role", _roles("input", "output", "piece"))
    op.create_table(
        "step_pieces",
        sa.Column("step_id", sa.Uuid(), nullable=False),
        sa.Column("index", sa.Integer(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column(
            "status",
            sa.Enum(
                *PIECE_STATUSES,
                name="piece_status",
                native_enum=False,
                create_constraint=True,
                length=16,
            ),
            nullable=False,
        ),
        sa.Column("sha256", sa.String(length=64), nullable=True),
        sa.Column("ttft_ms", sa.Float(), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["step_id"],
            ["steps.id"],
            name=op.f("fk_step_pieces_step_id_steps"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("step_id", "index", name=op.f("pk_step_pieces")),
    )


def downgrade() -> None:
    op.drop_table("step_pieces")
    with op.batch_alter_table("step_artifacts") as batch:
        batch.drop_constraint(op.f(ROLE_CHECK), type_="check")
        batch.create_check_constraint("artifact_role", _roles("input", "output"))
    with op.batch_alter_table("step_attempts") as batch:
        batch.drop_column("piece")
    with op.batch_alter_table("steps") as batch:
        batch.drop_column("pieces_done")
        batch.drop_column("pieces_total")
        batch.drop_column("spec")
