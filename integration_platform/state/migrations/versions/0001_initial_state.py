"""Initial operational state: the webhook inbox and sync configurations.

Revision ID: 0001
Revises:
Create Date: 2026-11-24

Migrations are frozen copies of the schema at their revision: they use plain SQLAlchemy types
(``DateTime(timezone=True)`` for ``models.UTCDateTime``) and never import the models.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BIGINT_PK = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
NOW = sa.text("CURRENT_TIMESTAMP")
OPEN_STATUSES = "processing_status IN ('pending', 'processing', 'failed')"


def upgrade() -> None:
    op.create_table(
        "maintenance_event_hooks",
        sa.Column("id", BIGINT_PK, autoincrement=True, nullable=False),
        sa.Column("cmms_system_id", sa.String(length=100), nullable=False),
        sa.Column("event_type", sa.String(length=200), nullable=False),
        sa.Column("event_payload", JSON, nullable=False),
        sa.Column("hmac_signature", sa.Text(), nullable=False),
        sa.Column(
            "processing_status", sa.String(length=16), server_default="pending", nullable=False
        ),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=NOW, nullable=False),
        sa.Column("processed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("error_message", sa.Text(), nullable=True),
        sa.Column("retry_count", sa.Integer(), server_default="0", nullable=False),
        sa.CheckConstraint(
            "processing_status IN ('pending', 'processing', 'processed', 'failed', 'dead_letter')",
            name=op.f("ck_maintenance_event_hooks_processing_status"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_maintenance_event_hooks")),
    )
    op.create_index(
        "ix_maintenance_event_hooks_processing_status_created_at",
        "maintenance_event_hooks",
        ["processing_status", "created_at"],
        postgresql_where=sa.text(OPEN_STATUSES),
    )
    op.create_index(
        "ix_maintenance_event_hooks_cmms_system_id_created_at",
        "maintenance_event_hooks",
        ["cmms_system_id", "created_at"],
    )

    op.create_table(
        "sync_configurations",
        sa.Column("id", BIGINT_PK, autoincrement=True, nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("sync_type", sa.String(length=16), nullable=False),
        sa.Column("source_system", sa.String(length=100), nullable=False),
        sa.Column("target_system", sa.String(length=100), nullable=False),
        sa.Column("configuration", JSON, nullable=False),
        sa.Column("is_active", sa.Boolean(), server_default=sa.true(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=NOW, nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=NOW, nullable=False),
        sa.CheckConstraint(
            "sync_type IN ('one_way', 'two_way')", name=op.f("ck_sync_configurations_sync_type")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sync_configurations")),
        sa.UniqueConstraint("name", name=op.f("uq_sync_configurations_name")),
    )


def downgrade() -> None:
    op.drop_table("sync_configurations")
    op.drop_index(
        "ix_maintenance_event_hooks_cmms_system_id_created_at",
        table_name="maintenance_event_hooks",
    )
    op.drop_index(
        "ix_maintenance_event_hooks_processing_status_created_at",
        table_name="maintenance_event_hooks",
        postgresql_where=sa.text(OPEN_STATUSES),
    )
    op.drop_table("maintenance_event_hooks")
