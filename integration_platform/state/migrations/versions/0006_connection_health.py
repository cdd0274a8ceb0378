"""Connection health history: one row per health check of each declared connection.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-24

``connections_health_job`` appends to ``connection_health_checks``; ``connections_down_sensor``
and ``integration-platform connections health`` read the newest row per connection through
the ``(connection, checked_at)`` index.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLE = "connection_health_checks"
INDEX = "ix_connection_health_checks_connection_checked_at"
BIGINT_PK = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
NOW = sa.text("CURRENT_TIMESTAMP")


def upgrade() -> None:
    op.create_table(
        TABLE,
        sa.Column("id", BIGINT_PK, autoincrement=True, nullable=False),
        sa.Column("connection", sa.String(length=200), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("endpoint", sa.String(length=16), nullable=False),
        sa.Column("ok", sa.Boolean(), nullable=False),
        sa.Column("latency_ms", sa.Float(), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("primary_detail", sa.Text(), nullable=True),
        sa.Column("down_since", sa.DateTime(timezone=True), nullable=True),
        sa.Column("checked_at", sa.DateTime(timezone=True), server_default=NOW, nullable=False),
        sa.Column("run_id", sa.String(length=64), nullable=True),
        sa.CheckConstraint(
            "status IN ('up', 'failover', 'down')", name=op.f("ck_connection_health_checks_status")
        ),
        sa.CheckConstraint(
            "endpoint IN ('primary', 'secondary', 'none')",
            name=op.f("ck_connection_health_checks_endpoint"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_connection_health_checks")),
    )
    op.create_index(INDEX, TABLE, ["connection", "checked_at"])


def downgrade() -> None:
    op.drop_index(INDEX, table_name=TABLE)
    op.drop_table(TABLE)
