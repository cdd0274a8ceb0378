"""Alerts: one live episode per sensor, whichever collector raised it.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-25

Collectors sharing an MQTT subscription each see part of a sensor's readings; the state DB
arbitrates their alert episodes (see ``streams/alert_arbiter.py``):

- a partial unique index allows at most one ``open``/``acknowledged`` row per sensor. Rows that
  already break it (two collectors raised the same excursion before this revision) are closed
  first: the oldest live episode of the sensor stays, the later ones become ``resolved``;
- an index on (device, sensor, reading time) for the arbiter's look-ups;
- ``sensor_alert_states``: per sensor, the breach-run marks the collectors reported (the shared
  "first breach at" of ``min_duration_s``), whether a run is in progress, and the reading time
  of the newest resolve (cooldown). Its row is also the per-sensor lock.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0009"
down_revision: str | Sequence[str] | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ALERTS = "sensor_alerts"
STATES = "sensor_alert_states"
ACTIVE = "status IN ('open', 'acknowledged')"
ONE_LIVE = "uq_sensor_alerts_device_id_sensor_id_active"
BY_READING_TS = "ix_sensor_alerts_device_id_sensor_id_reading_ts"
JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
NOW = sa.text("CURRENT_TIMESTAMP")

# A live episode with an older live episode of the same sensor (by reading time, then id).
CLOSE_LATER_DUPLICATES = f"""
UPDATE {ALERTS} SET status = 'resolved', resolved_at = CURRENT_TIMESTAMP
WHERE {ACTIVE} AND EXISTS (
    SELECT 1 FROM {ALERTS} AS older
    WHERE older.device_id = {ALERTS}.device_id
      AND older.sensor_id = {ALERTS}.sensor_id
      AND older.status IN ('open', 'acknowledged')
      AND (older.reading_ts < {ALERTS}.reading_ts
           OR (older.reading_ts = {ALERTS}.reading_ts AND older.id < {ALERTS}.id))
)
"""


def upgrade() -> None:
    op.execute(sa.text(CLOSE_LATER_DUPLICATES))
    op.create_index(
        ONE_LIVE,
        ALERTS,
        ["device_id", "sensor_id"],
        unique=True,
        postgresql_where=sa.text(ACTIVE),
        sqlite_where=sa.text(ACTIVE),
    )
    op.create_index(BY_READING_TS, ALERTS, ["device_id", "sensor_id", "reading_ts"])
    op.create_table(
        STATES,
        sa.Column("device_id", sa.String(length=200), nullable=False),
        sa.Column("sensor_id", sa.String(length=200), nullable=False),
        sa.Column("clocks", JSON, nullable=False),
        sa.Column("running", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("last_resolved_ts", sa.DateTime(timezone=True), nullable=True),
        sa.Column("updated_by", sa.String(length=200), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=NOW, nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=NOW, nullable=False),
        sa.PrimaryKeyConstraint("device_id", "sensor_id", name=op.f("pk_sensor_alert_states")),
    )
    op.create_index("ix_sensor_alert_states_running", STATES, ["running"])


def downgrade() -> None:
    op.drop_index("ix_sensor_alert_states_running", table_name=STATES)
    op.drop_table(STATES)
    op.drop_index(BY_READING_TS, table_name=ALERTS)
    op.drop_index(ONE_LIVE, table_name=ALERTS)
