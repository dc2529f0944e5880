"""Create the store: runs, steps, attempts, results, artifacts and their locations.

Revision ID: 0001
Revises:
Create Date: 2026-11-27

A migration is frozen history: it spells its types out instead of importing the models.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None

STATUSES = ("queued", "running", "succeeded", "failed", "cancelled", "skipped")


def _utc() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def _json() -> sa.types.TypeEngine[Any]:
    return sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def _choice(name: str, *values: str) -> sa.Enum:
    # A VARCHAR with a CHECK constraint: the same on SQLite and PostgreSQL.
    return sa.Enum(*values, name=name, native_enum=False, create_constraint=True, length=16)


def upgrade() -> None:
    op.create_table(
        "artifacts",
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("media_type", sa.String(length=100), nullable=False),
        sa.Column("duration_s", sa.Float(), nullable=True),
        sa.Column("sample_rate_hz", sa.Integer(), nullable=True),
        sa.Column("created_at", _utc(), nullable=False),
        sa.PrimaryKeyConstraint("sha256", name=op.f("pk_artifacts")),
    )
    op.create_index(op.f("ix_artifacts_created_at"), "artifacts", ["created_at"])

    op.create_table(
        "runs",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("job", sa.String(length=200), nullable=False),
        sa.Column(
            "kind",
            _choice("run_kind", "chat", "speak", "clone", "pipeline", "custom"),
            nullable=False,
        ),
        sa.Column(
            "trigger",
            _choice("run_trigger", "schedule", "submit", "manual", "api", "retry"),
            nullable=False,
        ),
        sa.Column("scheduled_for", _utc(), nullable=True),
        sa.Column("idempotency_key", sa.String(length=300), nullable=False),
        sa.Column("status", _choice("run_status", *STATUSES), nullable=False),
        sa.Column("created_at", _utc(), nullable=False),
        sa.Column("started_at", _utc(), nullable=True),
        sa.Column("finished_at", _utc(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("params", _json(), nullable=False),
        sa.Column("rerun_of", sa.Uuid(), nullable=True),
        sa.ForeignKeyConstraint(
            ["rerun_of"], ["runs.id"], name=op.f("fk_runs_rerun_of_runs"), ondelete="SET NULL"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_runs")),
        sa.UniqueConstraint("idempotency_key", name=op.f("uq_runs_idempotency_key")),
        sa.UniqueConstraint("job", "scheduled_for", name=op.f("uq_runs_job_scheduled_for")),
    )
    op.create_index(op.f("ix_runs_created_at"), "runs", ["created_at"])
    op.create_index(op.f("ix_runs_job_created_at"), "runs", ["job", "created_at"])
    op.create_index(op.f("ix_runs_status"), "runs", ["status"])

    op.create_table(
        "artifact_locations",
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("node", sa.String(length=63), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("verified_at", _utc(), nullable=False),
        sa.ForeignKeyConstraint(
            ["sha256"],
            ["artifacts.sha256"],
            name=op.f("fk_artifact_locations_sha256_artifacts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("sha256", "node", name=op.f("pk_artifact_locations")),
    )
    op.create_index(op.f("ix_artifact_locations_node"), "artifact_locations", ["node"])

    op.create_table(
        "steps",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("run_id", sa.Uuid(), nullable=False),
        sa.Column("index", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=True),
        sa.Column("node", sa.String(length=63), nullable=False),
        sa.Column("service", sa.String(length=63), nullable=False),
        sa.Column("status", _choice("step_status", *STATUSES), nullable=False),
        sa.Column("queued_at", _utc(), nullable=False),
        sa.Column("started_at", _utc(), nullable=True),
        sa.Column("finished_at", _utc(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("latency_ms", sa.Float(), nullable=True),
        sa.Column("ttft_ms", sa.Float(), nullable=True),
        sa.Column("tokens_in", sa.Integer(), nullable=True),
        sa.Column("tokens_out", sa.Integer(), nullable=True),
        sa.Column("tokens_per_s", sa.Float(), nullable=True),
        sa.Column("audio_s", sa.Float(), nullable=True),
        sa.Column("rtf", sa.Float(), nullable=True),
        sa.ForeignKeyConstraint(
            ["run_id"], ["runs.id"], name=op.f("fk_steps_run_id_runs"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_steps")),
        sa.UniqueConstraint("run_id", "index", name=op.f("uq_steps_run_id_index")),
    )
    op.create_index(op.f("ix_steps_service_finished_at"), "steps", ["service", "finished_at"])

    op.create_table(
        "results",
        sa.Column("step_id", sa.Uuid(), nullable=False),
        sa.Column("text", sa.Text(), nullable=True),
        sa.Column("data", _json(), nullable=True),
        sa.Column("task_id", sa.String(length=155), nullable=True),
        sa.Column("created_at", _utc(), nullable=False),
        sa.ForeignKeyConstraint(
            ["step_id"], ["steps.id"], name=op.f("fk_results_step_id_steps"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("step_id", name=op.f("pk_results")),
    )

    op.create_table(
        "step_artifacts",
        sa.Column("step_id", sa.Uuid(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("role", _choice("artifact_role", "input", "output"), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=True),
        sa.ForeignKeyConstraint(
            ["sha256"],
            ["artifacts.sha256"],
            name=op.f("fk_step_artifacts_sha256_artifacts"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["step_id"],
            ["steps.id"],
            name=op.f("fk_step_artifacts_step_id_steps"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("step_id", "sha256", name=op.f("pk_step_artifacts")),
    )
    op.create_index(op.f("ix_step_artifacts_sha256"), "step_artifacts", ["sha256"])

    op.create_table(
        "step_attempts",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("step_id", sa.Uuid(), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("task_id", sa.String(length=155), nullable=False),
        sa.Column("worker", sa.String(length=255), nullable=False),
        sa.Column(
            "status",
            _choice("attempt_status", "running", "succeeded", "failed"),
            nullable=False,
        ),
        sa.Column("started_at", _utc(), nullable=False),
        sa.Column("finished_at", _utc(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["step_id"],
            ["steps.id"],
            name=op.f("fk_step_attempts_step_id_steps"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_step_attempts")),
        sa.UniqueConstraint("step_id", "number", name=op.f("uq_step_attempts_step_id_number")),
    )


def downgrade() -> None:
    for table in (
        "step_attempts",
        "step_artifacts",
        "results",
        "steps",
        "artifact_locations",
        "runs",
        "artifacts",
    ):
        # Dropping a table drops its indexes and constraints with it, on both engines.
        op.drop_table(table)
