"""Operational state: SQLAlchemy models, Alembic migrations and the ``StateDatabase`` resource.

Importing this package reads no settings and opens no connection.
"""

from integration_platform.state.devices import (
    ALERT_STATUSES,
    CbmWorkOrder,
    Device,
    DeviceSensor,
    SensorAlert,
)
from integration_platform.state.engine import (
    check_connection,
    database_url,
    make_engine,
    mask_password,
    parse_database_url,
)
from integration_platform.state.health import ConnectionHealthCheck
from integration_platform.state.migrate import alembic_config, current, downgrade, head, upgrade
from integration_platform.state.models import (
    NAMING_CONVENTION,
    OPEN_PROCESSING_STATUSES,
    PROCESSING_STATUSES,
    SYNC_TYPES,
    Base,
    MaintenanceEventHook,
    SyncConfiguration,
    UTCDateTime,
)
from integration_platform.state.resource import StateDatabase, dispose_engines
from integration_platform.state.sync import (
    SYNC_TABLES,
    SyncAuditEntry,
    SyncBase,
    SyncConflict,
    SyncJournalEntry,
    SyncRun,
    SyncXref,
)

__all__ = [
    "ALERT_STATUSES",
    "NAMING_CONVENTION",
    "OPEN_PROCESSING_STATUSES",
    "PROCESSING_STATUSES",
    "SYNC_TABLES",
    "SYNC_TYPES",
    "Base",
    "CbmWorkOrder",
    "ConnectionHealthCheck",
    "Device",
    "DeviceSensor",
    "MaintenanceEventHook",
    "SensorAlert",
    "StateDatabase",
    "SyncAuditEntry",
    "SyncBase",
    "SyncConfiguration",
    "SyncConflict",
    "SyncJournalEntry",
    "SyncRun",
    "SyncXref",
    "UTCDateTime",
    "alembic_config",
    "check_connection",
    "current",
    "database_url",
    "dispose_engines",
    "downgrade",
    "head",
    "make_engine",
    "mask_password",
    "parse_database_url",
    "upgrade",
]
