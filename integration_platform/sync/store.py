"""Reading and writing the sync tables of the state database (``state/sync.py``).

Bulk paths use SQLAlchemy Core with dialect upserts (``ON CONFLICT``), which SQLite and
PostgreSQL both understand; a run's outcome (cross-references, bases, audit, conflict
queue, run counts) is written in one transaction so the state never shows half a run.
"""

from __future__ import annotations

import zlib
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.orm import Session

from integration_platform.state.models import utcnow
from integration_platform.state.sync import (
    SyncBase,
    SyncConflict,
    SyncJournalEntry,
    SyncPendingKey,
    SyncRun,
    SyncXref,
)
from integration_platform.sync.locks import LockHeld, exclusive_file_lock, sync_lock_path
from integration_platform.sync.values import Kind, frame_from_json

CHUNK = 5_000
LOCK_NAMESPACE = 0x53594E43  # "SYNC": keeps sync locks apart from other advisory locks
# A pending write-back is one row per sync, record and system; its upsert replaces every
# other column but the row's id and creation time.
PENDING_KEY_KEYS = ("sync_name", "platform_id", "system")
PENDING_KEY_UPDATES = tuple(
    column.name
    for column in SyncPendingKey.__table__.columns
    if column.name not in {"id", "created_at", *PENDING_KEY_KEYS}
)


class StateLike(Protocol):
    """What the store needs of ``StateDatabase``: an engine and committing sessions."""

    def engine(self) -> sa.Engine: ...

    def session(self) -> Any: ...


@dataclass(frozen=True)
class ReadHistory:
    """What the succeeded runs of a sync read: the newest modified time per system
    (``{system: ISO-8601}``), the incremental runs since the last full read, and its start."""

    high_water: dict[str, str]
    incremental_runs: int
    last_full_at: datetime | None


class SyncBusy(RuntimeError):
    """Another run of the same sync holds its lock."""


class SyncStore:
    """The sync tables, for one state database."""

    def __init__(self, state: StateLike) -> None:
        self.state = state

    @contextmanager
    def session(self) -> Iterator[Session]:
        with self.state.session() as session:
            yield session

    # -- lock ---------------------------------------------------------------------------------

    @contextmanager
    def run_lock(self, sync_name: str) -> Iterator[None]:
        """Hold the sync's lock for a run; a second run raises :class:`SyncBusy` at once.

        PostgreSQL: a session advisory lock, released by the server if the process dies.
        SQLite: an exclusive file lock next to the database file (``sync/locks.py``),
        released by the operating system if the process dies.
        """
        engine = self.state.engine()
        if engine.dialect.name == "sqlite":
            with self._file_lock(engine, sync_name):
                yield
            return
        if engine.dialect.name != "postgresql":
            yield
            return
        key = zlib.crc32(sync_name.encode())
        with engine.connect() as connection:
            got = connection.execute(
                sa.text("SELECT pg_try_advisory_lock(:ns, :key)"),
                {"ns": LOCK_NAMESPACE, "key": key - (1 << 31)},
            ).scalar()
            connection.commit()
            if not got:
                raise SyncBusy(
                    f"sync {sync_name!r} is already running in another process; wait for it "
                    "to finish (runs of one sync are serialised)"
                )
            try:
                yield
            finally:
                connection.execute(
                    sa.text("SELECT pg_advisory_unlock(:ns, :key)"),
                    {"ns": LOCK_NAMESPACE, "key": key - (1 << 31)},
                )
                connection.commit()

    @contextmanager
    def _file_lock(self, engine: sa.Engine, sync_name: str) -> Iterator[None]:
        """SQLite's counterpart of the advisory lock; why a file lock: ``sync/locks.py``."""
        database = engine.url.database
        if not database or database == ":memory:":
            yield  # a database no other process can open needs no lock between processes
            return
        path = sync_lock_path(database, sync_name)
        try:
            with exclusive_file_lock(path):
                yield
        except LockHeld as held:
            raise SyncBusy(
                f"sync {sync_name!r} is already running ({held.holder}; lock file {path}); "
                "wait for it to finish (runs of one sync are serialised)"
            ) from None

    # -- loading ------------------------------------------------------------------------------

    def xrefs(self, entity: str, systems: Sequence[str]) -> pd.DataFrame:
        table = SyncXref.__table__
        query = sa.select(
            table.c.system,
            table.c.external_id,
            table.c.platform_id,
            table.c.retired,
            table.c.version_token,
        ).where(table.c.entity == entity, table.c.system.in_(list(systems)))
        with self.state.engine().connect() as connection:
            rows = connection.execute(query).fetchall()
        return pd.DataFrame(
            rows, columns=["system", "external_id", "platform_id", "retired", "version_token"]
        )

    def linked_xrefs(
        self,
        entity: str,
        *,
        external_ids: Mapping[str, Collection[str]] | None = None,
        platform_ids: Collection[str] | None = None,
        systems: Sequence[str] = (),
    ) -> pd.DataFrame:
        """The cross-references of some records only (an incremental run): those of the
        given ``{system: external ids}`` and those of the given platform ids in ``systems``;
        the columns of :meth:`xrefs`."""
        table = SyncXref.__table__
        columns = ["system", "external_id", "platform_id", "retired", "version_token"]
        query = sa.select(*(table.c[c] for c in columns)).where(table.c.entity == entity)
        rows: list[Any] = []
        with self.state.engine().connect() as connection:
            for system, ids in (external_ids or {}).items():
                for chunk in _chunks(sorted(set(ids))):
                    rows += connection.execute(
                        query.where(table.c.system == system, table.c.external_id.in_(chunk))
                    ).fetchall()
            for chunk in _chunks(sorted(set(platform_ids or ()))):
                rows += connection.execute(
                    query.where(table.c.system.in_(list(systems)), table.c.platform_id.in_(chunk))
                ).fetchall()
        frame = pd.DataFrame(rows, columns=columns)
        return frame.drop_duplicates(["system", "external_id"], ignore_index=True)

    def bases(
        self,
        sync_name: str,
        system: str,
        kinds: Mapping[str, Kind],
        *,
        platform_ids: Collection[str] | None = None,
    ) -> pd.DataFrame:
        """The sync's bases in ``system`` (only of ``platform_ids`` when given), indexed by
        platform id: canonical fields (normalized), ``content_hash``, ``version_token`` and
        ``external_id``."""
        table = SyncBase.__table__
        query = sa.select(
            table.c.platform_id,
            table.c.external_id,
            table.c.field_values,
            table.c.content_hash,
            table.c.version_token,
        ).where(table.c.sync_name == sync_name, table.c.system == system)
        with self.state.engine().connect() as connection:
            if platform_ids is None:
                rows = connection.execute(query).fetchall()
            else:
                rows = []
                for chunk in _chunks(sorted(set(platform_ids))):
                    rows += connection.execute(
                        query.where(table.c.platform_id.in_(chunk))
                    ).fetchall()
        index = pd.Index([r[0] for r in rows], name="platform_id", dtype=object)
        frame = frame_from_json([r[2] or {} for r in rows], kinds, index)
        frame["external_id"] = [r[1] for r in rows]
        frame["content_hash"] = pd.Series([r[3] for r in rows], index=index, dtype=object)
        frame["version_token"] = pd.Series([r[4] for r in rows], index=index, dtype=object)
        return frame

    def queue(self, sync_name: str) -> pd.DataFrame:
        """Open conflicts and those a person resolved that are not applied yet."""
        table = SyncConflict.__table__
        columns = ["id", "platform_id", "field", "status", "base_value", "resolved_value"]
        columns += ["resolved_by", "note", "resolution"]
        query = sa.select(*(table.c[c] for c in columns)).where(
            table.c.sync_name == sync_name, table.c.status.in_(["open", "resolved"])
        )
        with self.state.engine().connect() as connection:
            rows = connection.execute(query.order_by(table.c.id)).fetchall()
        return pd.DataFrame(rows, columns=columns)

    # -- runs ---------------------------------------------------------------------------------

    def start_run(self, run_id: str, sync_name: str, entity: str, triggered_by: str | None) -> None:
        with self.session() as session:
            session.add(
                SyncRun(
                    run_id=run_id, sync_name=sync_name, entity=entity, triggered_by=triggered_by
                )
            )

    def finish_run(
        self, run_id: str, *, status: str, cause: str | None = None, **counts: Any
    ) -> None:
        with self.session() as session:
            _finish(session, run_id, status=status, cause=cause, counts=counts)

    def read_history(self, sync_name: str) -> ReadHistory | None:
        """Where the next incremental read starts and how long ago the last full read was,
        from the sync's succeeded runs; None before the first one."""
        table = SyncRun.__table__
        succeeded = sa.and_(table.c.sync_name == sync_name, table.c.status == "succeeded")
        with self.state.engine().connect() as connection:
            last = connection.execute(
                sa.select(table.c.high_water).where(succeeded).order_by(table.c.id.desc()).limit(1)
            ).first()
            if last is None:
                return None
            full = connection.execute(
                sa.select(table.c.id, table.c.started_at)
                .where(succeeded, sa.func.coalesce(table.c.read_mode, "full") == "full")
                .order_by(table.c.id.desc())
                .limit(1)
            ).first()
            since_full = connection.execute(
                sa.select(sa.func.count()).where(
                    succeeded,
                    table.c.read_mode == "incremental",
                    table.c.id > (full[0] if full else 0),
                )
            ).scalar()
        return ReadHistory(
            high_water=dict(last[0] or {}),
            incremental_runs=int(since_full or 0),
            last_full_at=None if full is None else full[1],
        )

    def unfinished_runs(self, sync_name: str) -> list[str]:
        """Runs of the sync still marked running: their process ended without finishing."""
        table = SyncRun.__table__
        with self.state.engine().connect() as connection:
            rows = connection.execute(
                sa.select(table.c.run_id)
                .where(table.c.sync_name == sync_name, table.c.status == "running")
                .order_by(table.c.id)
            ).fetchall()
        return [r[0] for r in rows]

    # -- journal ------------------------------------------------------------------------------

    def journal(self, rows: Sequence[Mapping[str, Any]]) -> list[int]:
        """Record before-images as ``pending`` and commit them, before any write is made."""
        if not rows:
            return []
        with self.session() as session:
            entries = [SyncJournalEntry(**row) for row in rows]
            session.add_all(entries)
            session.flush()
            return [entry.id for entry in entries]

    def mark(self, entry_id: int, state: str, **values: Any) -> None:
        table = SyncJournalEntry.__table__
        with self.session() as session:
            session.execute(
                sa.update(table)
                .where(table.c.id == entry_id)
                .values(state=state, updated_at=utcnow(), **values)
            )

    def journal_entries(self, run_id: str, states: Iterable[str]) -> list[SyncJournalEntry]:
        with self.session() as session:
            return list(
                session.scalars(
                    sa.select(SyncJournalEntry)
                    .where(
                        SyncJournalEntry.run_id == run_id,
                        SyncJournalEntry.state.in_(list(states)),
                    )
                    .order_by(SyncJournalEntry.seq.desc())
                )
            )

    def retire(self, entity: str, system: str, external_id: str, platform_id: str) -> None:
        """Mark a record the sync created and took back (kept, cancelled): ignored from now."""
        with self.session() as session:
            _upsert(
                session,
                SyncXref.__table__,
                [
                    {
                        "entity": entity,
                        "platform_id": f"retired:{platform_id}",
                        "system": system,
                        "external_id": external_id,
                        "retired": True,
                        "updated_at": utcnow(),
                    }
                ],
                keys=["entity", "system", "external_id"],
                update=["retired", "updated_at"],
            )

    # -- numbers waiting to be written back ------------------------------------------------------

    def pending_keys(self, sync_name: str) -> list[dict[str, Any]]:
        """The sync's write-backs of assigned numbers still to be made, oldest first."""
        table = SyncPendingKey.__table__
        query = (
            sa.select(table)
            .where(table.c.sync_name == sync_name, table.c.status == "pending")
            .order_by(table.c.id)
        )
        with self.state.engine().connect() as connection:
            return [dict(row) for row in connection.execute(query).mappings()]

    def settle_pending_key(
        self,
        key_id: int,
        *,
        status: str,
        run_id: str,
        attempted: bool,
        error: str | None = None,
        note: str | None = None,
        audit: Sequence[Mapping[str, Any]] = (),
    ) -> None:
        """Record what a run did with a pending write-back (with its audit line when it
        wrote the number), in one transaction."""
        from integration_platform.state.sync import SyncAuditEntry

        table = SyncPendingKey.__table__
        values: dict[str, Any] = {
            "status": status,
            "last_error": error,
            "note": note,
            "updated_at": utcnow(),
        }
        if attempted:
            values["attempts"] = table.c.attempts + 1
        if status != "pending":
            values["applied_run_id"] = run_id
        with self.session() as session:
            session.execute(sa.update(table).where(table.c.id == key_id).values(**values))
            if audit:
                session.execute(sa.insert(SyncAuditEntry.__table__), [dict(a) for a in audit])

    # -- a run's outcome, in one transaction ----------------------------------------------------

    def commit_outcome(
        self,
        run_id: str,
        *,
        xrefs: Sequence[Mapping[str, Any]],
        bases: Sequence[Mapping[str, Any]],
        new_conflicts: Sequence[Mapping[str, Any]],
        conflict_updates: Sequence[Mapping[str, Any]],
        audit: Sequence[Mapping[str, Any]],
        status: str,
        cause: str | None,
        counts: Mapping[str, Any],
        pending_keys: Sequence[Mapping[str, Any]] = (),
    ) -> list[int]:
        """Write everything a run decided; returns the ids of the new conflicts in order."""
        from integration_platform.state.sync import SyncAuditEntry

        with self.session() as session:
            _upsert(
                session,
                SyncXref.__table__,
                xrefs,
                keys=["entity", "system", "external_id"],
                update=["platform_id", "version_token", "retired", "updated_at"],
            )
            _upsert(
                session,
                SyncBase.__table__,
                bases,
                keys=["sync_name", "platform_id", "system"],
                update=[
                    "external_id",
                    "field_values",
                    "content_hash",
                    "version_token",
                    "run_id",
                    "synced_at",
                ],
            )
            conflicts = [SyncConflict(**row) for row in new_conflicts]
            session.add_all(conflicts)
            session.flush()
            ids = [c.id for c in conflicts]
            table = SyncConflict.__table__
            for row in conflict_updates:
                values = {k: v for k, v in row.items() if k != "id"}
                session.execute(sa.update(table).where(table.c.id == row["id"]).values(**values))
            entries = []
            for row in audit:
                entry = dict(row)
                ref = entry.pop("conflict_ref", None)
                if ref is not None and entry.get("conflict_id") is None:
                    entry["conflict_id"] = ids[ref]
                entries.append(entry)
            for chunk in _chunks(entries):
                session.execute(sa.insert(SyncAuditEntry.__table__), chunk)
            _upsert(
                session,
                SyncPendingKey.__table__,
                pending_keys,
                keys=list(PENDING_KEY_KEYS),
                update=list(PENDING_KEY_UPDATES),
            )
            _finish(session, run_id, status=status, cause=cause, counts=counts)
            return ids


def _finish(
    session: Session, run_id: str, *, status: str, cause: str | None, counts: Mapping[str, Any]
) -> None:
    """Close the run row: status, cause, counts (and read mode and high-water marks)."""
    table = SyncRun.__table__
    session.execute(
        sa.update(table)
        .where(table.c.run_id == run_id)
        .values(status=status, cause=cause, finished_at=utcnow(), **counts)
    )


def _chunks(rows: Sequence[Mapping[str, Any]]) -> Iterator[list[Mapping[str, Any]]]:
    for start in range(0, len(rows), CHUNK):
        yield list(rows[start : start + CHUNK])


def _upsert(
    session: Session,
    table: sa.Table,
    rows: Sequence[Mapping[str, Any]],
    *,
    keys: list[str],
    update: list[str],
) -> None:
    if not rows:
        return
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    for chunk in _chunks(rows):
        columns = list(chunk[0])
        statement = insert(table)
        statement = statement.on_conflict_do_update(
            index_elements=keys,
            set_={name: statement.excluded[name] for name in update if name in columns},
        )
        session.execute(statement, chunk)
