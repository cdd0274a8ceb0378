"""Webhook inbox: delivery id for de-duplication, retry time, the record an event concerns.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25

Adds to ``maintenance_event_hooks``: ``event_id`` (unique with ``cmms_system_id``, so a
redelivered event is stored once), ``received_at``, ``next_attempt_at`` (indexed with
``processing_status`` for polling with retries), ``entity_type``, ``entity_external_id`` and
``occurred_at`` (per-record ordering) and ``signature_scheme``.

Rows written before this revision get ``event_id = 'legacy:<id>'`` and their ``created_at`` as
``received_at`` and ``next_attempt_at``, so the new NOT NULL columns hold for old data too.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLE = "maintenance_event_hooks"
NOW = sa.text("CURRENT_TIMESTAMP")
OPEN_STATUSES = "processing_status IN ('pending', 'processing', 'failed')"
UNIQUE_DELIVERY = "uq_maintenance_event_hooks_cmms_system_id_event_id"
POLL_INDEX = "ix_maintenance_event_hooks_processing_status_next_attempt_at"
ENTITY_INDEX = "ix_maintenance_event_hooks_entity"


def upgrade() -> None:
    # Nullable first (SQLite cannot add a NOT NULL column with a non-constant default), fill in
    # the existing rows, then tighten.
    op.add_column(TABLE, sa.Column("event_id", sa.String(length=200), nullable=True))
    op.add_column(TABLE, sa.Column("received_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column(TABLE, sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column(TABLE, sa.Column("entity_type", sa.String(length=100), nullable=True))
    op.add_column(TABLE, sa.Column("entity_external_id", sa.String(length=200), nullable=True))
    op.add_column(TABLE, sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column(TABLE, sa.Column("signature_scheme", sa.String(length=32), nullable=True))
    op.execute(
        f"UPDATE {TABLE} SET event_id = 'legacy:' || CAST(id AS VARCHAR(20)), "
        "received_at = created_at, next_attempt_at = created_at"
    )
    with op.batch_alter_table(TABLE) as batch:
        batch.alter_column("event_id", existing_type=sa.String(length=200), nullable=False)
        for column in ("received_at", "next_attempt_at"):
            batch.alter_column(
                column,
                existing_type=sa.DateTime(timezone=True),
                nullable=False,
                server_default=NOW,
            )
        batch.create_unique_constraint(UNIQUE_DELIVERY, ["cmms_system_id", "event_id"])
    op.create_index(
        POLL_INDEX,
        TABLE,
        ["processing_status", "next_attempt_at"],
        postgresql_where=sa.text(OPEN_STATUSES),
    )
    op.create_index(
        ENTITY_INDEX,
        TABLE,
        ["cmms_system_id", "entity_type", "entity_external_id", "occurred_at"],
    )


def downgrade() -> None:
    op.drop_index(ENTITY_INDEX, table_name=TABLE)
    op.drop_index(POLL_INDEX, table_name=TABLE, postgresql_where=sa.text(OPEN_STATUSES))
    with op.batch_alter_table(TABLE) as batch:
        batch.drop_constraint(UNIQUE_DELIVERY, type_="unique")
        for column in (
            "signature_scheme",
            "occurred_at",
            "entity_external_id",
            "entity_type",
            "next_attempt_at",
            "received_at",
            "event_id",
        ):
            batch.drop_column(column)
