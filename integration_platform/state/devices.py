"""State tables of the IoT part: the device registry, sensor alerts and the local work orders.

The YAML registry is the declaration; ``devices apply`` makes ``devices`` and
``device_sensors`` match it (a device that left the file is marked retired, never deleted, so
its alerts and history keep their meaning). The collector keeps ``status`` and
``last_heartbeat`` current. ``sensor_alerts`` holds one row per alert episode of a sensor (at
most one live per sensor), ``sensor_alert_states`` what the collectors sharing a sensor agree
on; ``cbm_work_orders`` is the work-order outbox used when no CMMS is configured.

A silent device's episode is kept as the episode of a reserved sensor, :data:`DEVICE_SENSOR_ID`
(``*``, which no sensor id can be), with ``kind`` ``silence``: the one-live-episode index then
covers it unchanged, one live silence episode per device.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from integration_platform.state.models import NOW, Base, BigIntPK, JSONType, utcnow

DEVICE_STATUSES: tuple[str, ...] = ("unknown", "online", "offline", "error")
REGISTRY_STATES: tuple[str, ...] = ("active", "retired")
ALERT_SEVERITIES: tuple[str, ...] = ("warning", "critical")
ALERT_STATUSES: tuple[str, ...] = ("open", "acknowledged", "resolved")
# ``threshold``: a sensor's value crossed a limit; ``silence``: a device sent nothing usable.
ALERT_KINDS: tuple[str, ...] = ("threshold", "silence")
# The sensor id of device-level episodes (silence); registry ids cannot contain '*'.
DEVICE_SENSOR_ID = "*"
# Alerts that still describe a live condition (the collector restores them on start).
ACTIVE_ALERT_STATUSES: tuple[str, ...] = ("open", "acknowledged")
OUTBOX_STATUSES: tuple[str, ...] = ("scheduled", "in_progress", "completed", "cancelled")


def _in_list(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class Device(Base):
    """One device of the registry as last applied, with the status the collector reports."""

    __tablename__ = "devices"

    device_id: Mapped[str] = mapped_column(sa.String(200), primary_key=True)
    name: Mapped[str | None] = mapped_column(sa.String(200))
    site: Mapped[str | None] = mapped_column(sa.String(200))
    protocol: Mapped[str] = mapped_column(sa.String(16))
    endpoint: Mapped[str] = mapped_column(sa.String(500))
    asset_id: Mapped[str | None] = mapped_column(sa.String(200))
    enabled: Mapped[bool] = mapped_column(default=True, server_default=sa.true())
    # Protocol settings, credential variable NAMES and TLS paths as declared (no secrets).
    settings: Mapped[dict[str, Any]] = mapped_column(default=dict)
    registry_state: Mapped[str] = mapped_column(
        sa.String(16), default="active", server_default="active"
    )
    source: Mapped[str | None] = mapped_column(sa.String(500))
    status: Mapped[str] = mapped_column(sa.String(16), default="unknown", server_default="unknown")
    status_detail: Mapped[str | None] = mapped_column(sa.Text)
    status_changed_at: Mapped[datetime | None] = mapped_column()
    # Last time a collector wrote that it heard from the device, and the newest reading time.
    last_heartbeat: Mapped[datetime | None] = mapped_column()
    last_reading_ts: Mapped[datetime | None] = mapped_column()
    reported_by: Mapped[str | None] = mapped_column(sa.String(200))
    applied_at: Mapped[datetime | None] = mapped_column()
    retired_at: Mapped[datetime | None] = mapped_column()
    created_at: Mapped[datetime] = mapped_column(default=utcnow, server_default=NOW)
    updated_at: Mapped[datetime] = mapped_column(
        default=utcnow, onupdate=utcnow, server_default=NOW
    )

    __table_args__ = (
        sa.CheckConstraint(_in_list("status", DEVICE_STATUSES), name="status"),
        sa.CheckConstraint(_in_list("registry_state", REGISTRY_STATES), name="registry_state"),
    )


class DeviceSensor(Base):
    """A sensor of a device: what it measures, its limits and the asset it watches."""

    __tablename__ = "device_sensors"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    device_id: Mapped[str] = mapped_column(
        sa.String(200), sa.ForeignKey("devices.device_id", ondelete="CASCADE")
    )
    sensor_id: Mapped[str] = mapped_column(sa.String(200))
    name: Mapped[str | None] = mapped_column(sa.String(200))
    sensor_type: Mapped[str] = mapped_column(sa.String(64))
    unit: Mapped[str | None] = mapped_column(sa.String(32))
    valid_min: Mapped[float | None] = mapped_column(sa.Float)
    valid_max: Mapped[float | None] = mapped_column(sa.Float)
    calibration_date: Mapped[date | None] = mapped_column(sa.Date)
    thresholds: Mapped[dict[str, Any] | None] = mapped_column()
    # The maintained asset: the sensor's own, else the device's.
    asset_id: Mapped[str | None] = mapped_column(sa.String(200))
    registry_state: Mapped[str] = mapped_column(
        sa.String(16), default="active", server_default="active"
    )
    retired_at: Mapped[datetime | None] = mapped_column()
    created_at: Mapped[datetime] = mapped_column(default=utcnow, server_default=NOW)
    updated_at: Mapped[datetime] = mapped_column(
        default=utcnow, onupdate=utcnow, server_default=NOW
    )

    __table_args__ = (
        sa.UniqueConstraint("device_id", "sensor_id"),
        sa.CheckConstraint(_in_list("registry_state", REGISTRY_STATES), name="registry_state"),
    )


class SensorAlert(Base):
    """One alert episode of a sensor: raised, maybe escalated, acknowledged and resolved.

    ``episode_key`` (``device/sensor@<reading ts>``) is derived from the reading that raised
    it, so writing the same episode twice (a retried write, a restarted collector) is one row.
    A sensor has at most one live (open or acknowledged) episode: collectors sharing its
    readings join it (``streams/alert_arbiter.py``).
    Alert latency is ``raised_at - reading_ts`` when readings carry their publish time.
    A ``silence`` episode belongs to the device (sensor :data:`DEVICE_SENSOR_ID`): ``reading_ts``
    is its last reading heard, ``value`` the seconds it had been silent when raised,
    ``threshold`` the silence limit in seconds and ``reason`` the sentence operators read.
    The ``work_order_*`` columns are the link to the CMMS (claimed before the create call).
    """

    __tablename__ = "sensor_alerts"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    episode_key: Mapped[str] = mapped_column(sa.String(500), unique=True)
    device_id: Mapped[str] = mapped_column(sa.String(200))
    sensor_id: Mapped[str] = mapped_column(sa.String(200))
    # Filled by the database when not given: writers that predate it stay valid.
    kind: Mapped[str] = mapped_column(sa.String(16), server_default="threshold")
    # Why it was raised, where the values do not say it (silence episodes).
    reason: Mapped[str | None] = mapped_column(sa.Text)
    sensor_type: Mapped[str | None] = mapped_column(sa.String(64))
    asset_id: Mapped[str | None] = mapped_column(sa.String(200))
    unit: Mapped[str | None] = mapped_column(sa.String(32))
    direction: Mapped[str] = mapped_column(sa.String(8), default="above", server_default="above")
    severity: Mapped[str] = mapped_column(sa.String(16))
    status: Mapped[str] = mapped_column(sa.String(16), default="open", server_default="open")
    value: Mapped[float | None] = mapped_column(sa.Float)  # the value that raised it
    threshold: Mapped[float | None] = mapped_column(sa.Float)  # the limit of the severity
    peak_value: Mapped[float | None] = mapped_column(sa.Float)
    reading_ts: Mapped[datetime] = mapped_column()  # ts of the reading that raised it
    raised_at: Mapped[datetime] = mapped_column()  # wall clock when the evaluator raised it
    escalated_at: Mapped[datetime | None] = mapped_column()
    # [{severity, threshold, value, reading_ts, raised_at}, ...] in order: the escalations.
    severity_history: Mapped[list[dict[str, Any]]] = mapped_column(JSONType, default=list)
    resolved_at: Mapped[datetime | None] = mapped_column()
    resolved_reading_ts: Mapped[datetime | None] = mapped_column()
    resolved_value: Mapped[float | None] = mapped_column(sa.Float)
    acknowledged_by: Mapped[str | None] = mapped_column(sa.String(200))
    acknowledged_at: Mapped[datetime | None] = mapped_column()
    acknowledge_note: Mapped[str | None] = mapped_column(sa.Text)
    raised_by: Mapped[str | None] = mapped_column(sa.String(200))  # collector client id
    # Condition-based maintenance: the schedule the work order was raised under.
    schedule_id: Mapped[str | None] = mapped_column(sa.String(200))
    work_order_reference: Mapped[str | None] = mapped_column(sa.String(64))
    work_order_claimed_by: Mapped[str | None] = mapped_column(sa.String(200))
    work_order_claimed_at: Mapped[datetime | None] = mapped_column()
    work_order_attempts: Mapped[int] = mapped_column(default=0, server_default="0")
    work_order_error: Mapped[str | None] = mapped_column(sa.Text)
    work_order_id: Mapped[str | None] = mapped_column(sa.String(200))
    work_order_system: Mapped[str | None] = mapped_column(sa.String(100))
    work_order_href: Mapped[str | None] = mapped_column(sa.String(1000))
    work_order_status: Mapped[str | None] = mapped_column(sa.String(32))
    work_order_linked_at: Mapped[datetime | None] = mapped_column()
    work_order_completed_at: Mapped[datetime | None] = mapped_column()
    created_at: Mapped[datetime] = mapped_column(default=utcnow, server_default=NOW)
    updated_at: Mapped[datetime] = mapped_column(
        default=utcnow, onupdate=utcnow, server_default=NOW
    )

    __table_args__ = (
        sa.CheckConstraint(_in_list("severity", ALERT_SEVERITIES), name="severity"),
        sa.CheckConstraint(_in_list("status", ALERT_STATUSES), name="status"),
        sa.CheckConstraint(_in_list("kind", ALERT_KINDS), name="kind"),
        sa.Index("ix_sensor_alerts_device_id_sensor_id_status", "device_id", "sensor_id", "status"),
        sa.Index("ix_sensor_alerts_status_raised_at", "status", "raised_at"),
        # The work-order sensor: "critical episodes without a work order".
        sa.Index("ix_sensor_alerts_severity_work_order_id", "severity", "work_order_id"),
        # One live episode per sensor, however many collectors share its readings.
        sa.Index(
            "uq_sensor_alerts_device_id_sensor_id_active",
            "device_id",
            "sensor_id",
            unique=True,
            postgresql_where=sa.text(_in_list("status", ACTIVE_ALERT_STATUSES)),
            sqlite_where=sa.text(_in_list("status", ACTIVE_ALERT_STATUSES)),
        ),
        # Arbitration looks episodes up by sensor and reading time.
        sa.Index(
            "ix_sensor_alerts_device_id_sensor_id_reading_ts",
            "device_id",
            "sensor_id",
            "reading_ts",
        ),
    )


class SensorAlertState(Base):
    """What the collectors sharing a sensor's readings agree on, beside its episodes.

    ``clocks`` holds, per severity, the newest breach-run marks collectors reported
    (``[[ts_us, 1 = a run started | 0 = a reading inside the limit], ...]``): merged, they give
    the shared "first breach at" that ``min_duration_s`` is measured from. ``running`` says a
    run is in progress (what collectors poll for). The row is also the lock that serialises
    the collectors' alert writes for the sensor (``SELECT ... FOR UPDATE``).
    """

    __tablename__ = "sensor_alert_states"

    device_id: Mapped[str] = mapped_column(sa.String(200), primary_key=True)
    sensor_id: Mapped[str] = mapped_column(sa.String(200), primary_key=True)
    clocks: Mapped[dict[str, Any]] = mapped_column(default=dict)
    running: Mapped[bool] = mapped_column(default=False, server_default=sa.false())
    # Reading time at which the sensor's newest episode resolved: the start of its cooldown.
    last_resolved_ts: Mapped[datetime | None] = mapped_column()
    updated_by: Mapped[str | None] = mapped_column(sa.String(200))
    created_at: Mapped[datetime] = mapped_column(default=utcnow, server_default=NOW)
    updated_at: Mapped[datetime] = mapped_column(
        default=utcnow, onupdate=utcnow, server_default=NOW
    )

    __table_args__ = (sa.Index("ix_sensor_alert_states_running", "running"),)


class CbmWorkOrder(Base):
    """A work order kept locally when no CMMS is configured (the outbox ``make demo`` shows).

    Completing it (``alerts complete-work-order``) closes the loop like a CMMS would.
    """

    __tablename__ = "cbm_work_orders"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    reference: Mapped[str] = mapped_column(sa.String(64), unique=True)
    episode_key: Mapped[str] = mapped_column(sa.String(500))
    asset_id: Mapped[str | None] = mapped_column(sa.String(200))
    schedule_id: Mapped[str | None] = mapped_column(sa.String(200))
    title: Mapped[str] = mapped_column(sa.String(500))
    description: Mapped[str | None] = mapped_column(sa.Text)
    work_type: Mapped[str] = mapped_column(sa.String(32))
    priority: Mapped[str] = mapped_column(sa.String(16))
    status: Mapped[str] = mapped_column(
        sa.String(16), default="scheduled", server_default="scheduled"
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow, server_default=NOW)
    completed_at: Mapped[datetime | None] = mapped_column()
    updated_at: Mapped[datetime] = mapped_column(
        default=utcnow, onupdate=utcnow, server_default=NOW
    )

    __table_args__ = (sa.CheckConstraint(_in_list("status", OUTBOX_STATUSES), name="status"),)
