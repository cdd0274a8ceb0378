"""Sync cross-references, base snapshots, conflicts, runs and audit trail.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-24

A frozen copy of ``state/sync.py`` at this revision (plain SQLAlchemy types, no model imports).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BIGINT_PK = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
NOW = sa.text("CURRENT_TIMESTAMP")


def _id() -> sa.Column:
    return sa.Column("id", BIGINT_PK, autoincrement=True, nullable=False)


def _at(name: str, *, default: bool = True) -> sa.Column:
    if default:
        return sa.Column(name, sa.DateTime(timezone=True), server_default=NOW, nullable=False)
    return sa.Column(name, sa.DateTime(timezone=True), nullable=True)


def _text(name: str, length: int, *, nullable: bool = False) -> sa.Column:
    return sa.Column(name, sa.String(length=length), nullable=nullable)


def _value(name: str) -> sa.Column:
    return sa.Column(name, sa.JSON(), nullable=True)


def upgrade() -> None:
    op.create_table(
        "sync_xrefs",
        _id(),
        _text("entity", 50),
        _text("platform_id", 64),
        _text("system", 100),
        _text("external_id", 400),
        _text("version_token", 200, nullable=True),
        sa.Column("retired", sa.Boolean(), server_default=sa.false(), nullable=False),
        _at("created_at"),
        _at("updated_at"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sync_xrefs")),
        sa.UniqueConstraint(
            "entity", "platform_id", "system", name=op.f("uq_sync_xrefs_entity_platform_id_system")
        ),
        sa.UniqueConstraint(
            "entity", "system", "external_id", name=op.f("uq_sync_xrefs_entity_system_external_id")
        ),
    )
    op.create_table(
        "sync_bases",
        _id(),
        _text("sync_name", 200),
        _text("entity", 50),
        _text("platform_id", 64),
        _text("system", 100),
        _text("external_id", 400),
        sa.Column("field_values", JSON, nullable=False),
        _text("content_hash", 32),
        _text("version_token", 200, nullable=True),
        _text("run_id", 64, nullable=True),
        _at("synced_at"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sync_bases")),
        sa.UniqueConstraint(
            "sync_name",
            "platform_id",
            "system",
            name=op.f("uq_sync_bases_sync_name_platform_id_system"),
        ),
    )
    op.create_table(
        "sync_runs",
        _id(),
        _text("run_id", 64),
        _text("sync_name", 200),
        _text("entity", 50),
        sa.Column("status", sa.String(length=16), server_default="running", nullable=False),
        _at("started_at"),
        _at("finished_at", default=False),
        *(
            sa.Column(name, sa.Integer(), server_default="0", nullable=False)
            for name in (
                "records_read",
                "records_changed",
                "conflicts",
                "auto_resolved",
                "applied",
                "rolled_back",
                "quarantined",
            )
        ),
        sa.Column("cause", sa.Text(), nullable=True),
        _text("triggered_by", 200, nullable=True),
        sa.CheckConstraint(
            "status IN ('running', 'succeeded', 'failed', 'rolled_back')",
            name=op.f("ck_sync_runs_status"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sync_runs")),
        sa.UniqueConstraint("run_id", name=op.f("uq_sync_runs_run_id")),
    )
    op.create_index("ix_sync_runs_sync_name_started_at", "sync_runs", ["sync_name", "started_at"])
    op.create_table(
        "sync_journal",
        _id(),
        _text("run_id", 64),
        _text("sync_name", 200),
        sa.Column("seq", sa.Integer(), nullable=False),
        _text("system", 100),
        _text("entity", 50),
        _text("platform_id", 64),
        _text("external_id", 400, nullable=True),
        _text("operation", 16),
        sa.Column("before_image", JSON, nullable=False),
        sa.Column("changes", JSON, nullable=False),
        sa.Column("state", sa.String(length=16), server_default="pending", nullable=False),
        _text("version_after", 200, nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        _at("created_at"),
        _at("updated_at"),
        sa.CheckConstraint(
            "state IN ('pending', 'applied', 'compensated', 'failed', 'skipped')",
            name=op.f("ck_sync_journal_state"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sync_journal")),
        sa.UniqueConstraint("run_id", "seq", name=op.f("uq_sync_journal_run_id_seq")),
    )
    op.create_table(
        "sync_conflicts",
        _id(),
        _text("sync_name", 200),
        _text("run_id", 64),
        _text("entity", 50),
        _text("platform_id", 64),
        _text("field", 100),
        _text("left_system", 100),
        _text("right_system", 100),
        _text("left_external_id", 400, nullable=True),
        _text("right_external_id", 400, nullable=True),
        _value("base_value"),
        _value("left_value"),
        _value("right_value"),
        _at("left_modified_at", default=False),
        _at("right_modified_at", default=False),
        _text("strategy", 100),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=16), server_default="open", nullable=False),
        _text("resolution", 16, nullable=True),
        _value("resolved_value"),
        _text("resolved_by", 200, nullable=True),
        _at("resolved_at", default=False),
        sa.Column("note", sa.Text(), nullable=True),
        _text("applied_run_id", 64, nullable=True),
        _at("created_at"),
        sa.CheckConstraint(
            "status IN ('open', 'resolved', 'applied', 'superseded')",
            name=op.f("ck_sync_conflicts_status"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sync_conflicts")),
    )
    op.create_index("ix_sync_conflicts_sync_name_status", "sync_conflicts", ["sync_name", "status"])
    op.create_index(
        "ix_sync_conflicts_entity_platform_id", "sync_conflicts", ["entity", "platform_id"]
    )
    op.create_table(
        "sync_audit",
        _id(),
        _text("run_id", 64),
        _text("sync_name", 200),
        _text("entity", 50),
        _text("platform_id", 64),
        _text("external_id", 400, nullable=True),
        _text("operation", 16),
        _text("field", 100),
        _value("old_value"),
        _value("new_value"),
        _text("source_system", 100),
        _text("target_system", 100),
        _text("strategy", 100),
        _text("resolved_by", 200, nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("conflict_id", sa.BigInteger(), nullable=True),
        _at("applied_at"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sync_audit")),
    )
    op.create_index("ix_sync_audit_entity_platform_id", "sync_audit", ["entity", "platform_id"])
    op.create_index("ix_sync_audit_run_id", "sync_audit", ["run_id"])


def downgrade() -> None:
    op.drop_index("ix_sync_audit_run_id", table_name="sync_audit")
    op.drop_index("ix_sync_audit_entity_platform_id", table_name="sync_audit")
    op.drop_table("sync_audit")
    op.drop_index("ix_sync_conflicts_entity_platform_id", table_name="sync_conflicts")
    op.drop_index("ix_sync_conflicts_sync_name_status", table_name="sync_conflicts")
    op.drop_table("sync_conflicts")
    op.drop_table("sync_journal")
    op.drop_index("ix_sync_runs_sync_name_started_at", table_name="sync_runs")
    op.drop_table("sync_runs")
    op.drop_table("sync_bases")
    op.drop_table("sync_xrefs")
