"""Device registry, device status, sensor alerts and the local work-order outbox.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-24

- ``devices`` / ``device_sensors``: the YAML registry as last applied (``devices apply``),
  retired rather than deleted, with the status and heartbeat the collector reports;
- ``sensor_alerts``: one row per alert episode of a sensor (unique ``episode_key``), its
  severity history, acknowledgement, resolution and the work order raised for it;
- ``cbm_work_orders``: work orders kept locally when no CMMS is configured.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BIGINT_PK = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
NOW = sa.text("CURRENT_TIMESTAMP")


def upgrade() -> None:
    op.create_table(
        "cbm_work_orders",
        sa.Column("id", BIGINT_PK, autoincrement=True, nullable=False),
        sa.Column("reference", sa.String(length=64), nullable=False),
        sa.Column("episode_key", sa.String(length=500), nullable=False),
        sa.Column("asset_id", sa.String(length=200), nullable=True),
        sa.Column("schedule_id", sa.String(length=200), nullable=True),
        sa.Column("title", sa.String(length=500), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("work_type", sa.String(length=32), nullable=False),
        sa.Column("priority", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), server_default="scheduled", nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=NOW, nullable=False),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=NOW, nullable=False),
        sa.CheckConstraint(
            "status IN ('scheduled', 'in_progress', 'completed', 'cancelled')",
            name=op.f("ck_cbm_work_orders_status"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_cbm_work_orders")),
        sa.UniqueConstraint("reference", name=op.f("uq_cbm_work_orders_reference")),
    )
    op.create_table(
        "devices",
        sa.Column("device_id", sa.String(length=200), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=True),
        sa.Column("site", sa.String(length=200), nullable=True),
        sa.Column("protocol", sa.String(length=16), nullable=False),
        sa.Column("endpoint", sa.String(length=500), nullable=False),
        sa.Column("asset_id", sa.String(length=200), nullable=True),
        sa.Column("enabled", sa.Boolean(), server_default=sa.true(), nullable=False),
        sa.Column("settings", JSON, nullable=False),
        sa.Column("registry_state", sa.String(length=16), server_default="active", nullable=False),
        sa.Column("source", sa.String(length=500), nullable=True),
        sa.Column("status", sa.String(length=16), server_default="unknown", nullable=False),
        sa.Column("status_detail", sa.Text(), nullable=True),
        sa.Column("status_changed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_heartbeat", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_reading_ts", sa.DateTime(timezone=True), nullable=True),
        sa.Column("reported_by", sa.String(length=200), nullable=True),
        sa.Column("applied_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("retired_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=NOW, nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=NOW, nullable=False),
        sa.CheckConstraint(
            "registry_state IN ('active', 'retired')", name=op.f("ck_devices_registry_state")
        ),
        sa.CheckConstraint(
            "status IN ('unknown', 'online', 'offline', 'error')", name=op.f("ck_devices_status")
        ),
        sa.PrimaryKeyConstraint("device_id", name=op.f("pk_devices")),
    )
    op.create_table(
        "sensor_alerts",
        sa.Column("id", BIGINT_PK, autoincrement=True, nullable=False),
        sa.Column("episode_key", sa.String(length=500), nullable=False),
        sa.Column("device_id", sa.String(length=200), nullable=False),
        sa.Column("sensor_id", sa.String(length=200), nullable=False),
        sa.Column("sensor_type", sa.String(length=64), nullable=True),
        sa.Column("asset_id", sa.String(length=200), nullable=True),
        sa.Column("unit", sa.String(length=32), nullable=True),
        sa.Column("direction", sa.String(length=8), server_default="above", nullable=False),
        sa.Column("severity", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), server_default="open", nullable=False),
        sa.Column("value", sa.Float(), nullable=True),
        sa.Column("threshold", sa.Float(), nullable=True),
        sa.Column("peak_value", sa.Float(), nullable=True),
        sa.Column("reading_ts", sa.DateTime(timezone=True), nullable=False),
        sa.Column("raised_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("escalated_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("severity_history", JSON, nullable=False),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("resolved_reading_ts", sa.DateTime(timezone=True), nullable=True),
        sa.Column("resolved_value", sa.Float(), nullable=True),
        sa.Column("acknowledged_by", sa.String(length=200), nullable=True),
        sa.Column("acknowledged_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("acknowledge_note", sa.Text(), nullable=True),
        sa.Column("raised_by", sa.String(length=200), nullable=True),
        sa.Column("schedule_id", sa.String(length=200), nullable=True),
        sa.Column("work_order_reference", sa.String(length=64), nullable=True),
        sa.Column("work_order_claimed_by", sa.String(length=200), nullable=True),
        sa.Column("work_order_claimed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("work_order_attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("work_order_error", sa.Text(), nullable=True),
        sa.Column("work_order_id", sa.String(length=200), nullable=True),
        sa.Column("work_order_system", sa.String(length=100), nullable=True),
        sa.Column("work_order_href", sa.String(length=1000), nullable=True),
        sa.Column("work_order_status", sa.String(length=32), nullable=True),
        sa.Column("work_order_linked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("work_order_completed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=NOW, nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=NOW, nullable=False),
        sa.CheckConstraint(
            "severity IN ('warning', 'critical')", name=op.f("ck_sensor_alerts_severity")
        ),
        sa.CheckConstraint(
            "status IN ('open', 'acknowledged', 'resolved')", name=op.f("ck_sensor_alerts_status")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sensor_alerts")),
        sa.UniqueConstraint("episode_key", name=op.f("uq_sensor_alerts_episode_key")),
    )
    op.create_index(
        "ix_sensor_alerts_device_id_sensor_id_status",
        "sensor_alerts",
        ["device_id", "sensor_id", "status"],
        unique=False,
    )
    op.create_index(
        "ix_sensor_alerts_severity_work_order_id",
        "sensor_alerts",
        ["severity", "work_order_id"],
        unique=False,
    )
    op.create_index(
        "ix_sensor_alerts_status_raised_at", "sensor_alerts", ["status", "raised_at"], unique=False
    )
    op.create_table(
        "device_sensors",
        sa.Column("id", BIGINT_PK, autoincrement=True, nullable=False),
        sa.Column("device_id", sa.String(length=200), nullable=False),
        sa.Column("sensor_id", sa.String(length=200), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=True),
        sa.Column("sensor_type", sa.String(length=64), nullable=False),
        sa.Column("unit", sa.String(length=32), nullable=True),
        sa.Column("valid_min", sa.Float(), nullable=True),
        sa.Column("valid_max", sa.Float(), nullable=True),
        sa.Column("calibration_date", sa.Date(), nullable=True),
        sa.Column("thresholds", JSON, nullable=True),
        sa.Column("asset_id", sa.String(length=200), nullable=True),
        sa.Column("registry_state", sa.String(length=16), server_default="active", nullable=False),
        sa.Column("retired_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=NOW, nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=NOW, nullable=False),
        sa.CheckConstraint(
            "registry_state IN ('active', 'retired')", name=op.f("ck_device_sensors_registry_state")
        ),
        sa.ForeignKeyConstraint(
            ["device_id"],
            ["devices.device_id"],
            name=op.f("fk_device_sensors_device_id_devices"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_device_sensors")),
        sa.UniqueConstraint(
            "device_id", "sensor_id", name=op.f("uq_device_sensors_device_id_sensor_id")
        ),
    )


def downgrade() -> None:
    op.drop_table("device_sensors")
    for index in (
        "ix_sensor_alerts_status_raised_at",
        "ix_sensor_alerts_severity_work_order_id",
        "ix_sensor_alerts_device_id_sensor_id_status",
    ):
        op.drop_index(index, table_name="sensor_alerts")
    op.drop_table("sensor_alerts")
    op.drop_table("devices")
    op.drop_table("cbm_work_orders")
