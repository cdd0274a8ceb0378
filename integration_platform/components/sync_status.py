"""Figures about syncs for Dagster metadata: the conflict queue of a sync and the audit trail.

Read from the state database tables the engine writes (``sync_conflicts``, ``sync_runs``,
``sync_audit``), in a few grouped queries, so a sync run and the assets can report them
cheaply after every run.
"""

from __future__ import annotations

from typing import Any

import dagster as dg
import pandas as pd
import sqlalchemy as sa

from integration_platform.state.sync import SyncConflict

PREVIEW_ROWS = 20


def conflict_counts(state: Any, sync_name: str) -> dict[str, int]:
    """Conflicts of a sync per status (open, resolved = decided by a person and waiting for
    the next run, applied, superseded)."""
    table = SyncConflict.__table__
    query = (
        sa.select(table.c.status, sa.func.count())
        .where(table.c.sync_name == sync_name)
        .group_by(table.c.status)
    )
    with state.engine().connect() as connection:
        counts = {str(status): int(n) for status, n in connection.execute(query)}
    return {status: counts.get(status, 0) for status in ("open", "resolved", "applied")} | counts


def conflict_metadata(state: Any, sync_name: str) -> dict[str, Any]:
    """Metadata of ``sync/<name>/conflicts``: counts, open conflicts per field, the oldest
    one and a preview of the queue."""
    from integration_platform.sync.queue import list_conflicts

    counts = conflict_counts(state, sync_name)
    waiting = list_conflicts(state, sync_name=sync_name, status="open")
    by_field = waiting["field"].value_counts().sort_index().to_dict() if len(waiting) else {}
    preview = waiting.head(PREVIEW_ROWS)[
        ["id", "platform_id", "field", "left_value", "right_value", "strategy", "reason"]
    ]
    oldest = waiting["created_at"].min() if len(waiting) else None
    return {
        "conflicts_open": counts["open"],
        "conflicts_resolved_waiting": counts["resolved"],
        "conflicts_applied": counts["applied"],
        "open_by_field": dg.MetadataValue.json({str(k): int(v) for k, v in by_field.items()}),
        "oldest_open_at": "" if oldest is None else pd.Timestamp(oldest).isoformat(),
        "open_conflicts": dg.MetadataValue.md(
            preview.to_markdown(index=False) if len(preview) else "no open conflicts"
        ),
    }


def audit_metadata(state: Any, lake: Any = None) -> dict[str, Any]:
    """Metadata of ``audit/sync_changes``: applied changes per strategy, the automatic
    resolution rate, and the Delta table's version."""
    from integration_platform.sync.engine import AUDIT_TABLE
    from integration_platform.sync.history import resolution_counts

    counts = resolution_counts(state)
    metadata: dict[str, Any] = {
        "changes_total": counts.changes_total,
        "changes_by_strategy": dg.MetadataValue.json(counts.by_strategy),
        "conflicts_found": counts.conflicts_found,
        "conflicts_auto_resolved": counts.auto_resolved,
        "conflicts_resolved_manually": counts.resolved_manually,
        "auto_resolution_rate_pct": counts.auto_resolution_rate_pct,
    }
    if lake is not None:
        version = lake.version(list(AUDIT_TABLE))
        metadata["delta_version"] = -1 if version is None else int(version)
    return metadata
