"""What happened to a record and to a sync: the audit trail and the run list.

:func:`record_history` answers "who changed this work order, when, from which system, and
why was each conflict decided the way it was" from the state database; the same lines are
appended to the Delta table ``audit/sync_changes``, whose time travel gives the trail as it
stood at any earlier moment.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd
import sqlalchemy as sa

from integration_platform.state.sync import (
    SyncAuditEntry,
    SyncConflict,
    SyncPendingKey,
    SyncRun,
    SyncXref,
)

HISTORY_COLUMNS = [
    "applied_at",
    "run_id",
    "sync_name",
    "operation",
    "field",
    "old_value",
    "new_value",
    "source_system",
    "target_system",
    "external_id",
    "strategy",
    "resolved_by",
    "reason",
    "conflict_id",
    "conflict_reason",
    "conflict_left_value",
    "conflict_right_value",
    "conflict_note",
]
RUN_COLUMNS = [
    "run_id",
    "sync_name",
    "status",
    "started_at",
    "finished_at",
    "records_read",
    "records_changed",
    "conflicts",
    "auto_resolved",
    "resolved_manually",
    "applied",
    "rolled_back",
    "quarantined",
    "read_mode",
    "cause",
    "triggered_by",
]


def platform_id_of(state: Any, entity: str, system: str, external_id: str) -> str | None:
    """The platform id of a record known by its id in one system."""
    table = SyncXref.__table__
    with state.engine().connect() as connection:
        return connection.execute(
            sa.select(table.c.platform_id).where(
                table.c.entity == entity,
                table.c.system == system,
                table.c.external_id == external_id,
            )
        ).scalar()


def record_history(
    state: Any,
    *,
    entity: str,
    platform_id: str | None = None,
    system: str | None = None,
    external_id: str | None = None,
) -> pd.DataFrame:
    """Every applied change of one record, oldest first, with the conflict behind each
    decided change (reason, both values, the person's note). Name the record by platform id,
    or by ``system`` and ``external_id``."""
    if platform_id is None:
        if system is None or external_id is None:
            raise ValueError("name the record by platform_id, or by system and external_id")
        platform_id = platform_id_of(state, entity, system, external_id)
        if platform_id is None:
            return pd.DataFrame(columns=HISTORY_COLUMNS)
    audit = SyncAuditEntry.__table__
    conflict = SyncConflict.__table__
    query = (
        sa.select(
            audit.c.applied_at,
            audit.c.run_id,
            audit.c.sync_name,
            audit.c.operation,
            audit.c.field,
            audit.c.old_value,
            audit.c.new_value,
            audit.c.source_system,
            audit.c.target_system,
            audit.c.external_id,
            audit.c.strategy,
            audit.c.resolved_by,
            audit.c.reason,
            audit.c.conflict_id,
            conflict.c.reason.label("conflict_reason"),
            conflict.c.left_value.label("conflict_left_value"),
            conflict.c.right_value.label("conflict_right_value"),
            conflict.c.note.label("conflict_note"),
        )
        .select_from(audit.outerjoin(conflict, conflict.c.id == audit.c.conflict_id))
        .where(audit.c.entity == entity, audit.c.platform_id == platform_id)
        .order_by(audit.c.applied_at, audit.c.id)
    )
    with state.engine().connect() as connection:
        rows = connection.execute(query).fetchall()
    return pd.DataFrame(rows, columns=HISTORY_COLUMNS)


def list_runs(state: Any, *, sync_name: str | None = None, limit: int = 50) -> pd.DataFrame:
    """The latest runs (newest first) with their counts, status and cause."""
    table = SyncRun.__table__
    query = sa.select(*(table.c[c] for c in RUN_COLUMNS)).order_by(table.c.id.desc())
    if sync_name is not None:
        query = query.where(table.c.sync_name == sync_name)
    with state.engine().connect() as connection:
        rows = connection.execute(query.limit(limit)).fetchall()
    return pd.DataFrame(rows, columns=RUN_COLUMNS)


PENDING_KEY_COLUMNS = [
    "sync_name",
    "entity",
    "system",
    "external_id",
    "field",
    "value",
    "assigned_by",
    "assigned_external_id",
    "status",
    "attempts",
    "last_error",
    "note",
    "run_id",
    "applied_run_id",
    "updated_at",
]


def list_pending_keys(
    state: Any, *, sync_name: str | None = None, status: str | None = "pending"
) -> pd.DataFrame:
    """Numbers a system assigned whose write-back to the source record was refused: still
    waiting (``status="pending"``, the default), ``applied``, ``superseded`` or all
    (``None``), oldest first. Each later run tries the waiting ones again before reading."""
    table = SyncPendingKey.__table__
    query = sa.select(*(table.c[c] for c in PENDING_KEY_COLUMNS)).order_by(table.c.id)
    if sync_name is not None:
        query = query.where(table.c.sync_name == sync_name)
    if status is not None:
        query = query.where(table.c.status == status)
    with state.engine().connect() as connection:
        rows = connection.execute(query).fetchall()
    return pd.DataFrame(rows, columns=PENDING_KEY_COLUMNS)


@dataclass(frozen=True)
class ResolutionCounts:
    """How the changes of the succeeded runs were decided.

    ``by_strategy``: applied field changes per strategy (``changed``, ``created``,
    ``source_priority``, ``manual``...); ``conflicts_found``: conflicts the runs found;
    ``auto_resolved``: those a policy decided; ``resolved_manually``: decisions of a person
    the runs applied.
    """

    by_strategy: dict[str, int]
    conflicts_found: int
    auto_resolved: int
    resolved_manually: int

    @property
    def changes_total(self) -> int:
        return sum(self.by_strategy.values())

    @property
    def auto_resolution_rate_pct(self) -> float:
        """Share of the conflicts found that a policy decided, in percent (100 when none)."""
        if not self.conflicts_found:
            return 100.0
        return round(100.0 * self.auto_resolved / self.conflicts_found, 2)


def resolution_counts(state: Any, *, sync_name: str | None = None) -> ResolutionCounts:
    """Applied changes per strategy and the automatic resolution rate, over all syncs or one."""
    audit = SyncAuditEntry.__table__
    runs = SyncRun.__table__
    per_strategy = sa.select(audit.c.strategy, sa.func.count()).group_by(audit.c.strategy)
    totals = sa.select(
        *(sa.func.coalesce(sa.func.sum(runs.c[name]), 0) for name in RESOLUTION_COLUMNS)
    ).where(runs.c.status == "succeeded")
    if sync_name is not None:
        per_strategy = per_strategy.where(audit.c.sync_name == sync_name)
        totals = totals.where(runs.c.sync_name == sync_name)
    with state.engine().connect() as connection:
        by_strategy = {
            str(strategy): int(n)
            for strategy, n in connection.execute(per_strategy.order_by(audit.c.strategy))
        }
        found, automatic, manual = (int(v) for v in connection.execute(totals).one())
    return ResolutionCounts(by_strategy, found, automatic, manual)


RESOLUTION_COLUMNS = ("conflicts", "auto_resolved", "resolved_manually")
