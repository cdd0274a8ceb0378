"""State of the bidirectional syncs: cross-references, bases, runs, journal, conflicts, audit.

Hub and spoke: every record gets one platform id per entity, and ``sync_xrefs`` says which
record it is in each system. ``sync_bases`` holds, per sync, record and system, the values
both sides agreed on at the last sync (the *base* of the 3-way comparison) and the system's
version token or content hash at that moment. ``sync_journal`` is the durable before-image of
every write, recorded before the write, so a failed or crashed run can be compensated.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from integration_platform.state.models import NOW, Base, BigIntPK, utcnow

RUN_STATUSES: tuple[str, ...] = ("running", "succeeded", "failed", "rolled_back")
JOURNAL_STATES: tuple[str, ...] = ("pending", "applied", "compensated", "failed", "skipped")
CONFLICT_STATUSES: tuple[str, ...] = ("open", "resolved", "applied", "superseded")
PENDING_KEY_STATUSES: tuple[str, ...] = ("pending", "applied", "superseded")


def _in_list(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class SyncXref(Base):
    """Which record in which system a platform id is (one row per entity, id and system)."""

    __tablename__ = "sync_xrefs"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    entity: Mapped[str] = mapped_column(sa.String(50))
    platform_id: Mapped[str] = mapped_column(sa.String(64))
    system: Mapped[str] = mapped_column(sa.String(100))
    external_id: Mapped[str] = mapped_column(sa.String(400))
    # The system's version token last seen for the record (rowstamp, ETag), if it has one.
    version_token: Mapped[str | None] = mapped_column(sa.String(200))
    # A record the sync created and had to take back where the system cannot delete: it is
    # left cancelled in the system and ignored by later runs.
    retired: Mapped[bool] = mapped_column(default=False, server_default=sa.false())
    created_at: Mapped[datetime] = mapped_column(default=utcnow, server_default=NOW)
    updated_at: Mapped[datetime] = mapped_column(
        default=utcnow, onupdate=utcnow, server_default=NOW
    )

    __table_args__ = (
        sa.UniqueConstraint("entity", "system", "external_id"),
        sa.UniqueConstraint("entity", "platform_id", "system"),
    )


class SyncBase(Base):
    """The last synced snapshot of a record in one system, per sync (the 3-way base)."""

    __tablename__ = "sync_bases"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    sync_name: Mapped[str] = mapped_column(sa.String(200))
    entity: Mapped[str] = mapped_column(sa.String(50))
    platform_id: Mapped[str] = mapped_column(sa.String(64))
    system: Mapped[str] = mapped_column(sa.String(100))
    external_id: Mapped[str] = mapped_column(sa.String(400))
    # Canonical field -> value (JSON: text, numbers, ISO-8601 UTC timestamps, null).
    field_values: Mapped[dict[str, Any]] = mapped_column()
    content_hash: Mapped[str] = mapped_column(sa.String(32))
    version_token: Mapped[str | None] = mapped_column(sa.String(200))
    run_id: Mapped[str | None] = mapped_column(sa.String(64))
    synced_at: Mapped[datetime] = mapped_column(default=utcnow, server_default=NOW)

    __table_args__ = (sa.UniqueConstraint("sync_name", "platform_id", "system"),)


class SyncRun(Base):
    """One run of a sync, with its counts and outcome."""

    __tablename__ = "sync_runs"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(sa.String(64), unique=True)
    sync_name: Mapped[str] = mapped_column(sa.String(200))
    entity: Mapped[str] = mapped_column(sa.String(50))
    status: Mapped[str] = mapped_column(sa.String(16), default="running", server_default="running")
    started_at: Mapped[datetime] = mapped_column(default=utcnow, server_default=NOW)
    finished_at: Mapped[datetime | None] = mapped_column()
    records_read: Mapped[int] = mapped_column(default=0, server_default="0")
    records_changed: Mapped[int] = mapped_column(default=0, server_default="0")
    conflicts: Mapped[int] = mapped_column(default=0, server_default="0")
    auto_resolved: Mapped[int] = mapped_column(default=0, server_default="0")
    applied: Mapped[int] = mapped_column(default=0, server_default="0")
    rolled_back: Mapped[int] = mapped_column(default=0, server_default="0")
    quarantined: Mapped[int] = mapped_column(default=0, server_default="0")
    # Conflicts a person resolved whose decision the run applied.
    resolved_manually: Mapped[int] = mapped_column(default=0, server_default="0")
    cause: Mapped[str | None] = mapped_column(sa.Text)
    # "full" or "incremental"; the high-water mark of each system's modified time among the
    # records read ({system: ISO-8601}), where the next incremental read starts (less overlap).
    read_mode: Mapped[str | None] = mapped_column(sa.String(16))
    high_water: Mapped[dict[str, Any] | None] = mapped_column()
    # Who or what started the run (Dagster run id, "cli", ...), free text.
    triggered_by: Mapped[str | None] = mapped_column(sa.String(200))

    __table_args__ = (
        sa.CheckConstraint(_in_list("status", RUN_STATUSES), name="status"),
        sa.Index("ix_sync_runs_sync_name_started_at", "sync_name", "started_at"),
    )


class SyncJournalEntry(Base):
    """A write a run is about to make or made, with the record's before-image.

    Recorded (and committed) before the write as ``pending``; ``applied`` with the system's
    answer after it; ``compensated`` once a rollback restored the before-image.
    """

    __tablename__ = "sync_journal"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(sa.String(64))
    sync_name: Mapped[str] = mapped_column(sa.String(200))
    seq: Mapped[int] = mapped_column()
    system: Mapped[str] = mapped_column(sa.String(100))
    entity: Mapped[str] = mapped_column(sa.String(50))
    platform_id: Mapped[str] = mapped_column(sa.String(64))
    external_id: Mapped[str | None] = mapped_column(sa.String(400))
    operation: Mapped[str] = mapped_column(sa.String(16))
    # Side field -> value before the write (updates) and the values written.
    before_image: Mapped[dict[str, Any]] = mapped_column()
    changes: Mapped[dict[str, Any]] = mapped_column()
    state: Mapped[str] = mapped_column(sa.String(16), default="pending", server_default="pending")
    version_after: Mapped[str | None] = mapped_column(sa.String(200))
    error: Mapped[str | None] = mapped_column(sa.Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, server_default=NOW)
    updated_at: Mapped[datetime] = mapped_column(
        default=utcnow, onupdate=utcnow, server_default=NOW
    )

    __table_args__ = (
        sa.CheckConstraint(_in_list("state", JOURNAL_STATES), name="state"),
        sa.UniqueConstraint("run_id", "seq"),
    )


class SyncConflict(Base):
    """A field both systems changed to different values, waiting for (or given) a decision."""

    __tablename__ = "sync_conflicts"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    sync_name: Mapped[str] = mapped_column(sa.String(200))
    run_id: Mapped[str] = mapped_column(sa.String(64))
    entity: Mapped[str] = mapped_column(sa.String(50))
    platform_id: Mapped[str] = mapped_column(sa.String(64))
    field: Mapped[str] = mapped_column(sa.String(100))
    left_system: Mapped[str] = mapped_column(sa.String(100))
    right_system: Mapped[str] = mapped_column(sa.String(100))
    left_external_id: Mapped[str | None] = mapped_column(sa.String(400))
    right_external_id: Mapped[str | None] = mapped_column(sa.String(400))
    base_value: Mapped[Any] = mapped_column(sa.JSON(), nullable=True)
    left_value: Mapped[Any] = mapped_column(sa.JSON(), nullable=True)
    right_value: Mapped[Any] = mapped_column(sa.JSON(), nullable=True)
    left_modified_at: Mapped[datetime | None] = mapped_column()
    right_modified_at: Mapped[datetime | None] = mapped_column()
    strategy: Mapped[str] = mapped_column(sa.String(100))
    reason: Mapped[str] = mapped_column(sa.Text)
    status: Mapped[str] = mapped_column(sa.String(16), default="open", server_default="open")
    resolution: Mapped[str | None] = mapped_column(sa.String(16))
    resolved_value: Mapped[Any] = mapped_column(sa.JSON(), nullable=True)
    resolved_by: Mapped[str | None] = mapped_column(sa.String(200))
    resolved_at: Mapped[datetime | None] = mapped_column()
    note: Mapped[str | None] = mapped_column(sa.Text)
    applied_run_id: Mapped[str | None] = mapped_column(sa.String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow, server_default=NOW)

    __table_args__ = (
        sa.CheckConstraint(_in_list("status", CONFLICT_STATUSES), name="status"),
        sa.Index("ix_sync_conflicts_sync_name_status", "sync_name", "status"),
        sa.Index("ix_sync_conflicts_entity_platform_id", "entity", "platform_id"),
    )


class SyncAuditEntry(Base):
    """One applied field change: who changed what, from which system to which, and why."""

    __tablename__ = "sync_audit"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(sa.String(64))
    sync_name: Mapped[str] = mapped_column(sa.String(200))
    entity: Mapped[str] = mapped_column(sa.String(50))
    platform_id: Mapped[str] = mapped_column(sa.String(64))
    external_id: Mapped[str | None] = mapped_column(sa.String(400))
    operation: Mapped[str] = mapped_column(sa.String(16))
    field: Mapped[str] = mapped_column(sa.String(100))
    old_value: Mapped[Any] = mapped_column(sa.JSON(), nullable=True)
    new_value: Mapped[Any] = mapped_column(sa.JSON(), nullable=True)
    source_system: Mapped[str] = mapped_column(sa.String(100))
    target_system: Mapped[str] = mapped_column(sa.String(100))
    strategy: Mapped[str] = mapped_column(sa.String(100))
    resolved_by: Mapped[str | None] = mapped_column(sa.String(200))
    reason: Mapped[str | None] = mapped_column(sa.Text)
    conflict_id: Mapped[int | None] = mapped_column(sa.BigInteger)
    applied_at: Mapped[datetime] = mapped_column(default=utcnow, server_default=NOW)

    __table_args__ = (
        sa.Index("ix_sync_audit_entity_platform_id", "entity", "platform_id"),
        sa.Index("ix_sync_audit_run_id", "run_id"),
    )


class SyncPendingKey(Base):
    """A number one system assigned to a record the sync created there (Maximo's ``wonum``)
    whose write-back to the record it came from was refused (the record changed during the
    run). Kept until a later run writes it: ``applied``, or ``superseded`` when the record
    meanwhile holds a number of its own or is gone. The records stay paired throughout by
    their cross-references, which do not depend on the number.
    """

    __tablename__ = "sync_pending_keys"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    sync_name: Mapped[str] = mapped_column(sa.String(200))
    entity: Mapped[str] = mapped_column(sa.String(50))
    platform_id: Mapped[str] = mapped_column(sa.String(64))
    # The record to write to (the source of the created record) and the canonical field.
    system: Mapped[str] = mapped_column(sa.String(100))
    external_id: Mapped[str] = mapped_column(sa.String(400))
    field: Mapped[str] = mapped_column(sa.String(100))
    # The canonical value assigned, and the side field -> value to write.
    value: Mapped[Any] = mapped_column(sa.JSON(), nullable=True)
    changes: Mapped[dict[str, Any]] = mapped_column()
    # Which system assigned it, to which record.
    assigned_by: Mapped[str] = mapped_column(sa.String(100))
    assigned_external_id: Mapped[str] = mapped_column(sa.String(400))
    status: Mapped[str] = mapped_column(sa.String(16), default="pending", server_default="pending")
    attempts: Mapped[int] = mapped_column(default=1, server_default="1")
    last_error: Mapped[str | None] = mapped_column(sa.Text)
    note: Mapped[str | None] = mapped_column(sa.Text)
    run_id: Mapped[str] = mapped_column(sa.String(64))
    applied_run_id: Mapped[str | None] = mapped_column(sa.String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow, server_default=NOW)
    updated_at: Mapped[datetime] = mapped_column(
        default=utcnow, onupdate=utcnow, server_default=NOW
    )

    __table_args__ = (
        sa.CheckConstraint(_in_list("status", PENDING_KEY_STATUSES), name="status"),
        sa.UniqueConstraint("sync_name", "platform_id", "system"),
        sa.Index("ix_sync_pending_keys_sync_name_status", "sync_name", "status"),
    )


SYNC_TABLES: tuple[str, ...] = (
    "sync_xrefs",
    "sync_bases",
    "sync_runs",
    "sync_journal",
    "sync_conflicts",
    "sync_audit",
    "sync_pending_keys",
)
