"""Realistic sample messages in each format, for ``webhooks test-send`` and the tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

_COMMON_DATA: dict[str, dict[str, Any]] = {
    "work_order": {
        "site_id": "BEDFORD",
        "asset_external_id": "P-101",
        "title": "Pump P-101 bearing temperature high",
        "work_type": "corrective",
        "priority": "high",
        "status": "in_progress",
    },
    "asset": {"site_id": "BEDFORD", "name": "Feed pump P-101", "status": "operating"},
    "maintenance_schedule": {
        "site_id": "BEDFORD",
        "asset_external_id": "P-101",
        "title": "Quarterly lubrication",
        "interval_value": 3,
        "interval_unit": "months",
    },
}


def sample_document(
    message_format: str,
    event_type: str = "work_order.status_changed",
    entity_id: str = "WO-1001",
    *,
    now: datetime | None = None,
) -> dict[str, Any]:
    """A message of ``event_type`` about record ``entity_id`` as the format's sender sends it."""
    now = now or datetime.now(UTC)
    entity_type, _, action = event_type.partition(".")
    iso = now.isoformat().replace("+00:00", "Z")
    if message_format == "common":
        data: dict[str, Any] = {"external_id": entity_id, **_COMMON_DATA.get(entity_type, {})}
        if event_type == "work_order.status_changed":
            data.update(status="completed", previous_status="in_progress")
        return {"type": event_type, "timestamp": iso, "data": data}
    if message_format == "maximo":
        key = {"work_order": "wonum", "asset": "assetnum", "maintenance_schedule": "pmnum"}
        record: dict[str, Any] = {
            key.get(entity_type, "wonum"): entity_id,
            "siteid": "BEDFORD",
            "_action": "Add" if action == "created" else "Replace",
            "changedate": now.isoformat(),
            "_rowstamp": str(int(now.timestamp() * 1000)),
        }
        if entity_type == "work_order":
            completed = action == "status_changed"
            record.update(
                assetnum="P-101",
                description="Pump P-101 bearing temperature high",
                worktype="CM",
                wopriority=2,
                status="COMP" if completed else "INPRG",
                statusdate=now.isoformat(),
                reportdate=(now - timedelta(days=1)).isoformat(),
                actstart=(now - timedelta(hours=4)).isoformat(),
            )
            if completed:
                record["actfinish"] = now.isoformat()
        return record
    if message_format == "upkeep":
        names = {
            "work_order.created": "WORK_ORDER_CREATED",
            "work_order.updated": "WORK_ORDER_UPDATED",
            "work_order.status_changed": "WORK_ORDER_STATUS_UPDATED",
            "asset.updated": "ASSET_UPDATED",
            "maintenance_schedule.updated": "PREVENTIVE_MAINTENANCE_UPDATED",
        }
        return {
            "event": names.get(event_type, event_type),
            "triggeredAt": iso,
            "data": {
                "id": entity_id,
                "workOrderNo": "1001",
                "title": "Pump P-101 bearing temperature high",
                "priority": 3,
                "status": "complete" if action == "status_changed" else "inProgress",
                "asset": "P-101",
                "updatedAt": iso,
            },
        }
    if message_format == "fiix":
        classes = {"work_order": "WorkOrder", "asset": "Asset"}
        stamp = int(now.timestamp() * 1000)
        return {
            "className": classes.get(entity_type, "ScheduledMaintenance"),
            "action": action,
            "object": {
                "id": int(entity_id) if entity_id.isdigit() else entity_id,
                "strCode": f"WO{entity_id}",
                "strDescription": "Pump P-101 bearing temperature high",
                "intWorkOrderStatusID": 4,
                "dtmDateLastModified": stamp,
            },
        }
    raise ValueError(f"no sample for the message format {message_format!r}")
