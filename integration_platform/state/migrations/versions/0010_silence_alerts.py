"""Alerts: silence episodes of devices beside threshold episodes of sensors.

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-26

A device that sends nothing for its silence limit gets an alert episode (see
``streams/device_state.py``). It is stored as the episode of the reserved sensor id ``*``, so
the one-live-episode index of 0009 covers it as it is; two columns say what it is:

- ``kind``: ``threshold`` (every existing row) or ``silence``, so operators and the work-order
  sensor can tell a data problem from a machine condition;
- ``reason``: the sentence operators read ("no reading from pump-3 since ..."), for episodes
  whose values do not say it themselves.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | Sequence[str] | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ALERTS = "sensor_alerts"


def upgrade() -> None:
    # A column-level CHECK: SQLite can add it with the column, no table rebuild (which would
    # have to carry the partial unique index of 0009 over).
    op.add_column(
        ALERTS,
        sa.Column(
            "kind",
            sa.String(length=16),
            sa.CheckConstraint(
                "kind IN ('threshold', 'silence')", name=op.f("ck_sensor_alerts_kind")
            ),
            server_default="threshold",
            nullable=False,
        ),
    )
    op.add_column(ALERTS, sa.Column("reason", sa.Text(), nullable=True))


def downgrade() -> None:
    # Silence episodes mean nothing to the older schema, and would hold the device's slot.
    op.execute(sa.text(f"DELETE FROM {ALERTS} WHERE kind = 'silence'"))
    op.drop_column(ALERTS, "reason")
    op.drop_column(ALERTS, "kind")
