"""Domain vocabularies shared by the canonical models.

Each enumeration is a ``StrEnum`` so its members compare equal to the plain strings stored in
dataframes and Delta tables. Columns holding one of these values are validated with ``isin``
against :func:`values`; connectors and mappings translate each system's codes into these.
"""

from __future__ import annotations

from enum import StrEnum


def values(enum: type[StrEnum]) -> list[str]:
    """The allowed string values of an enumeration, in declaration order."""
    return [member.value for member in enum]


class WorkType(StrEnum):
    """Why a work order exists: the kind of maintenance work it asks for."""

    PREVENTIVE = "preventive"
    CORRECTIVE = "corrective"
    PREDICTIVE = "predictive"
    EMERGENCY = "emergency"
    INSPECTION = "inspection"
    CALIBRATION = "calibration"
    CLEANING = "cleaning"
    LUBRICATION = "lubrication"


class Priority(StrEnum):
    """How urgent a work order is, or how critical an asset is to production."""

    CRITICAL = "critical"
    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"


class WorkOrderStatus(StrEnum):
    """Where a work order stands in its life cycle."""

    SCHEDULED = "scheduled"
    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"
    CANCELLED = "cancelled"
    OVERDUE = "overdue"
    ON_HOLD = "on_hold"


class AssetStatus(StrEnum):
    """Whether an asset is available to production."""

    OPERATING = "operating"
    STANDBY = "standby"
    UNDER_MAINTENANCE = "under_maintenance"
    OUT_OF_SERVICE = "out_of_service"
    DECOMMISSIONED = "decommissioned"


class AssetCondition(StrEnum):
    """The assessed physical condition of an asset (condition-monitoring grade)."""

    EXCELLENT = "excellent"
    GOOD = "good"
    FAIR = "fair"
    POOR = "poor"
    CRITICAL = "critical"


class SensorType(StrEnum):
    """Known measured quantities. The models accept any lowercase identifier, so new kinds
    of sensor need no code change; these are the ones the platform ships defaults for."""

    TEMPERATURE = "temperature"
    VIBRATION = "vibration"
    PRESSURE = "pressure"
    FLOW = "flow"
    HUMIDITY = "humidity"


class ReadingQuality(StrEnum):
    """Trust in a sensor value, following the OPC-UA good/uncertain/bad status classes."""

    GOOD = "good"
    UNCERTAIN = "uncertain"
    BAD = "bad"


class Protocol(StrEnum):
    """Industrial and IoT protocols a device is reached through."""

    MQTT = "mqtt"
    OPCUA = "opcua"
    MODBUS = "modbus"
    COAP = "coap"
    BACNET = "bacnet"


class DeviceStatus(StrEnum):
    """Connectivity of a field device as last seen by a collector."""

    ONLINE = "online"
    OFFLINE = "offline"
    ERROR = "error"
    UNKNOWN = "unknown"


class AlertSeverity(StrEnum):
    """How serious an alert is; ``info`` alerts are notices that need no action."""

    CRITICAL = "critical"
    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"
    INFO = "info"


class AlertState(StrEnum):
    """Life cycle of an alert, after the ISA-18.2 alarm states."""

    ACTIVE = "active"
    ACKNOWLEDGED = "acknowledged"
    CLEARED = "cleared"
    SUPPRESSED = "suppressed"


class ScheduleTriggerType(StrEnum):
    """What makes a maintenance schedule due: calendar time, usage (a meter) or condition."""

    TIME = "time"
    USAGE = "usage"
    CONDITION = "condition"


class ScheduleStatus(StrEnum):
    """Whether a maintenance schedule still generates work."""

    ACTIVE = "active"
    PAUSED = "paused"
    RETIRED = "retired"


class IntervalUnit(StrEnum):
    """Calendar unit of a time-based maintenance interval."""

    HOURS = "hours"
    DAYS = "days"
    WEEKS = "weeks"
    MONTHS = "months"
    YEARS = "years"


class ComparisonOperator(StrEnum):
    """How a measured value is compared with a threshold (condition-based triggers)."""

    GT = "gt"
    GE = "ge"
    LT = "lt"
    LE = "le"


class TaskStatus(StrEnum):
    """Progress of one step of a work order or job plan."""

    PENDING = "pending"
    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"
    SKIPPED = "skipped"


class SupplierStatus(StrEnum):
    """Whether purchasing may order from a supplier."""

    ACTIVE = "active"
    INACTIVE = "inactive"
    BLOCKED = "blocked"


class PurchaseOrderStatus(StrEnum):
    """Where a purchase order stands, from draft to closed."""

    DRAFT = "draft"
    SUBMITTED = "submitted"
    APPROVED = "approved"
    PARTIALLY_RECEIVED = "partially_received"
    RECEIVED = "received"
    CLOSED = "closed"
    CANCELLED = "cancelled"


class ShipmentStatus(StrEnum):
    """Where a supplier's delivery is."""

    PENDING = "pending"
    IN_TRANSIT = "in_transit"
    DELIVERED = "delivered"
    EXCEPTION = "exception"
    CANCELLED = "cancelled"


class InvoiceStatus(StrEnum):
    """Where a supplier invoice stands in accounts payable."""

    RECEIVED = "received"
    APPROVED = "approved"
    DISPUTED = "disputed"
    PAID = "paid"
    CANCELLED = "cancelled"


class EventType(StrEnum):
    """What happened to an entity, as announced by a source system's webhook."""

    CREATED = "created"
    UPDATED = "updated"
    DELETED = "deleted"
    STATUS_CHANGED = "status_changed"


class EntityType(StrEnum):
    """The canonical entities an event or cross-reference can point at."""

    ASSET = "asset"
    WORK_ORDER = "work_order"
    MAINTENANCE_SCHEDULE = "maintenance_schedule"
    MAINTENANCE_TASK = "maintenance_task"
    DEVICE = "device"
    SENSOR = "sensor"
    ALERT = "alert"
    PART = "part"
    INVENTORY_ITEM = "inventory_item"
    SUPPLIER = "supplier"
    PURCHASE_ORDER = "purchase_order"
    PURCHASE_ORDER_LINE = "purchase_order_line"
    SHIPMENT = "shipment"
    INVOICE = "invoice"
