"""The conflict queue: list, show and resolve conflicts a sync could not decide by itself.

These are the functions behind ``integration-platform conflicts list|show|resolve``. A
resolution is only recorded here; the next run of the sync writes the chosen value to every
system that differs from it and marks the conflict ``applied``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import pandas as pd
import sqlalchemy as sa

from integration_platform.state.models import utcnow
from integration_platform.state.sync import SyncConflict

Choice = Literal["left", "right", "value"]
LIST_COLUMNS = [
    "id",
    "sync_name",
    "entity",
    "platform_id",
    "field",
    "left_system",
    "left_value",
    "right_system",
    "right_value",
    "base_value",
    "status",
    "strategy",
    "reason",
    "created_at",
]


class ConflictNotFound(LookupError):
    """No conflict with that id."""


class ConflictClosed(ValueError):
    """The conflict is already applied or superseded; there is nothing left to decide."""


@dataclass(frozen=True)
class ConflictDetail:
    """One conflict with both values, the base, when each side changed, and its outcome."""

    id: int
    sync_name: str
    entity: str
    platform_id: str
    field: str
    left_system: str
    left_external_id: str | None
    left_value: Any
    left_modified_at: datetime | None
    right_system: str
    right_external_id: str | None
    right_value: Any
    right_modified_at: datetime | None
    base_value: Any
    status: str
    strategy: str
    reason: str
    resolution: str | None
    resolved_value: Any
    resolved_by: str | None
    resolved_at: datetime | None
    note: str | None
    run_id: str
    applied_run_id: str | None
    created_at: datetime


def list_conflicts(
    state: Any,
    *,
    sync_name: str | None = None,
    status: str | None = "open",
    platform_id: str | None = None,
    limit: int | None = None,
) -> pd.DataFrame:
    """Conflicts, newest first (``status=None`` for all), one row each (:data:`LIST_COLUMNS`)."""
    table = SyncConflict.__table__
    query = sa.select(*(table.c[name] for name in LIST_COLUMNS)).order_by(table.c.id.desc())
    if sync_name is not None:
        query = query.where(table.c.sync_name == sync_name)
    if status is not None:
        query = query.where(table.c.status == status)
    if platform_id is not None:
        query = query.where(table.c.platform_id == platform_id)
    if limit is not None:
        query = query.limit(limit)
    with state.engine().connect() as connection:
        rows = connection.execute(query).fetchall()
    return pd.DataFrame(rows, columns=LIST_COLUMNS)


def show_conflict(state: Any, conflict_id: int) -> ConflictDetail:
    """One conflict in full; ``ConflictNotFound`` if the id is unknown."""
    with state.session() as session:
        row = session.get(SyncConflict, conflict_id)
        if row is None:
            raise ConflictNotFound(
                f"no conflict with id {conflict_id}; list them with "
                "`integration-platform conflicts list`"
            )
        names = ConflictDetail.__dataclass_fields__
        return ConflictDetail(**{name: getattr(row, name) for name in names})


def resolve_conflict(
    state: Any,
    conflict_id: int,
    *,
    choice: Choice,
    resolved_by: str,
    value: Any = None,
    note: str | None = None,
) -> ConflictDetail:
    """Decide a conflict: keep the ``left`` or ``right`` system's value, or a ``value`` of
    your own. The next run of the sync applies it. ``resolved_by`` names the person (it goes
    into the audit trail). Raises ``ConflictNotFound`` / ``ConflictClosed``."""
    if choice not in ("left", "right", "value"):
        raise ValueError(f"choice must be left, right or value, not {choice!r}")
    if not resolved_by or not resolved_by.strip():
        raise ValueError("resolved_by: name who decided (it is recorded in the audit trail)")
    with state.session() as session:
        row = session.get(SyncConflict, conflict_id, with_for_update=True)
        if row is None:
            raise ConflictNotFound(f"no conflict with id {conflict_id}")
        if row.status not in ("open", "resolved"):
            raise ConflictClosed(
                f"conflict {conflict_id} is {row.status}"
                + (f" (run {row.applied_run_id})" if row.applied_run_id else "")
                + "; there is nothing left to decide"
            )
        chosen = {"left": row.left_value, "right": row.right_value, "value": value}[choice]
        row.status = "resolved"
        row.resolution = choice
        row.resolved_value = chosen
        row.resolved_by = resolved_by.strip()
        row.resolved_at = utcnow()
        row.note = note
    return show_conflict(state, conflict_id)
