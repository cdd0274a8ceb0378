"""Bidirectional sync: change detection, conflict resolution, apply with rollback, audit.

Library code, usable without Dagster. The pieces a caller needs:

- :class:`SyncSpec` (with :class:`SideSpec`, :class:`FieldMap`, :class:`FieldPolicy`) declares
  a sync and validates it (:class:`SyncSpecError` lists ``(path, message)`` problems);
- :class:`SyncEngine` runs it between two adapters (``sync.adapters.sql.SqlTableAdapter``,
  ``sync.adapters.maximo.MaximoWorkOrderAdapter`` / ``MaximoAssetAdapter`` /
  ``MaximoPmAdapter``, ``sync.adapters.dynamics...``) and returns a :class:`SyncReport`
  (``dry_run=True`` only plans); runs of one sync exclude each other (:class:`SyncBusy`);
- :func:`list_conflicts`, :func:`show_conflict`, :func:`resolve_conflict` work the queue;
- :func:`record_history`, :func:`list_runs` and :func:`list_pending_keys` show what
  happened and what waits;
- :func:`register_rule` adds a named conflict rule.

See ``docs/sync.md``.
"""

from integration_platform.sync.engine import SyncEngine, SyncReport, SyncRunFailed
from integration_platform.sync.history import (
    ResolutionCounts,
    list_pending_keys,
    list_runs,
    platform_id_of,
    record_history,
    resolution_counts,
)
from integration_platform.sync.queue import (
    ConflictClosed,
    ConflictDetail,
    ConflictNotFound,
    list_conflicts,
    resolve_conflict,
    show_conflict,
)
from integration_platform.sync.rules import UNRESOLVED, ConflictCase, register_rule
from integration_platform.sync.spec import (
    ENTITY_TABLES,
    Direction,
    FieldMap,
    FieldPolicy,
    ReadPolicy,
    SideSpec,
    Strategy,
    SyncSpec,
    SyncSpecError,
)
from integration_platform.sync.store import SyncBusy

__all__ = [
    "ENTITY_TABLES",
    "UNRESOLVED",
    "ConflictCase",
    "ConflictClosed",
    "ConflictDetail",
    "ConflictNotFound",
    "Direction",
    "FieldMap",
    "FieldPolicy",
    "ReadPolicy",
    "ResolutionCounts",
    "SideSpec",
    "Strategy",
    "SyncBusy",
    "SyncEngine",
    "SyncReport",
    "SyncRunFailed",
    "SyncSpec",
    "SyncSpecError",
    "list_conflicts",
    "list_pending_keys",
    "list_runs",
    "platform_id_of",
    "record_history",
    "register_rule",
    "resolution_counts",
    "resolve_conflict",
    "show_conflict",
]
