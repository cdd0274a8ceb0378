"""A durable local spool between the collectors and the Delta writer.

Why SQLite (WAL, ``synchronous=FULL``) rather than append-only segment files: one append of
many readings is one transaction, made durable by a single fsync of the write-ahead log before
:meth:`Spool.append` returns, so a collector may acknowledge upstream (MQTT PUBACK) right after;
claiming a batch, remembering its sequence number and deleting it once written are each one
atomic transaction, with no segment index, torn-tail repair or compaction code of our own; and
a crash at any instant leaves either the old or the new state. Python ships ``sqlite3``, so the
spool needs nothing installed.

The write protocol that makes the lake idempotent:

1. :meth:`append` stores readings (and drops keys seen recently: QoS 1 redeliveries);
2. :meth:`claim` moves the oldest unclaimed readings into a batch with the next sequence
   number, durably, before anything is written to the lake; an open batch is returned again
   (same rows, same number) until it is committed, so a retry after a crash writes exactly the
   batch that may already be in the lake;
3. the writer commits the batch to Delta with ``Transaction(app_id, seq)``, skipping it when
   the table's ``transaction_version(app_id)`` already reached ``seq``;
4. :meth:`commit` deletes the batch.

One spool belongs to one writer app id (stored in the file); batches are written strictly in
sequence order, one at a time.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from integration_platform.streams.readings import Reading

DEFAULT_MAX_BYTES = 1 << 30  # 1 GiB of live readings
DEFAULT_DEDUP_WINDOW_S = 600.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS readings (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    batch_id INTEGER,
    body TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS readings_batch ON readings (batch_id, id);
CREATE TABLE IF NOT EXISTS batches (
    batch_id INTEGER PRIMARY KEY AUTOINCREMENT,
    seq INTEGER NOT NULL UNIQUE,
    created_at REAL NOT NULL,
    row_count INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS recent (
    key TEXT PRIMARY KEY,
    seen_at REAL NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS recent_seen ON recent (seen_at);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


class SpoolError(RuntimeError):
    """The spool cannot be used (wrong owner, unreadable file)."""


class SpoolFullError(SpoolError):
    """Appending would exceed the spool's size limit; nothing of the append was stored."""


@dataclass(frozen=True)
class AppendResult:
    accepted: int
    duplicates: int


@dataclass(frozen=True)
class Batch:
    """Readings claimed for one lake commit; ``seq`` is its Delta transaction version."""

    batch_id: int
    seq: int
    readings: list[Reading]
    created_at: float


@dataclass(frozen=True)
class SpoolStats:
    pending_rows: int
    open_batch_rows: int
    live_bytes: int
    max_bytes: int
    last_seq: int


def spool_path(data_dir: Path, app_id: str) -> Path:
    """``<data dir>/spool/<app id>.sqlite`` (app id made file-name safe)."""
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in app_id)
    return data_dir / "spool" / f"{safe}.sqlite"


class Spool:
    """SQLite-backed FIFO of readings; thread-safe (one connection behind a lock)."""

    def __init__(
        self,
        path: Path,
        app_id: str,
        *,
        max_bytes: int = DEFAULT_MAX_BYTES,
        dedup_window_s: float = DEFAULT_DEDUP_WINDOW_S,
    ) -> None:
        self.path = Path(path)
        self.app_id = app_id
        self.max_bytes = max_bytes
        self.dedup_window_s = dedup_window_s
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        try:
            self._db = sqlite3.connect(
                self.path, isolation_level=None, check_same_thread=False, timeout=30
            )
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")  # fsync the WAL on every commit
            self._db.executescript(_SCHEMA)
        except sqlite3.DatabaseError as exc:
            raise SpoolError(f"spool {self.path}: cannot open ({exc})") from exc
        self._page_size = int(self._db.execute("PRAGMA page_size").fetchone()[0])
        with self._transaction():
            row = self._db.execute("SELECT value FROM meta WHERE key='app_id'").fetchone()
            if row is None:
                self._db.execute("INSERT INTO meta VALUES ('app_id', ?)", (app_id,))
            elif row[0] != app_id:
                raise SpoolError(
                    f"spool {self.path} belongs to writer app id {row[0]!r}, not {app_id!r}; "
                    "use that app id, or another data dir, so its batches are not lost"
                )
        self._pending = self._count_pending()
        self._appends = 0

    # -- writing side -------------------------------------------------------------------

    def append(self, readings: Sequence[Reading]) -> AppendResult:
        """Store ``readings`` durably (fsync) and return how many were new.

        Readings whose key (device, sensor, ts) was appended within the de-duplication window
        are dropped as duplicates. Raises :class:`SpoolFullError`, storing nothing, when the
        spool would grow past ``max_bytes``.
        """
        if not readings:
            return AppendResult(0, 0)
        bodies = [(r.key(), r.to_json()) for r in readings]
        incoming = sum(len(body) + len(key) + 32 for key, body in bodies)
        now = time.time()
        with self._changed:
            live = self._live_bytes()
            if live + incoming > self.max_bytes:
                raise SpoolFullError(
                    f"spool {self.path} is full: {live / 1e6:.1f} MB of "
                    f"{self.max_bytes / 1e6:.1f} MB used by {self._pending} readings the lake "
                    "has not accepted yet; fix the lake (see the writer's errors in the log) or "
                    "raise the limit (--spool-max-mb)"
                )
            with self._transaction():
                # Set-wise (a few statements per append, not two per reading): keys seen
                # before, then the new ones; within the append the first arrival wins.
                seen = self._known_keys([key for key, _ in bodies])
                fresh = []
                for key, body in bodies:
                    if key not in seen:
                        seen.add(key)
                        fresh.append((key, body))
                self._db.executemany(
                    "INSERT INTO recent (key, seen_at) VALUES (?, ?)",
                    [(key, now) for key, _ in fresh],
                )
                self._db.executemany(
                    "INSERT INTO readings (body) VALUES (?)", [(body,) for _, body in fresh]
                )
                self._appends += 1
                if self._appends % 200 == 1:
                    self._prune_recent()
            accepted = len(fresh)
            self._pending += accepted
            self._changed.notify_all()
        return AppendResult(accepted, len(bodies) - accepted)

    def _known_keys(self, keys: list[str]) -> set[str]:
        known: set[str] = set()
        for start in range(0, len(keys), 500):  # below SQLite's bound-parameter limit
            chunk = keys[start : start + 500]
            rows = self._db.execute(
                f"SELECT key FROM recent WHERE key IN ({','.join('?' * len(chunk))})", chunk
            )
            known.update(key for (key,) in rows)
        return known

    def _prune_recent(self) -> None:
        # Relative to the newest key, not the wall clock: after a long outage the keys of the
        # messages in flight at the time must still be there when the broker redelivers them.
        self._db.execute(
            "DELETE FROM recent WHERE seen_at < (SELECT MAX(seen_at) FROM recent) - ?",
            (self.dedup_window_s,),
        )

    # -- reading side (one writer) ------------------------------------------------------

    def claim(self, limit: int, *, seq_floor: int = 1) -> Batch | None:
        """The open batch if one exists, else a new one of up to ``limit`` oldest readings.

        A new batch gets ``max(last seq + 1, seq_floor)``; the writer passes the lake's
        transaction version + 1 as floor so a recreated spool never reuses a committed number.
        """
        with self._lock:
            row = self._db.execute(
                "SELECT batch_id, seq, created_at FROM batches ORDER BY seq LIMIT 1"
            ).fetchone()
            if row is None:
                with self._transaction():
                    ids = self._db.execute(
                        "SELECT id FROM readings WHERE batch_id IS NULL ORDER BY id LIMIT ?",
                        (limit,),
                    ).fetchall()
                    if not ids:
                        return None
                    seq = max(self._last_seq() + 1, seq_floor)
                    created = time.time()
                    cursor = self._db.execute(
                        "INSERT INTO batches (seq, created_at, row_count) VALUES (?, ?, ?)",
                        (seq, created, len(ids)),
                    )
                    batch_id = int(cursor.lastrowid or 0)
                    self._db.execute(
                        "UPDATE readings SET batch_id = ? WHERE batch_id IS NULL AND id <= ?",
                        (batch_id, ids[-1][0]),
                    )
                    self._db.execute(
                        "INSERT OR REPLACE INTO meta VALUES ('last_seq', ?)", (str(seq),)
                    )
                row = (batch_id, seq, created)
            bodies = self._db.execute(
                "SELECT body FROM readings WHERE batch_id = ? ORDER BY id", (row[0],)
            ).fetchall()
        return Batch(
            batch_id=int(row[0]),
            seq=int(row[1]),
            readings=[Reading.from_json(body) for (body,) in bodies],
            created_at=float(row[2]),
        )

    def commit(self, batch_id: int) -> None:
        """Forget a batch the lake has (its keys stay for de-duplication)."""
        with self._changed:
            with self._transaction():
                deleted = self._db.execute(
                    "DELETE FROM readings WHERE batch_id = ?", (batch_id,)
                ).rowcount
                self._db.execute("DELETE FROM batches WHERE batch_id = ?", (batch_id,))
            self._pending -= deleted
            self._changed.notify_all()

    def wait(self, min_rows: int, timeout: float) -> int:
        """Block until ``min_rows`` readings are pending or ``timeout`` passes; return pending."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while self._pending < min_rows:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._changed.wait(remaining)
            return self._pending

    def oldest_pending_age(self) -> float | None:
        """Seconds since the oldest pending reading's batch or append (for time flushes)."""
        with self._lock:
            row = self._db.execute("SELECT MIN(created_at) FROM batches").fetchone()
            if row and row[0] is not None:
                return time.time() - float(row[0])
            row = self._db.execute(
                "SELECT body FROM readings WHERE batch_id IS NULL ORDER BY id LIMIT 1"
            ).fetchone()
        if row is None:
            return None
        return time.time() - Reading.from_json(row[0]).ingested_at.timestamp()

    # -- bookkeeping --------------------------------------------------------------------

    @property
    def pending(self) -> int:
        return self._pending

    def stats(self) -> SpoolStats:
        with self._lock:
            open_rows = self._db.execute(
                "SELECT COALESCE(SUM(row_count), 0) FROM batches"
            ).fetchone()[0]
            return SpoolStats(
                pending_rows=self._pending,
                open_batch_rows=int(open_rows),
                live_bytes=self._live_bytes(),
                max_bytes=self.max_bytes,
                last_seq=self._last_seq(),
            )

    def pending_readings(self) -> list[Reading]:
        """Everything not yet committed to the lake, oldest first (for inspection and tests)."""
        with self._lock:
            rows = self._db.execute("SELECT body FROM readings ORDER BY id").fetchall()
        return [Reading.from_json(body) for (body,) in rows]

    def close(self) -> None:
        with self._lock:
            with contextlib.suppress(sqlite3.DatabaseError):
                self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            self._db.close()

    def __enter__(self) -> Spool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _count_pending(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM readings").fetchone()[0])

    def _last_seq(self) -> int:
        row = self._db.execute("SELECT value FROM meta WHERE key='last_seq'").fetchone()
        return int(row[0]) if row else 0

    def _live_bytes(self) -> int:
        pages = self._db.execute("PRAGMA page_count").fetchone()[0]
        free = self._db.execute("PRAGMA freelist_count").fetchone()[0]
        return int(pages - free) * self._page_size

    def _transaction(self) -> _Transaction:
        return _Transaction(self._db)


class _Transaction:
    """``BEGIN IMMEDIATE`` ... ``COMMIT`` (rollback on error) on an autocommit connection."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, *rest: object) -> None:
        self._db.execute("ROLLBACK" if exc_type else "COMMIT")
