"""Sync: numbers waiting to be written back to the record they belong to.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-25

When a system numbers a record the sync created there and the write-back of that number to
the source record is refused (the record changed during the run), ``sync_pending_keys`` keeps
it until a later run writes it. A frozen copy of the model (plain SQLAlchemy types).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0008"
down_revision: str | Sequence[str] | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLE = "sync_pending_keys"
BIGINT_PK = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
NOW = sa.text("CURRENT_TIMESTAMP")


def _text(name: str, length: int, *, nullable: bool = False) -> sa.Column:
    return sa.Column(name, sa.String(length=length), nullable=nullable)


def _at(name: str) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), server_default=NOW, nullable=False)


def upgrade() -> None:
    op.create_table(
        TABLE,
        sa.Column("id", BIGINT_PK, autoincrement=True, nullable=False),
        _text("sync_name", 200),
        _text("entity", 50),
        _text("platform_id", 64),
        _text("system", 100),
        _text("external_id", 400),
        _text("field", 100),
        sa.Column("value", sa.JSON(), nullable=True),
        sa.Column("changes", JSON, nullable=False),
        _text("assigned_by", 100),
        _text("assigned_external_id", 400),
        sa.Column("status", sa.String(length=16), server_default="pending", nullable=False),
        sa.Column("attempts", sa.Integer(), server_default="1", nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("note", sa.Text(), nullable=True),
        _text("run_id", 64),
        _text("applied_run_id", 64, nullable=True),
        _at("created_at"),
        _at("updated_at"),
        sa.CheckConstraint(
            "status IN ('pending', 'applied', 'superseded')",
            name=op.f("ck_sync_pending_keys_status"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sync_pending_keys")),
        sa.UniqueConstraint(
            "sync_name",
            "platform_id",
            "system",
            name=op.f("uq_sync_pending_keys_sync_name_platform_id_system"),
        ),
    )
    op.create_index("ix_sync_pending_keys_sync_name_status", TABLE, ["sync_name", "status"])


def downgrade() -> None:
    op.drop_index("ix_sync_pending_keys_sync_name_status", table_name=TABLE)
    op.drop_table(TABLE)
