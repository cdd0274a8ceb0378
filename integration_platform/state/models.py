"""Tables for operational state, portable between SQLite (embedded) and PostgreSQL (production).

The models are the reference the migrations are checked against: a test upgrades a real
database to head and asserts that Alembic finds no difference to ``Base.metadata``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# Deterministic constraint and index names: Alembic can only drop what it can name, and SQLite
# and PostgreSQL would otherwise invent different names for the same constraint.
NAMING_CONVENTION: dict[str, str] = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_N_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

PROCESSING_STATUSES: tuple[str, ...] = (
    "pending",
    "processing",
    "processed",
    "failed",
    "dead_letter",
)
# Statuses a worker still has to look at; the polling index covers only these on PostgreSQL.
OPEN_PROCESSING_STATUSES: tuple[str, ...] = ("pending", "processing", "failed")
SYNC_TYPES: tuple[str, ...] = ("one_way", "two_way")


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(sa.TypeDecorator[datetime]):
    """A timezone-aware timestamp, stored and returned in UTC on every backend.

    PostgreSQL keeps ``timestamptz`` natively; SQLite has no time zones and would hand back
    naive values, so they are written as UTC and read back with ``tzinfo=UTC``. A naive value
    is refused rather than guessed at: it is a bug in the caller.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"naive datetime {value!r}: give a timezone-aware value (UTC)")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


# JSONB on PostgreSQL (indexable, compact); JSON text on SQLite.
JSONType = sa.JSON().with_variant(JSONB(), "postgresql")
# SQLite only auto-increments an INTEGER PRIMARY KEY (the rowid); BIGINT there would not.
BigIntPK = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
NOW = sa.text("CURRENT_TIMESTAMP")


def _in_list(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class Base(DeclarativeBase):
    """Declarative base whose metadata carries the naming convention."""

    metadata = sa.MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {dict[str, Any]: JSONType, datetime: UTCDateTime()}


class MaintenanceEventHook(Base):
    """The webhook inbox: one row per event a CMMS sent, persisted before it is acknowledged.

    Workers poll by status and ``next_attempt_at`` (never by id: ids can commit out of order)
    and move each row through pending -> processing -> processed, or to failed (retried at
    ``next_attempt_at``) and finally dead_letter. ``(cmms_system_id, event_id)`` is unique, so a
    redelivered event is acknowledged without a second row.
    """

    __tablename__ = "maintenance_event_hooks"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    cmms_system_id: Mapped[str] = mapped_column(sa.String(100))
    event_type: Mapped[str] = mapped_column(sa.String(200))
    event_payload: Mapped[dict[str, Any]] = mapped_column()
    hmac_signature: Mapped[str] = mapped_column(sa.Text)
    processing_status: Mapped[str] = mapped_column(
        sa.String(16), default="pending", server_default="pending"
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow, server_default=NOW)
    processed_at: Mapped[datetime | None] = mapped_column()
    error_message: Mapped[str | None] = mapped_column(sa.Text)
    retry_count: Mapped[int] = mapped_column(default=0, server_default="0")
    # The sender's delivery id (Standard Webhooks ``webhook-id``, or one derived from the
    # message); with cmms_system_id the de-duplication key. Rows from before revision 0002 carry
    # "legacy:<id>".
    event_id: Mapped[str] = mapped_column(sa.String(200))
    received_at: Mapped[datetime] = mapped_column(default=utcnow, server_default=NOW)
    # When a worker may pick the event up next: received_at at first, later the retry time.
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow, server_default=NOW)
    # The record the event concerns and when it changed at the source: events of one record
    # are processed in occurred_at order.
    entity_type: Mapped[str | None] = mapped_column(sa.String(100))
    entity_external_id: Mapped[str | None] = mapped_column(sa.String(200))
    occurred_at: Mapped[datetime | None] = mapped_column()
    # How the sender proved who it is ("standard", "sha256"); shows which secrets to rotate.
    signature_scheme: Mapped[str | None] = mapped_column(sa.String(32))
    # The processing run holding the event (its lease ends at next_attempt_at while the status
    # is "processing") and when it claimed it; outcomes are written only by the holder.
    claimed_by: Mapped[str | None] = mapped_column(sa.String(100))
    claimed_at: Mapped[datetime | None] = mapped_column()
    # How the receiver read the body (common, maximo, upkeep, fiix): picks the mapping.
    message_format: Mapped[str | None] = mapped_column(sa.String(16))

    __table_args__ = (
        sa.CheckConstraint(
            _in_list("processing_status", PROCESSING_STATUSES), name="processing_status"
        ),
        sa.UniqueConstraint("cmms_system_id", "event_id"),
        # Polling with retries: "open events due now, soonest first"; partial like the one below.
        sa.Index(
            "ix_maintenance_event_hooks_processing_status_next_attempt_at",
            "processing_status",
            "next_attempt_at",
            postgresql_where=sa.text(_in_list("processing_status", OPEN_PROCESSING_STATUSES)),
        ),
        # Per-record ordering: "earlier open events of this record?".
        sa.Index(
            "ix_maintenance_event_hooks_entity",
            "cmms_system_id",
            "entity_type",
            "entity_external_id",
            "occurred_at",
        ),
        # Polling: "open events oldest first". Partial on PostgreSQL so processed rows, the
        # vast majority over time, cost nothing; plain on SQLite, whose planner uses a partial
        # index only when the query repeats the index's WHERE clause word for word.
        sa.Index(
            "ix_maintenance_event_hooks_processing_status_created_at",
            "processing_status",
            "created_at",
            postgresql_where=sa.text(_in_list("processing_status", OPEN_PROCESSING_STATUSES)),
        ),
        sa.Index(
            "ix_maintenance_event_hooks_cmms_system_id_created_at",
            "cmms_system_id",
            "created_at",
        ),
    )


class SyncConfiguration(Base):
    """A declared sync between two systems, kept in the database so runs can find and toggle it."""

    __tablename__ = "sync_configurations"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(sa.String(200), unique=True)
    sync_type: Mapped[str] = mapped_column(sa.String(16))
    source_system: Mapped[str] = mapped_column(sa.String(100))
    target_system: Mapped[str] = mapped_column(sa.String(100))
    configuration: Mapped[dict[str, Any]] = mapped_column(default=dict)
    is_active: Mapped[bool] = mapped_column(default=True, server_default=sa.true())
    created_at: Mapped[datetime] = mapped_column(default=utcnow, server_default=NOW)
    updated_at: Mapped[datetime] = mapped_column(
        default=utcnow, onupdate=utcnow, server_default=NOW
    )

    __table_args__ = (sa.CheckConstraint(_in_list("sync_type", SYNC_TYPES), name="sync_type"),)
