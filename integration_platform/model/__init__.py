"""Canonical entities: pandera models that are the single source of truth for the data.

Connectors and mappings produce these shapes, syncs and marts consume them. Each model lives
in its own module; :data:`CANONICAL_MODELS` lists them by table name (snake_case plural), the
name used for silver tables and asset keys (``silver/work_orders``).
"""

from __future__ import annotations

import pandera.pandas as pa

from integration_platform.model.alert import Alert
from integration_platform.model.asset import Asset
from integration_platform.model.base import CanonicalModel, ExternalRecord, UtcTimestamp
from integration_platform.model.currency import CURRENCY_CODES, is_currency_code
from integration_platform.model.device import Device, Sensor
from integration_platform.model.enums import (
    AlertSeverity,
    AlertState,
    AssetCondition,
    AssetStatus,
    ComparisonOperator,
    DeviceStatus,
    EntityType,
    EventType,
    IntervalUnit,
    InvoiceStatus,
    Priority,
    Protocol,
    PurchaseOrderStatus,
    ReadingQuality,
    ScheduleStatus,
    ScheduleTriggerType,
    SensorType,
    ShipmentStatus,
    SupplierStatus,
    TaskStatus,
    WorkOrderStatus,
    WorkType,
)
from integration_platform.model.invoice import Invoice
from integration_platform.model.maintenance_event import MaintenanceEvent
from integration_platform.model.maintenance_schedule import MaintenanceSchedule
from integration_platform.model.maintenance_task import MaintenanceTask
from integration_platform.model.part import InventoryItem, Part
from integration_platform.model.purchase_order import PurchaseOrder, PurchaseOrderLine
from integration_platform.model.sensor_reading import SensorReading
from integration_platform.model.shipment import Shipment
from integration_platform.model.supplier import Supplier
from integration_platform.model.validation import (
    REJECT_FIELD,
    REJECT_REASON,
    ModelSchemaError,
    ValidationResult,
    column_descriptions,
    table_schema,
    validate_rows,
)
from integration_platform.model.work_order import WorkOrder

CANONICAL_MODELS: dict[str, type[pa.DataFrameModel]] = {
    "assets": Asset,
    "work_orders": WorkOrder,
    "maintenance_schedules": MaintenanceSchedule,
    "maintenance_tasks": MaintenanceTask,
    "sensor_readings": SensorReading,
    "devices": Device,
    "sensors": Sensor,
    "alerts": Alert,
    "parts": Part,
    "inventory_items": InventoryItem,
    "suppliers": Supplier,
    "purchase_orders": PurchaseOrder,
    "purchase_order_lines": PurchaseOrderLine,
    "shipments": Shipment,
    "invoices": Invoice,
    "maintenance_events": MaintenanceEvent,
}
"""Every canonical model by table name."""

__all__ = [
    "CANONICAL_MODELS",
    "CURRENCY_CODES",
    "REJECT_FIELD",
    "REJECT_REASON",
    "Alert",
    "AlertSeverity",
    "AlertState",
    "Asset",
    "AssetCondition",
    "AssetStatus",
    "CanonicalModel",
    "ComparisonOperator",
    "Device",
    "DeviceStatus",
    "EntityType",
    "EventType",
    "ExternalRecord",
    "IntervalUnit",
    "InventoryItem",
    "Invoice",
    "InvoiceStatus",
    "MaintenanceEvent",
    "MaintenanceSchedule",
    "MaintenanceTask",
    "ModelSchemaError",
    "Part",
    "Priority",
    "Protocol",
    "PurchaseOrder",
    "PurchaseOrderLine",
    "PurchaseOrderStatus",
    "ReadingQuality",
    "ScheduleStatus",
    "ScheduleTriggerType",
    "Sensor",
    "SensorReading",
    "SensorType",
    "Shipment",
    "ShipmentStatus",
    "Supplier",
    "SupplierStatus",
    "TaskStatus",
    "UtcTimestamp",
    "ValidationResult",
    "WorkOrder",
    "WorkOrderStatus",
    "WorkType",
    "column_descriptions",
    "is_currency_code",
    "table_schema",
    "validate_rows",
]
