"""Sync runs: conflicts resolved by a person that the run applied, and incremental reads.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-24

``resolved_manually`` joins the run counts. ``read_mode`` (full or incremental) and
``high_water`` (per system, the latest modified time among the records the run read) let the
next run read only what changed since, less a safety overlap.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0007"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLE = "sync_runs"
JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    with op.batch_alter_table(TABLE) as batch:
        batch.add_column(
            sa.Column("resolved_manually", sa.Integer(), server_default="0", nullable=False)
        )
        batch.add_column(sa.Column("read_mode", sa.String(length=16), nullable=True))
        batch.add_column(sa.Column("high_water", JSON, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table(TABLE) as batch:
        batch.drop_column("high_water")
        batch.drop_column("read_mode")
        batch.drop_column("resolved_manually")
