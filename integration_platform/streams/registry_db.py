"""The device registry in the state DB: ``devices apply`` makes the tables match the YAML.

The YAML file stays the declaration (reviewed in git); the tables are what other processes
query — the alert sensor, ``devices list``, dashboards — together with the status the
collector reports. A device that left the file is marked ``retired`` (its alerts and history
keep pointing at it) and comes back ``active`` if it is declared again.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from integration_platform.state.devices import (
    ACTIVE_ALERT_STATUSES,
    Device,
    DeviceSensor,
    SensorAlert,
)
from integration_platform.streams.devices import DeviceSpec, Registry, SensorSpec

SETTINGS_FIELDS = {
    "credentials",
    "tls",
    "mqtt",
    "modbus",
    "opcua",
    "coap",
    "bacnet",
    "expected_interval_s",
    "silence_alert",
}
# ``devices list`` shows a device "online" by the DB as offline once its heartbeat is older
# than this (its collector stopped without saying so).
STALE_AFTER_S = 300.0


@dataclass
class ApplyResult:
    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    retired: list[str] = field(default_factory=list)
    sensors_added: int = 0
    sensors_retired: int = 0

    def summary(self) -> str:
        return (
            f"{len(self.added)} added, {len(self.updated)} updated, "
            f"{len(self.unchanged)} unchanged, {len(self.retired)} retired "
            f"({self.sensors_added} sensors added, {self.sensors_retired} retired)"
        )


def device_values(device: DeviceSpec, registry: Registry) -> dict[str, Any]:
    """The ``devices`` columns a registry entry declares (no secrets: variable names only)."""
    return {
        "name": device.name,
        "site": registry.site_of(device),
        "protocol": device.protocol,
        "endpoint": device.endpoint,
        "asset_id": device.asset_id,
        "enabled": device.enabled,
        "settings": device.model_dump(
            mode="json", include=SETTINGS_FIELDS, exclude_none=True, by_alias=True
        ),
    }


def sensor_values(device: DeviceSpec, sensor: SensorSpec) -> dict[str, Any]:
    low, high = sensor.valid_range or (None, None)
    return {
        "name": sensor.name,
        "sensor_type": sensor.type,
        "unit": sensor.unit,
        "valid_min": low,
        "valid_max": high,
        "calibration_date": sensor.calibration_date,
        "thresholds": sensor.thresholds.model_dump(mode="json") if sensor.thresholds else None,
        "asset_id": sensor.asset_id or device.asset_id,
    }


def _assign(row: Any, values: dict[str, Any]) -> bool:
    changed = False
    for name, value in values.items():
        if getattr(row, name) != value:
            setattr(row, name, value)
            changed = True
    return changed


def apply_registry(
    session: Session, registry: Registry, *, source: str, now: datetime | None = None
) -> ApplyResult:
    """Upsert every device and sensor of ``registry``; retire the ones it no longer has."""
    now = now or datetime.now(UTC)
    result = ApplyResult()
    existing = {d.device_id: d for d in session.scalars(sa.select(Device))}
    sensors: dict[str, dict[str, DeviceSensor]] = {}
    for row in session.scalars(sa.select(DeviceSensor)):
        sensors.setdefault(row.device_id, {})[row.sensor_id] = row
    declared = set()
    for spec in registry.devices:
        declared.add(spec.device_id)
        values = device_values(spec, registry) | {"source": source}
        row = existing.get(spec.device_id)
        changed = False
        if row is None:
            row = Device(device_id=spec.device_id, applied_at=now, **values)
            session.add(row)
            result.added.append(spec.device_id)
        else:
            changed = _assign(row, values | {"registry_state": "active", "retired_at": None})
        have = sensors.get(spec.device_id, {})
        for sensor in spec.sensors:
            wanted = sensor_values(spec, sensor) | {"registry_state": "active", "retired_at": None}
            found = have.get(sensor.sensor_id)
            if found is None:
                session.add(
                    DeviceSensor(device_id=spec.device_id, sensor_id=sensor.sensor_id, **wanted)
                )
                result.sensors_added += 1
                changed = True
            else:
                changed |= _assign(found, wanted)
        kept = {s.sensor_id for s in spec.sensors}
        for sensor_id, found in have.items():
            if sensor_id not in kept and found.registry_state != "retired":
                found.registry_state, found.retired_at = "retired", now
                result.sensors_retired += 1
                changed = True
        if spec.device_id in result.added:
            continue
        row.applied_at = now
        (result.updated if changed else result.unchanged).append(spec.device_id)
    for device_id, row in existing.items():
        if device_id in declared or row.registry_state == "retired":
            continue
        row.registry_state, row.retired_at = "retired", now
        result.retired.append(device_id)
        for found in sensors.get(device_id, {}).values():
            if found.registry_state != "retired":
                found.registry_state, found.retired_at = "retired", now
                result.sensors_retired += 1
    session.flush()
    return result


def ensure_devices(session: Session, registry: Registry, *, source: str) -> int:
    """Insert the registry's devices and sensors the DB does not know yet; change nothing else.

    The collector calls this so heartbeats have a row to land on without ``devices apply``;
    it never retires anything (several collectors may run different registries).
    """
    known = set(session.scalars(sa.select(Device.device_id)))
    known_sensors = set(session.execute(sa.select(DeviceSensor.device_id, DeviceSensor.sensor_id)))
    added = 0
    for spec in registry.devices:
        if spec.device_id not in known:
            session.add(
                Device(device_id=spec.device_id, **device_values(spec, registry), source=source)
            )
            added += 1
            session.flush()
        for sensor in spec.sensors:
            if (spec.device_id, sensor.sensor_id) not in known_sensors:
                session.add(
                    DeviceSensor(
                        device_id=spec.device_id,
                        sensor_id=sensor.sensor_id,
                        **sensor_values(spec, sensor),
                    )
                )
    session.flush()
    return added


@dataclass(frozen=True)
class DeviceSummary:
    device_id: str
    protocol: str
    status: str
    registry_state: str
    last_heartbeat: datetime | None
    open_alerts: int


def shown_status(device: Device, *, now: datetime, stale_after_s: float = STALE_AFTER_S) -> str:
    """The stored status, but ``offline`` when the last heartbeat is too old to trust."""
    if device.registry_state == "retired":
        return "retired"
    if (
        device.status == "online"
        and device.last_heartbeat is not None
        and now - device.last_heartbeat > timedelta(seconds=stale_after_s)
    ):
        return "offline"
    return device.status


def list_devices(
    session: Session, *, include_retired: bool = False, now: datetime | None = None
) -> list[DeviceSummary]:
    now = now or datetime.now(UTC)
    counts = dict(
        session.execute(
            sa.select(SensorAlert.device_id, sa.func.count())
            .where(SensorAlert.status.in_(ACTIVE_ALERT_STATUSES))
            .group_by(SensorAlert.device_id)
        ).all()
    )
    query = sa.select(Device).order_by(Device.device_id)
    if not include_retired:
        query = query.where(Device.registry_state == "active")
    return [
        DeviceSummary(
            device_id=d.device_id,
            protocol=d.protocol,
            status=shown_status(d, now=now),
            registry_state=d.registry_state,
            last_heartbeat=d.last_heartbeat,
            open_alerts=int(counts.get(d.device_id, 0)),
        )
        for d in session.scalars(query)
    ]


def show_device(session: Session, device_id: str) -> dict[str, Any] | None:
    """Everything known about one device: columns, sensors and its active alerts."""
    device = session.get(Device, device_id)
    if device is None:
        return None
    sensors = session.scalars(
        sa.select(DeviceSensor)
        .where(DeviceSensor.device_id == device_id)
        .order_by(DeviceSensor.sensor_id)
    ).all()
    alerts = session.scalars(
        sa.select(SensorAlert)
        .where(
            SensorAlert.device_id == device_id,
            SensorAlert.status.in_(ACTIVE_ALERT_STATUSES),
        )
        .order_by(SensorAlert.raised_at)
    ).all()
    return {
        "device": device,
        "shown_status": shown_status(device, now=datetime.now(UTC)),
        "sensors": list(sensors),
        "open_alerts": list(alerts),
    }
