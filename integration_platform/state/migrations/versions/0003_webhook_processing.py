"""Webhook processing: who holds an event and since when, and the message format it came in.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26

Adds to ``maintenance_event_hooks``:

- ``claimed_by`` / ``claimed_at``: the processing run that moved the event to ``processing``
  and when. While an event is ``processing``, ``next_attempt_at`` holds the end of that run's
  lease; a run killed mid-batch leaves its events behind, and they are picked up again once
  the lease has passed. Status updates are guarded by ``claimed_by``, so a run whose lease
  was taken over cannot overwrite the new owner's outcome.
- ``message_format``: how the receiver read the body (``common``, ``maximo``, ...), so the
  processing side maps it with the right built-in mapping without the receiver's settings.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLE = "maintenance_event_hooks"


def upgrade() -> None:
    op.add_column(TABLE, sa.Column("claimed_by", sa.String(length=100), nullable=True))
    op.add_column(TABLE, sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column(TABLE, sa.Column("message_format", sa.String(length=16), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table(TABLE) as batch:
        for column in ("message_format", "claimed_at", "claimed_by"):
            batch.drop_column(column)
