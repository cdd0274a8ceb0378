"""A durable local spool between the collectors and the Delta writer.

Why SQLite (WAL, ``synchronous=FULL``) rather than append-only segment files: one append of
many readings is one transaction, made durable by a single fsync of the write-ahead log before
:meth:`Spool.append` returns, so a collector may acknowledge upstream (MQTT PUBACK) right after;
claiming a batch, remembering its sequence number and deleting it once written are each one
atomic transaction, with no segment index, torn-tail repair or compaction code of our own; and
a crash at any instant leaves either the old or the new state. Python ships ``sqlite3``, so the
spool needs nothing installed.

Storage (format 3): one ``groups`` row per append, holding its readings as one Arrow IPC
stream (a BLOB; a handful of readings collected one by one stays a JSON array of columns, as
in format 2, which is cheaper to write: :meth:`ReadingColumns.encode`), and one
``recent_keys`` row per append holding the de-duplication keys of those readings in the same
form. Nothing on the hot path is one SQLite row or one Python object per reading; the keys
live in memory (a set of timestamps per device and sensor, rebuilt from ``recent_keys`` on
open) and on disk one row per append. Rows are decoded by their type, so a format 2 spool is
read as it is; a format 1 spool (one row per reading, one per key) is migrated on open, in one
transaction.

The write protocol that makes the lake idempotent:

1. :meth:`append` stores readings (and drops keys seen recently: QoS 1 redeliveries);
2. :meth:`claim` moves the oldest unclaimed groups into a batch with the next sequence
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
import json
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from integration_platform.streams.readings import (
    KEY_NAMES,
    KEY_SEPARATOR,
    Reading,
    ReadingColumns,
    arrow_to_list,
    decode_table,
    encode_table,
    pair_runs,
    to_us,
)

DEFAULT_MAX_BYTES = 1 << 30  # 1 GiB of live readings
DEFAULT_DEDUP_WINDOW_S = 600.0
# Keys kept for de-duplication at most (about 60 bytes of memory each). Redeliveries are the
# messages in flight when a connection or the collector died: the broker's in-flight window
# (messages) times the readings per message, far below this.
DEFAULT_DEDUP_MAX_KEYS = 1_000_000
FORMAT = "3"
_MIGRATE_CHUNK = 5000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS groups (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    batch_id INTEGER,
    row_count INTEGER NOT NULL,
    created_at REAL NOT NULL,
    body BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS groups_batch ON groups (batch_id, id);
CREATE TABLE IF NOT EXISTS batches (
    batch_id INTEGER PRIMARY KEY AUTOINCREMENT,
    seq INTEGER NOT NULL UNIQUE,
    created_at REAL NOT NULL,
    row_count INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS recent_keys (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    seen_at REAL NOT NULL,
    key_count INTEGER NOT NULL,
    body BLOB NOT NULL
);
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
    columns: ReadingColumns
    created_at: float

    @property
    def readings(self) -> list[Reading]:
        """The batch as :class:`Reading` objects (inspection and tests; the writer uses
        :attr:`columns`)."""
        return self.columns.readings()

    def __len__(self) -> int:
        return len(self.columns)


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


# A key run: the timestamps (us) of one (device, sensor) appended together.
_Run = tuple[tuple[str, str], list[int]]


class _RecentKeys:
    """(device, sensor, ts) keys of the recent appends, in memory; the spool persists them.

    A set of timestamps per (device, sensor), and a log of appends (id, seen_at, runs) in
    order, so the oldest are forgotten first: those older than ``window_s`` before the newest
    append, and any beyond ``max_keys``.
    """

    def __init__(self, window_s: float, max_keys: int) -> None:
        self.window_s = window_s
        self.max_keys = max_keys
        self.sets: dict[tuple[str, str], set[int]] = {}
        self.log: deque[tuple[int, float, list[_Run]]] = deque()
        self.count = 0

    def fresh(self, columns: ReadingColumns) -> tuple[list[int] | None, list[_Run]]:
        """Positions of the readings not seen before (``None``: all of them; first arrival
        wins within the append), and their keys as runs; the keys are added (undo with
        :meth:`forget_runs`).

        One set operation per run of a sensor's readings (a message, usually): only a run
        that holds a duplicate is gone through reading by reading.
        """
        sets = self.sets
        stamps_all = columns.ts_us
        positions: list[int] | None = None  # made when the first duplicate shows up
        runs: list[_Run] = []
        for pair, start, stop in columns.runs():
            stamps = stamps_all[start:stop]
            bucket = sets.get(pair)
            if bucket is None:
                bucket = sets[pair] = set()
            size = len(bucket)
            if bucket.isdisjoint(stamps):
                bucket.update(stamps)
                if len(bucket) - size == len(stamps):
                    runs.append((pair, stamps))
                    if positions is not None:
                        positions.extend(range(start, stop))
                    continue
                bucket.difference_update(stamps)  # repeats inside the run: undo, go slowly
            if positions is None:
                positions = list(range(start))
            kept: list[int] = []
            for i in range(start, stop):
                ts = stamps_all[i]
                if ts not in bucket:
                    bucket.add(ts)
                    kept.append(ts)
                    positions.append(i)
            if kept:
                runs.append((pair, kept))
        return positions, runs

    def forget_runs(self, runs: list[_Run]) -> None:
        sets = self.sets
        for pair, stamps in runs:
            bucket = sets.get(pair)
            if bucket is not None:
                bucket.difference_update(stamps)
                if not bucket:
                    del sets[pair]

    def remember(self, key_id: int, seen_at: float, runs: list[_Run], count: int) -> None:
        self.log.append((key_id, seen_at, runs))
        self.count += count

    def add_runs(self, runs: list[_Run]) -> None:
        """Keys loaded from disk (no de-duplication: they are known already)."""
        sets = self.sets
        for pair, stamps in runs:
            sets.setdefault(pair, set()).update(stamps)

    def expire(self) -> int:
        """Forget the oldest appends beyond the window or the size; the last id forgotten."""
        forgotten = 0
        if not self.log:
            return forgotten
        horizon = self.log[-1][1] - self.window_s
        while self.log and (self.log[0][1] < horizon or self.count > self.max_keys):
            key_id, _, runs = self.log.popleft()
            self.count -= sum(len(stamps) for _, stamps in runs)
            self.forget_runs(runs)
            forgotten = key_id
        return forgotten


def _encode_group(columns: ReadingColumns, runs: list[_Run]) -> tuple[str | bytes, str | bytes]:
    """The bodies of a group and of its keys, in the same form: Arrow IPC (the keys as
    device, sensor and ts columns), or JSON (the keys as ``[device, sensor, [ts_us, ...]]``
    runs); :attr:`ReadingColumns.stored_as_arrow` decides."""
    if columns.stored_as_arrow:
        table = columns.to_arrow()
        return encode_table(table), encode_table(table.select(list(KEY_NAMES)))
    keys = json.dumps([[d, s, stamps] for (d, s), stamps in runs], separators=(",", ":"))
    return columns.encode(), keys


def _decode_runs(body: str | bytes) -> list[_Run]:
    """The keys of a ``recent_keys`` row: Arrow IPC or JSON runs (formats 3 and 2)."""
    if isinstance(body, str):
        return [((d, s), stamps) for d, s, stamps in json.loads(body)]
    table = decode_table(body)
    stamps = arrow_to_list(table.column("ts_us"))
    return [
        (pair, stamps[start:stop])
        for pair, start, stop in pair_runs(table.column("device_id"), table.column("sensor_id"))
    ]


class Spool:
    """SQLite-backed FIFO of reading groups; thread-safe (one connection behind a lock)."""

    def __init__(
        self,
        path: Path,
        app_id: str,
        *,
        max_bytes: int = DEFAULT_MAX_BYTES,
        dedup_window_s: float = DEFAULT_DEDUP_WINDOW_S,
        dedup_max_keys: int = DEFAULT_DEDUP_MAX_KEYS,
    ) -> None:
        self.path = Path(path)
        self.app_id = app_id
        self.max_bytes = max_bytes
        self.dedup_window_s = dedup_window_s
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._recent = _RecentKeys(dedup_window_s, dedup_max_keys)
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
            self._migrate()
        self._load_recent()
        self._pending = self._count_pending()
        self._last_append = time.monotonic()

    # -- writing side -------------------------------------------------------------------

    def append(self, readings: Sequence[Reading]) -> AppendResult:
        """Store ``readings`` durably (fsync) and return how many were new.

        Readings whose key (device, sensor, ts) was appended within the de-duplication window
        are dropped as duplicates. Raises :class:`SpoolFullError`, storing nothing, when the
        spool would grow past ``max_bytes``.
        """
        if not readings:
            return AppendResult(0, 0)
        return self.append_columns(ReadingColumns.from_readings(readings))

    def append_columns(self, columns: ReadingColumns) -> AppendResult:
        """:meth:`append` for readings already in columns (one spool row for all of them)."""
        total = len(columns)
        if not total:
            return AppendResult(0, 0)
        now = time.time()
        recent = self._recent
        with self._changed:
            positions, runs = recent.fresh(columns)
            accepted = total if positions is None else len(positions)
            try:
                if accepted:
                    fresh = columns if positions is None else columns.take(positions)
                    body, keys_body = _encode_group(fresh, runs)
                    live = self._live_bytes()
                    if live + len(body) + len(keys_body) + 64 > self.max_bytes:
                        raise SpoolFullError(
                            f"spool {self.path} is full: {live / 1e6:.1f} MB of "
                            f"{self.max_bytes / 1e6:.1f} MB used by {self._pending} readings "
                            "the lake has not accepted yet; fix the lake (see the writer's "
                            "errors in the log) or raise the limit (--spool-max-mb)"
                        )
                    with self._transaction():
                        self._db.execute(
                            "INSERT INTO groups (row_count, created_at, body) VALUES (?, ?, ?)",
                            (accepted, now, body),
                        )
                        cursor = self._db.execute(
                            "INSERT INTO recent_keys (seen_at, key_count, body) VALUES (?, ?, ?)",
                            (now, accepted, keys_body),
                        )
                        recent.remember(int(cursor.lastrowid or 0), now, runs, accepted)
                        forgotten = recent.expire()
                        if forgotten:
                            self._db.execute("DELETE FROM recent_keys WHERE id <= ?", (forgotten,))
            except BaseException:
                recent.forget_runs(runs)  # nothing stored: the keys are not known either
                if recent.log and recent.log[-1][2] is runs:
                    recent.log.pop()
                    recent.count -= accepted
                raise
            self._pending += accepted
            self._last_append = time.monotonic()
            self._changed.notify_all()
        return AppendResult(accepted, total - accepted)

    # -- reading side (one writer) ------------------------------------------------------

    def claim(self, limit: int, *, seq_floor: int = 1) -> Batch | None:
        """The open batch if one exists, else a new one of the oldest groups, up to ``limit``
        readings (whole groups; a first group larger than ``limit`` is split).

        A new batch gets ``max(last seq + 1, seq_floor)``; the writer passes the lake's
        transaction version + 1 as floor so a recreated spool never reuses a committed number.
        """
        with self._lock:
            row = self._db.execute(
                "SELECT batch_id, seq, created_at FROM batches ORDER BY seq LIMIT 1"
            ).fetchone()
            if row is None:
                with self._transaction():
                    row = self._new_batch(max(1, limit), seq_floor)
                if row is None:
                    return None
            bodies = self._db.execute(
                "SELECT body FROM groups WHERE batch_id = ? ORDER BY id", (row[0],)
            ).fetchall()
        parts = [ReadingColumns.decode(body) for (body,) in bodies]
        return Batch(
            batch_id=int(row[0]),
            seq=int(row[1]),
            columns=ReadingColumns.concat(parts),
            created_at=float(row[2]),
        )

    def _new_batch(self, limit: int, seq_floor: int) -> tuple[int, int, float] | None:
        cursor = self._db.execute(
            "SELECT id, row_count FROM groups WHERE batch_id IS NULL ORDER BY id"
        )
        last_id, rows = None, 0
        for group_id, count in cursor:
            if last_id is not None and rows + count > limit:
                break
            last_id, rows = group_id, rows + count
            if rows >= limit:
                break
        cursor.close()
        if last_id is None:
            return None
        if rows > limit:  # one group larger than a batch: split it, the rest stays first
            last_id, rows = self._split_group(last_id, limit), limit
        seq = max(self._last_seq() + 1, seq_floor)
        created = time.time()
        cursor = self._db.execute(
            "INSERT INTO batches (seq, created_at, row_count) VALUES (?, ?, ?)",
            (seq, created, rows),
        )
        batch_id = int(cursor.lastrowid or 0)
        if last_id < 0:  # the split-off head
            self._db.execute("UPDATE groups SET batch_id = ? WHERE id = ?", (batch_id, -last_id))
        else:
            self._db.execute(
                "UPDATE groups SET batch_id = ? WHERE batch_id IS NULL AND id <= ?",
                (batch_id, last_id),
            )
        self._db.execute("INSERT OR REPLACE INTO meta VALUES ('last_seq', ?)", (str(seq),))
        return batch_id, seq, created

    def _split_group(self, group_id: int, limit: int) -> int:
        """Keep the tail of a group in place, store its first ``limit`` readings as a new
        group; returns the new group's id, negated."""
        body, created = self._db.execute(
            "SELECT body, created_at FROM groups WHERE id = ?", (group_id,)
        ).fetchone()
        columns = ReadingColumns.decode(body)
        head = columns.slice(0, limit)
        tail = columns.slice(limit, len(columns))
        self._db.execute(
            "UPDATE groups SET body = ?, row_count = ? WHERE id = ?",
            (tail.encode(), len(tail), group_id),
        )
        cursor = self._db.execute(
            "INSERT INTO groups (row_count, created_at, body) VALUES (?, ?, ?)",
            (len(head), created, head.encode()),
        )
        return -int(cursor.lastrowid or 0)

    def commit(self, batch_id: int) -> None:
        """Forget a batch the lake has (its keys stay for de-duplication)."""
        with self._changed:
            with self._transaction():
                deleted = self._db.execute(
                    "SELECT COALESCE(SUM(row_count), 0) FROM groups WHERE batch_id = ?",
                    (batch_id,),
                ).fetchone()[0]
                self._db.execute("DELETE FROM groups WHERE batch_id = ?", (batch_id,))
                self._db.execute("DELETE FROM batches WHERE batch_id = ?", (batch_id,))
            self._pending -= int(deleted)
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

    def idle_seconds(self) -> float:
        """Seconds since the last append that stored readings (or since the spool opened)."""
        return time.monotonic() - self._last_append

    def oldest_pending_age(self) -> float | None:
        """Seconds since the oldest pending reading's batch or append (for time flushes)."""
        with self._lock:
            row = self._db.execute("SELECT MIN(created_at) FROM batches").fetchone()
            if not row or row[0] is None:
                row = self._db.execute(
                    "SELECT created_at FROM groups WHERE batch_id IS NULL ORDER BY id LIMIT 1"
                ).fetchone()
        if not row or row[0] is None:
            return None
        return time.time() - float(row[0])

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
            rows = self._db.execute(
                "SELECT body FROM groups ORDER BY batch_id IS NULL, batch_id, id"
            ).fetchall()
        return [r for (body,) in rows for r in ReadingColumns.decode(body).readings()]

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
        return int(self._db.execute("SELECT COALESCE(SUM(row_count), 0) FROM groups").fetchone()[0])

    def _last_seq(self) -> int:
        row = self._db.execute("SELECT value FROM meta WHERE key='last_seq'").fetchone()
        return int(row[0]) if row else 0

    def _live_bytes(self) -> int:
        pages = self._db.execute("PRAGMA page_count").fetchone()[0]
        free = self._db.execute("PRAGMA freelist_count").fetchone()[0]
        return int(pages - free) * self._page_size

    def _load_recent(self) -> None:
        """Rebuild the in-memory keys from ``recent_keys`` (oldest first), then expire."""
        recent = self._recent
        for key_id, seen_at, count, body in self._db.execute(
            "SELECT id, seen_at, key_count, body FROM recent_keys ORDER BY id"
        ):
            runs = _decode_runs(body)
            recent.add_runs(runs)
            recent.remember(int(key_id), float(seen_at), runs, int(count))
        forgotten = recent.expire()
        if forgotten:
            with self._transaction():
                self._db.execute("DELETE FROM recent_keys WHERE id <= ?", (forgotten,))

    def _migrate(self) -> None:
        """Format 1 (one ``readings`` row per reading, one ``recent`` row per key) to format
        3, inside the open transaction: open batches keep their id and sequence number,
        pending readings become groups in arrival order, keys become ``recent_keys`` rows.
        Format 2 needs nothing: its JSON rows are read as they are."""
        tables = {
            name
            for (name,) in self._db.execute("SELECT name FROM sqlite_master WHERE type='table'")
        }
        if "readings" in tables:
            batch_ids = [
                batch_id
                for (batch_id,) in self._db.execute("SELECT batch_id FROM batches ORDER BY seq")
            ]
            for batch_id in batch_ids:
                created = self._db.execute(
                    "SELECT created_at FROM batches WHERE batch_id = ?", (batch_id,)
                ).fetchone()[0]
                bodies = self._db.execute(
                    "SELECT body FROM readings WHERE batch_id = ? ORDER BY id", (batch_id,)
                ).fetchall()
                self._store_v1_group([b for (b,) in bodies], batch_id, created)
            bodies = self._db.execute(
                "SELECT body FROM readings WHERE batch_id IS NULL ORDER BY id"
            ).fetchall()
            for start in range(0, len(bodies), _MIGRATE_CHUNK):
                chunk = [b for (b,) in bodies[start : start + _MIGRATE_CHUNK]]
                self._store_v1_group(chunk, None, None)
            self._db.execute("DROP TABLE readings")
        if "recent" in tables:
            keys = self._db.execute("SELECT key, seen_at FROM recent ORDER BY seen_at").fetchall()
            for start in range(0, len(keys), _MIGRATE_CHUNK):
                chunk = keys[start : start + _MIGRATE_CHUNK]
                self._db.execute(
                    "INSERT INTO recent_keys (seen_at, key_count, body) VALUES (?, ?, ?)",
                    (float(chunk[-1][1]), len(chunk), _v1_keys_body([k for k, _ in chunk])),
                )
            self._db.execute("DROP TABLE recent")
        self._db.execute("INSERT OR REPLACE INTO meta VALUES ('format', ?)", (FORMAT,))

    def _store_v1_group(self, bodies: list[str], batch_id: int | None, created: float | None):
        if not bodies:
            return
        columns = ReadingColumns.from_readings(Reading.from_json(body) for body in bodies)
        if created is None:  # pending: as old as its oldest reading
            created = columns.ingested_us[0] / 1e6
        self._db.execute(
            "INSERT INTO groups (batch_id, row_count, created_at, body) VALUES (?, ?, ?, ?)",
            (batch_id, len(columns), created, columns.encode()),
        )

    def _transaction(self) -> _Transaction:
        return _Transaction(self._db)


def _v1_keys_body(keys: list[str]) -> bytes:
    """Format 1 keys (``device<US>sensor<US>iso ts``) as a format 3 ``recent_keys`` body."""
    import pyarrow as pa

    parts = [key.split(KEY_SEPARATOR) for key in keys]
    table = pa.table(
        {
            "device_id": pa.array([d for d, _, _ in parts], pa.string()),
            "sensor_id": pa.array([s for _, s, _ in parts], pa.string()),
            "ts_us": pa.array([to_us(datetime.fromisoformat(t)) for _, _, t in parts], pa.int64()),
        }
    )
    return encode_table(table)


class _Transaction:
    """``BEGIN IMMEDIATE`` ... ``COMMIT`` (rollback on error) on an autocommit connection."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, *rest: object) -> None:
        self._db.execute("ROLLBACK" if exc_type else "COMMIT")
