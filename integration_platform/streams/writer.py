"""Micro-batched, idempotent Delta appends of spooled readings.

Each flush takes one batch from the spool (:meth:`Spool.claim`), checks it against the
canonical ``SensorReading`` rules, appends the valid rows to ``telemetry/sensor_readings``
(partitioned by ``date``) and the rejected ones to ``quarantine/sensor_readings``, then deletes
the batch from the spool.

deltalake does not enforce idempotent appends: committing the same ``Transaction(app_id,
version)`` twice commits twice. So before each write the writer reads
``DeltaTable.transaction_version(app_id)`` and skips a batch whose sequence number the table
already has; a crash between the lake commit and the spool commit therefore never duplicates.
This holds only with one writer per app id, which the spool (one per app id) arranges.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from integration_platform.streams.readings import KEY_NAMES, Reading, ReadingColumns, iso
from integration_platform.streams.spool import Batch, Spool

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

    from integration_platform.model.validation import ValidationResult

log = logging.getLogger(__name__)

TABLE_PARTS = ("telemetry", "sensor_readings")
QUARANTINE_PARTS = ("quarantine", "sensor_readings")
READING_COLUMNS = [
    "device_id",
    "sensor_id",
    "sensor_type",
    "ts",
    "value",
    "unit",
    "quality",
    "source_protocol",
    "ingested_at",
]
ENTITY = "sensor_reading"
# Pending readings from which the writer commits larger batches (up to ``max_batch_rows``).
BACKLOG_ROWS = 10_000
# A pause in the input this long ends a burst: its last readings are flushed at once.
BURST_IDLE_S = 0.05


def readings_schema() -> pa.Schema:
    import pyarrow as pa

    utc = pa.timestamp("us", tz="UTC")
    return pa.schema(
        [
            ("device_id", pa.string()),
            ("sensor_id", pa.string()),
            ("sensor_type", pa.string()),
            ("ts", utc),
            ("value", pa.float64()),
            ("unit", pa.string()),
            ("quality", pa.string()),
            ("source_protocol", pa.string()),
            ("ingested_at", utc),
            ("date", pa.date32()),
        ]
    )


def quarantine_schema() -> pa.Schema:
    import pyarrow as pa

    return pa.schema(
        [
            ("entity", pa.string()),
            ("source_system", pa.string()),
            ("external_id", pa.string()),
            ("source_file", pa.string()),
            ("source_line", pa.int64()),
            ("reject_field", pa.string()),
            ("reject_reason", pa.string()),
            ("record", pa.string()),
            ("run_id", pa.string()),
            ("quarantined_at", pa.timestamp("us", tz="UTC")),
        ]
    )


class LakeWriteError(RuntimeError):
    """The lake refused a write; the batch stays in the spool and is retried."""


@dataclass
class WriterStats:
    batches_written: int = 0
    batches_skipped: int = 0  # already in the lake (a retry after a crash)
    rows_written: int = 0
    rows_quarantined: int = 0
    duplicates_dropped: int = 0
    lake_errors: int = 0
    last_error: str | None = None
    last_flush_at: float | None = None


@dataclass(frozen=True)
class FlushResult:
    seq: int
    rows: int
    written: int
    quarantined: int
    duplicates: int
    skipped: bool


@dataclass
class _Split:
    valid: pd.DataFrame
    rejected: list[tuple[Reading, str, str]] = field(default_factory=list)
    duplicates: int = 0
    table: pa.Table | None = None  # the valid rows in the lake's schema, when already built


class DeltaWriter:
    """Moves batches from a spool to the lake; :meth:`run` is the flush loop (a thread)."""

    def __init__(
        self,
        spool: Spool,
        lake_root: str,
        *,
        flush_rows: int = 5000,
        flush_seconds: float = 2.0,
        max_batch_rows: int = 100_000,
        storage_options: dict[str, str] | None = None,
        after_lake_commit: Callable[[Batch], None] | None = None,
    ) -> None:
        if flush_rows < 1 or flush_seconds <= 0:
            raise ValueError("flush_rows must be >= 1 and flush_seconds > 0")
        self.spool = spool
        self.app_id = spool.app_id
        self.lake_root = lake_root.rstrip("/")
        self.flush_rows = flush_rows
        self.flush_seconds = flush_seconds
        self.max_batch_rows = max_batch_rows
        self.storage_options = storage_options
        self.stats = WriterStats()
        # Called between the lake commit and the spool commit: the crash window under test.
        self._after_lake_commit = after_lake_commit

    @property
    def table_uri(self) -> str:
        return "/".join([self.lake_root, *TABLE_PARTS])

    @property
    def quarantine_uri(self) -> str:
        return "/".join([self.lake_root, *QUARANTINE_PARTS])

    def warm_up(self) -> None:
        """Import and prepare what a flush needs (Arrow, pandas, the model's validation,
        deltalake: about half a second) before the first readings arrive, so the first batch
        after a start is not that much later than the others."""
        import deltalake  # noqa: F401 - imported for its start-up cost only

        from integration_platform.streams.readings import utc_now

        now = utc_now()
        probe = Reading("warm-up", "probe", "temperature", now, 0.0, None, "good", "mqtt", now)
        columns = ReadingColumns.decode(ReadingColumns.from_readings([probe]).encode())
        split_columns(columns)

    # -- one flush ----------------------------------------------------------------------

    def flush_once(self) -> FlushResult | None:
        """Write the oldest batch (or the open one); ``None`` when the spool is empty.

        Raises :class:`LakeWriteError` when the lake refuses; the batch stays claimed and the
        next call retries exactly it.
        """
        try:
            # One writer per app id: these cannot change until this writer commits again.
            table_version = self._txn_version(self.table_uri)
            quarantine_version = self._txn_version(self.quarantine_uri)
        except Exception as exc:  # the lake is unreachable: nothing claimed yet
            raise self._lake_error("read the transaction version", exc) from exc
        # A backlog (a restart, a lake outage, a burst) goes out in larger commits: Delta's
        # cost per commit is fixed, so rows per second grow with the batch.
        pending = self.spool.pending
        limit = self.flush_rows
        if pending >= max(self.flush_rows, BACKLOG_ROWS):
            limit = max(self.flush_rows, min(pending, self.max_batch_rows))
        batch = self.spool.claim(limit, seq_floor=max(table_version, quarantine_version) + 1)
        if batch is None:
            return None
        split = split_columns(batch.columns)
        written = quarantined = 0
        skipped = True
        try:
            if len(split.valid) and table_version < batch.seq:
                data = split.table if split.table is not None else to_arrow_readings(split.valid)
                self._append(self.table_uri, data, batch.seq, "date")
                written = len(split.valid)
                skipped = False
            if split.rejected and quarantine_version < batch.seq:
                self._append(
                    self.quarantine_uri,
                    quarantine_arrow(split.rejected, run_id=f"{self.app_id}#{batch.seq}"),
                    batch.seq,
                    None,
                )
                quarantined = len(split.rejected)
                skipped = False
        except Exception as exc:
            raise self._lake_error(f"append batch {batch.seq}", exc) from exc
        if self._after_lake_commit is not None:
            self._after_lake_commit(batch)
        self.spool.commit(batch.batch_id)
        stats = self.stats
        stats.batches_written += 0 if skipped else 1
        stats.batches_skipped += 1 if skipped else 0
        stats.rows_written += written
        stats.rows_quarantined += quarantined
        stats.duplicates_dropped += split.duplicates
        stats.last_flush_at = time.time()
        stats.last_error = None
        if split.rejected:
            reasons = sorted({reason for _, _, reason in split.rejected})[:3]
            log.warning(
                "batch %d: %d readings quarantined (%s)", batch.seq, quarantined, "; ".join(reasons)
            )
        return FlushResult(
            seq=batch.seq,
            rows=len(batch),
            written=written,
            quarantined=quarantined,
            duplicates=split.duplicates,
            skipped=skipped,
        )

    def drain(self, timeout: float = 30.0) -> bool:
        """Flush until the spool is empty; ``False`` if the lake kept failing until timeout."""
        deadline = time.monotonic() + timeout
        while self.spool.pending:
            try:
                self.flush_once()
            except LakeWriteError:
                if time.monotonic() >= deadline:
                    return False
                time.sleep(min(1.0, max(0.0, deadline - time.monotonic())))
        return True

    # -- the loop -----------------------------------------------------------------------

    def run(self, stop: threading.Event, *, drain_timeout: float = 30.0) -> None:
        """Flush by size (``flush_rows`` pending) or by time (``flush_seconds`` since the
        oldest pending reading), back off while the lake fails, drain on ``stop``.

        After a flush by size (a burst or a backlog), what is left when the input pauses for
        ``BURST_IDLE_S`` goes out at once rather than ``flush_seconds`` later: the end of a
        burst is queryable a commit after it arrived. That one flush ends the burst; steady
        traffic below ``flush_rows`` never starts one, so its batching is unchanged.
        """
        backoff = 0.5
        burst_until = 0.0  # until then, a pause in the input ends the burst
        while not stop.is_set():
            in_burst = time.monotonic() < burst_until
            timeout = BURST_IDLE_S if in_burst else min(0.5, self.flush_seconds)
            pending = self.spool.wait(self.flush_rows, timeout=timeout)
            if stop.is_set():
                break
            if not pending:
                continue
            by_size = pending >= self.flush_rows
            burst_ended = in_burst and self.spool.idle_seconds() >= BURST_IDLE_S
            if not (by_size or burst_ended):
                age = self.spool.oldest_pending_age() or 0.0
                if age < self.flush_seconds:
                    continue
            try:
                while self.flush_once() and self.spool.pending >= self.flush_rows:
                    by_size = True
                    if stop.is_set():
                        break
                backoff = 0.5
                if by_size:
                    burst_until = time.monotonic() + self.flush_seconds
                elif burst_ended:  # its end is out: back to batching by size and age
                    burst_until = 0.0
            except LakeWriteError as exc:
                log.error(
                    "%s; %d readings kept in the spool, retry in %.1fs", exc, pending, backoff
                )
                stop.wait(backoff)
                backoff = min(backoff * 2, 30.0)
        if self.spool.pending:
            log.info("flushing %d spooled readings before exit", self.spool.pending)
            if not self.drain(drain_timeout):
                log.error(
                    "the lake did not accept %d readings before exit; they stay in the spool "
                    "(%s) and are written on the next start",
                    self.spool.pending,
                    self.spool.path,
                )

    # -- lake access --------------------------------------------------------------------

    def _txn_version(self, uri: str) -> int:
        from deltalake import DeltaTable

        if not DeltaTable.is_deltatable(uri, storage_options=self.storage_options):
            return 0
        table = DeltaTable(uri, storage_options=self.storage_options)
        return int(table.transaction_version(self.app_id) or 0)

    def _append(self, uri: str, data: pa.Table, seq: int, partition: str | None) -> None:
        from deltalake import CommitProperties, Transaction, write_deltalake

        write_deltalake(
            uri,
            data,
            mode="append",
            partition_by=[partition] if partition else None,
            storage_options=self.storage_options,
            commit_properties=CommitProperties(
                app_transactions=[Transaction(self.app_id, seq)],
                custom_metadata={"writer": self.app_id, "batch_seq": str(seq)},
            ),
        )

    def _lake_error(self, what: str, exc: BaseException) -> LakeWriteError:
        self.stats.lake_errors += 1
        message = f"lake {self.lake_root}: cannot {what}: {type(exc).__name__}: {exc}"
        self.stats.last_error = message
        return LakeWriteError(message)


# -- pure parts, tested on their own --------------------------------------------------------


def split_batch(readings: Sequence[Reading]) -> _Split:
    """:func:`split_columns` for :class:`Reading` objects."""
    return split_columns(ReadingColumns.from_readings(readings))


def split_columns(columns: ReadingColumns) -> _Split:
    """Drop duplicates on (device, sensor, ts), then split by the SensorReading rules.

    The batch stays an Arrow table throughout; when no row fails (the usual case) that table
    is what the lake gets. Rules that cannot be checked (an unexpected validation failure)
    reject the whole batch to quarantine with the reason rather than stopping the collector:
    nothing is lost.
    """
    import pandas as pd

    unique, duplicates = columns, 0
    try:
        firsts = _first_arrivals(columns.to_arrow())
        if firsts is not None:  # the spool de-duplicates already; this is the rare case
            unique = columns.take(firsts)
            duplicates = len(columns) - len(unique)
        if not len(unique):
            return _Split(valid=pd.DataFrame(columns=READING_COLUMNS), duplicates=duplicates)
        table = _canonical(unique.to_arrow())
        result = _validate(table)
    except Exception as exc:
        reason = f"validation failed for the whole batch: {type(exc).__name__}: {exc}"
        return _Split(
            valid=pd.DataFrame(columns=READING_COLUMNS),
            rejected=[(r, "*", reason) for r in unique.readings()],
            duplicates=duplicates,
        )
    if not len(result.rejected):  # the usual case: the table is what the lake gets
        return _Split(valid=result.valid, duplicates=duplicates, table=_with_date(table))
    rejected = [
        (unique.reading(int(index)), str(row["reject_field"]), str(row["reject_reason"]))
        for index, row in result.rejected.iterrows()
    ]
    return _Split(valid=result.valid, rejected=rejected, duplicates=duplicates)


def _validate(table: pa.Table) -> ValidationResult:
    """The canonical rules on ``table``, as pandas columns of the model's own dtypes
    (string[pyarrow], Float64, nanosecond UTC): validation converts nothing, and the
    conversion from Arrow is nearly free."""
    import pandas as pd
    import pyarrow as pa

    from integration_platform.model.sensor_reading import SensorReading
    from integration_platform.model.validation import validate_rows

    utc_ns = pa.timestamp("ns", tz="UTC")
    for name in ("ts", "ingested_at"):
        at = table.schema.get_field_index(name)
        table = table.set_column(at, name, table.column(name).cast(utc_ns))
    mapping = {pa.string(): pd.StringDtype("pyarrow"), pa.float64(): pd.Float64Dtype()}
    return validate_rows(table.to_pandas(types_mapper=mapping.get), SensorReading)


def _first_arrivals(table: pa.Table) -> list[int] | None:
    """Positions of the first reading of each (device, sensor, ts), in order; ``None`` when
    every key is unique (one hash aggregation in Arrow)."""
    import numpy as np
    import pyarrow as pa

    keys = table.select(list(KEY_NAMES))
    if keys.group_by(list(KEY_NAMES), use_threads=False).aggregate([]).num_rows == len(keys):
        return None
    numbered = keys.append_column("position", pa.array(np.arange(len(keys), dtype=np.int64)))
    firsts = numbered.group_by(list(KEY_NAMES), use_threads=False).aggregate([("position", "min")])
    return np.sort(firsts.column("position_min").to_numpy()).tolist()


def _canonical(table: pa.Table) -> pa.Table:
    """The model's columns from the spool's (timestamps as UTC, NaN read as missing, as
    pandas does, so the rules treat both alike)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    utc = readings_schema().field("ts").type
    value = table.column("value")
    value = pc.if_else(pc.is_nan(value), pa.scalar(None, pa.float64()), value)
    return pa.table(
        {
            "device_id": table.column("device_id"),
            "sensor_id": table.column("sensor_id"),
            "sensor_type": table.column("sensor_type"),
            "ts": table.column("ts_us").cast(utc),
            "value": value,
            "unit": table.column("unit"),
            "quality": table.column("quality"),
            "source_protocol": table.column("source_protocol"),
            "ingested_at": table.column("ingested_us").cast(utc),
        }
    )


def _with_date(table: pa.Table) -> pa.Table:
    """``date`` (UTC day of ``ts``) appended, in the lake table's schema."""
    import pyarrow as pa

    day = table.column("ts").cast(pa.int64()).to_numpy() // 86_400_000_000
    dates = pa.array(day.astype("int32"), type=pa.int32()).cast(pa.date32())
    return table.append_column("date", dates).cast(readings_schema())


def to_arrow_readings(valid: pd.DataFrame) -> pa.Table:
    """The canonical columns plus ``date`` (UTC day of ``ts``), in the table's fixed schema."""
    import pyarrow as pa

    schema = readings_schema()
    columns: dict[str, Any] = {}
    for name in READING_COLUMNS:
        series = valid[name]
        if name == "value":
            columns[name] = pa.array(series.astype("float64"), type=pa.float64(), from_pandas=True)
        elif name in {"ts", "ingested_at"}:
            columns[name] = pa.array(series.dt.tz_convert("UTC")).cast(schema.field(name).type)
        else:
            columns[name] = pa.array(series.astype(object), type=pa.string(), from_pandas=True)
    columns["date"] = pa.array(valid["ts"].dt.tz_convert("UTC").dt.date, type=pa.date32())
    return pa.table(columns, schema=schema)


def quarantine_arrow(rejected: Sequence[tuple[Reading, str, str]], *, run_id: str) -> pa.Table:
    """Rejected readings as quarantine records (the project's quarantine columns)."""
    import pyarrow as pa

    now = datetime.now(UTC)
    rows = {
        "entity": [ENTITY] * len(rejected),
        "source_system": [r.source_protocol for r, _, _ in rejected],
        "external_id": [f"{r.device_id}/{r.sensor_id}@{iso(r.ts)}" for r, _, _ in rejected],
        "source_file": [r.origin for r, _, _ in rejected],
        "source_line": [None] * len(rejected),
        "reject_field": [f for _, f, _ in rejected],
        "reject_reason": [why for _, _, why in rejected],
        "record": [_record_json(r) for r, _, _ in rejected],
        "run_id": [run_id] * len(rejected),
        "quarantined_at": [now] * len(rejected),
    }
    return pa.table(rows, schema=quarantine_schema())


def _record_json(reading: Reading) -> str:
    data = json.loads(reading.to_json())
    data.pop("origin", None)
    return json.dumps(data)
