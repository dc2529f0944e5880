"""Artifacts: the digest of each artifact's chunk manifest.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27

A fetch checks every chunk against the manifest, and the manifest against this digest,
so neither the serving node nor the manifest it serves has to be trusted.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    # A plain ADD COLUMN: SQLite does it in place, no table rebuild.
    op.add_column("artifacts", sa.Column("manifest_sha256", sa.String(length=64), nullable=True))


def downgrade() -> None:
    op.drop_column("artifacts", "manifest_sha256")
