"""The in-flight form of a sensor reading, between a collector and the Delta writer.

Collectors build :class:`Reading` objects, or (the MQTT parser, on the hot path)
:class:`ReadingColumns`: one list per field, or one Arrow table; the spool stores groups of them
as one Arrow IPC row each; the writer turns a batch of groups into the canonical
``SensorReading`` table.
Timestamps are normalised to UTC with microsecond precision here, so the same instant sent as
epoch milliseconds or as ISO-8601 gives the same de-duplication key.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Generic, TypeVar, overload

if TYPE_CHECKING:
    import pyarrow as pa

    from integration_platform.streams.devices import DeviceSpec, SensorSpec

KEY_SEPARATOR = "\x1f"


def utc_now() -> datetime:
    return datetime.now(UTC)


def iso(ts: datetime) -> str:
    """UTC ISO-8601 with microseconds: one spelling per instant (keys compare as text)."""
    return ts.astimezone(UTC).isoformat(timespec="microseconds")


@dataclass(frozen=True, slots=True)
class Reading:
    """One value from one sensor at one instant, as a collector produced it.

    ``value`` may be ``None`` (a gap, quality ``bad``) or not finite; the writer checks the
    canonical rules and quarantines what breaks them. ``origin`` (topic, endpoint) is kept for
    quarantine records only.
    """

    device_id: str
    sensor_id: str
    sensor_type: str
    ts: datetime
    value: float | None
    unit: str | None
    quality: str
    source_protocol: str
    ingested_at: datetime = field(default_factory=utc_now)
    origin: str | None = None

    @classmethod
    def of(
        cls,
        device: DeviceSpec,
        sensor: SensorSpec,
        *,
        ts: datetime,
        value: float | None,
        quality: str,
        protocol: str,
        ingested_at: datetime,
        origin: str | None,
    ) -> Reading:
        """A reading of a registered sensor: ids, type and unit come from the registry."""
        return cls(
            device_id=device.device_id,
            sensor_id=sensor.sensor_id,
            sensor_type=sensor.type,
            ts=ts,
            value=value,
            unit=sensor.unit,
            quality=quality,
            source_protocol=protocol,
            ingested_at=ingested_at,
            origin=origin,
        )

    def key(self) -> str:
        """De-duplication key: QoS 1 redeliveries repeat device, sensor and timestamp."""
        return KEY_SEPARATOR.join((self.device_id, self.sensor_id, iso(self.ts)))

    def to_json(self) -> str:
        # Fields spelled out: dataclasses.asdict deep-copies every value (datetimes too), and
        # that copy was most of the cost of a spool append (measured by benchmarks/ingest.py).
        data = {
            "device_id": self.device_id,
            "sensor_id": self.sensor_id,
            "sensor_type": self.sensor_type,
            "ts": iso(self.ts),
            "value": self.value,
            "unit": self.unit,
            "quality": self.quality,
            "source_protocol": self.source_protocol,
            "ingested_at": iso(self.ingested_at),
            "origin": self.origin,
        }
        # json writes NaN/Infinity tokens; kept so the writer can quarantine them with a reason.
        return json.dumps(data, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> Reading:
        data: dict[str, Any] = json.loads(text)
        data["ts"] = datetime.fromisoformat(data["ts"])
        data["ingested_at"] = datetime.fromisoformat(data["ingested_at"])
        return cls(**data)

    def is_finite(self) -> bool:
        return self.value is not None and math.isfinite(self.value)


# -- columns: many readings without a Python object each ----------------------------------

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def to_us(ts: datetime) -> int:
    """Microseconds since the Unix epoch (exact, any aware datetime)."""
    return (ts - EPOCH) // _MICROSECOND


def from_us(us: int) -> datetime:
    """The aware UTC datetime of ``to_us`` (exact inverse)."""
    return EPOCH + timedelta(microseconds=us)


COLUMN_NAMES = (
    "device_id",
    "sensor_id",
    "sensor_type",
    "ts_us",
    "value",
    "unit",
    "quality",
    "source_protocol",
    "ingested_us",
    "origin",
)
KEY_NAMES = ("device_id", "sensor_id", "ts_us")
# From this many readings, columns built reading by reading are stored as Arrow rather than
# JSON: below it the ~130 us of making ten small Arrow arrays costs more than the JSON.
ARROW_ROWS = 128
_NUMERIC = {"ts_us": "int64", "value": "float64", "ingested_us": "int64"}  # the rest: text


@functools.cache
def spool_schema() -> pa.Schema:
    """The Arrow schema of :class:`ReadingColumns` (the spool's format 3)."""
    import pyarrow as pa

    return pa.schema(
        [(name, pa.type_for_alias(_NUMERIC.get(name, "string"))) for name in COLUMN_NAMES]
    )


T = TypeVar("T")


class _Column(Generic[T]):
    """One field of :class:`ReadingColumns` as a list. The list form keeps its lists in the
    instance, found before this (non-data) descriptor at plain attribute speed; the Arrow
    form makes a list when it is first read and keeps it there (read-only: the table stays
    the data), as ``functools.cached_property`` does."""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    @overload
    def __get__(self, obj: None, owner: type) -> _Column[T]: ...

    @overload
    def __get__(self, obj: ReadingColumns, owner: type) -> list[T]: ...

    def __get__(self, obj: ReadingColumns | None, owner: type) -> Any:
        if obj is None:
            return self
        assert obj._table is not None
        column = obj.__dict__[self.name] = arrow_to_list(obj._table.column(self.name))
        return column


class ReadingColumns:
    """Readings as columns, without a :class:`Reading` per value (about 3 us each).

    Two forms, either giving the other on demand: one list per field (built reading by
    reading: the slower parsers, Modbus, tests) or one Arrow table (the MQTT columnar parser,
    the spool, the writer). Timestamps are integer microseconds since the epoch (UTC), so the
    de-duplication key ``(device_id, sensor_id, ts_us)`` is exact.
    """

    device_id: _Column[str] = _Column()
    sensor_id: _Column[str] = _Column()
    sensor_type: _Column[str] = _Column()
    ts_us: _Column[int] = _Column()
    value: _Column[float | None] = _Column()
    unit: _Column[str | None] = _Column()
    quality: _Column[str] = _Column()
    source_protocol: _Column[str] = _Column()
    ingested_us: _Column[int] = _Column()
    origin: _Column[str | None] = _Column()

    def __init__(self, *lists: list[Any]) -> None:
        if lists and len(lists) != len(COLUMN_NAMES):
            raise ValueError(f"{len(lists)} columns, not {len(COLUMN_NAMES)}")
        self.__dict__.update(zip(COLUMN_NAMES, lists or [[] for _ in COLUMN_NAMES], strict=True))
        self._table: pa.Table | None = None

    @classmethod
    def from_arrow(cls, table: pa.Table) -> ReadingColumns:
        """Columns backed by ``table`` (in :func:`spool_schema`; not copied)."""
        columns = cls.__new__(cls)
        columns._table = table
        return columns

    @property
    def is_arrow(self) -> bool:
        return self._table is not None

    def __len__(self) -> int:
        if self._table is not None:
            return self._table.num_rows
        return len(self.ts_us)

    def lists(self) -> list[list[Any]]:
        return [getattr(self, name) for name in COLUMN_NAMES]

    def to_arrow(self) -> pa.Table:
        """The readings as one Arrow table in :func:`spool_schema` (NaN kept as NaN)."""
        if self._table is not None:
            return self._table
        import pyarrow as pa

        schema = spool_schema()
        arrays = []
        for field_, column in zip(schema, self.lists(), strict=True):
            if field_.name == "value":
                arrays.append(_float_array(column))
            else:
                arrays.append(pa.array(column, type=field_.type))
        return pa.Table.from_arrays(arrays, schema=schema)

    def add(self, reading: Reading) -> None:
        self.device_id.append(reading.device_id)
        self.sensor_id.append(reading.sensor_id)
        self.sensor_type.append(reading.sensor_type)
        self.ts_us.append(to_us(reading.ts))
        self.value.append(reading.value)
        self.unit.append(reading.unit)
        self.quality.append(reading.quality)
        self.source_protocol.append(reading.source_protocol)
        self.ingested_us.append(to_us(reading.ingested_at))
        self.origin.append(reading.origin)

    def extend(self, other: ReadingColumns) -> None:
        if self._table is not None:
            raise TypeError("columns backed by an Arrow table are read-only")
        for mine, theirs in zip(self.lists(), other.lists(), strict=True):
            mine.extend(theirs)

    @classmethod
    def from_readings(cls, readings: Iterable[Reading]) -> ReadingColumns:
        columns = cls()
        for reading in readings:
            columns.add(reading)
        return columns

    @classmethod
    def concat(cls, parts: Sequence[ReadingColumns]) -> ReadingColumns:
        """One object for several, in order (Arrow when any part is; neighbouring list parts
        are joined first, so many small groups cost one conversion, not one each)."""
        if len(parts) == 1:
            return parts[0]
        if not any(part.is_arrow for part in parts):
            out = cls()
            for part in parts:
                out.extend(part)
            return out
        import pyarrow as pa

        tables: list[pa.Table] = []
        joined: ReadingColumns | None = None
        for part in parts:
            if not part.is_arrow:
                joined = joined if joined is not None else cls()
                joined.extend(part)
                continue
            if joined is not None:
                tables.append(joined.to_arrow())
                joined = None
            tables.append(part.to_arrow())
        if joined is not None:
            tables.append(joined.to_arrow())
        return cls.from_arrow(pa.concat_tables(tables))  # chunked: no copy

    def take(self, positions: Sequence[int]) -> ReadingColumns:
        if self._table is not None:
            import pyarrow as pa

            return ReadingColumns.from_arrow(self._table.take(pa.array(positions, pa.int64())))
        return ReadingColumns(*([column[i] for i in positions] for column in self.lists()))

    def slice(self, start: int, stop: int) -> ReadingColumns:
        if self._table is not None:
            return ReadingColumns.from_arrow(self._table.slice(start, stop - start))
        return ReadingColumns(*(column[start:stop] for column in self.lists()))

    def keys(self) -> list[tuple[str, str, int]]:
        return list(zip(self.device_id, self.sensor_id, self.ts_us, strict=True))

    def runs(self) -> list[tuple[tuple[str, str], int, int]]:
        """``((device, sensor), start, stop)`` of each stretch of consecutive readings of one
        sensor: the unit of de-duplication (a message usually holds one sensor's values)."""
        if self._table is not None:
            return pair_runs(self._table.column("device_id"), self._table.column("sensor_id"))
        runs: list[tuple[tuple[str, str], int, int]] = []
        start, current = 0, None
        for i, pair in enumerate(zip(self.device_id, self.sensor_id, strict=True)):
            if pair != current:
                if current is not None:
                    runs.append((current, start, i))
                start, current = i, pair
        if current is not None:
            runs.append((current, start, len(self)))
        return runs

    def reading(self, i: int) -> Reading:
        return Reading(
            device_id=self.device_id[i],
            sensor_id=self.sensor_id[i],
            sensor_type=self.sensor_type[i],
            ts=from_us(self.ts_us[i]),
            value=self.value[i],
            unit=self.unit[i],
            quality=self.quality[i],
            source_protocol=self.source_protocol[i],
            ingested_at=from_us(self.ingested_us[i]),
            origin=self.origin[i],
        )

    def readings(self) -> list[Reading]:
        return [self.reading(i) for i in range(len(self))]

    @property
    def stored_as_arrow(self) -> bool:
        """Whether the spool stores these columns as Arrow (else as JSON): Arrow-backed or
        many; JSON is cheaper to write for a handful of readings collected one by one."""
        return self._table is not None or len(self) >= ARROW_ROWS

    def encode(self) -> str | bytes:
        """The spool's body of a group (format 3): an Arrow IPC stream (bytes), or a JSON
        array of the columns (text, NaN/Infinity tokens kept): see :attr:`stored_as_arrow`."""
        if self.stored_as_arrow:
            return encode_table(self.to_arrow())
        return json.dumps(self.lists(), separators=(",", ":"))

    @classmethod
    def decode(cls, body: str | bytes) -> ReadingColumns:
        """A spooled group: Arrow IPC or JSON (formats 3 and 2), told apart by type."""
        if isinstance(body, str) or body[:1] == b"[":
            lists = json.loads(body)
            if len(lists) != len(COLUMN_NAMES):
                raise ValueError(
                    f"a spooled group has {len(lists)} columns, not {len(COLUMN_NAMES)}"
                )
            return cls(*lists)
        table = decode_table(body)
        if table.schema.names != list(COLUMN_NAMES):
            raise ValueError(f"a spooled group has the columns {table.schema.names}")
        return cls.from_arrow(table)


# -- Arrow helpers ------------------------------------------------------------------------

_COMPRESS_ROWS = 64


def encode_table(table: pa.Table) -> bytes:
    """``table`` as an Arrow IPC stream. LZ4 makes the repeated ids and topics of a large
    group nearly free (about 34 instead of 110 bytes a reading); a small group stays plain,
    where the frames would cost more than they save."""
    import pyarrow as pa

    codec = "lz4" if table.num_rows >= _COMPRESS_ROWS and pa.Codec.is_available("lz4") else None
    sink = pa.BufferOutputStream()
    options = pa.ipc.IpcWriteOptions(compression=codec)
    with pa.ipc.new_stream(sink, table.schema, options=options) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def decode_table(body: bytes) -> pa.Table:
    import pyarrow as pa

    return pa.ipc.open_stream(pa.py_buffer(body)).read_all()


def arrow_to_list(column: pa.ChunkedArray | pa.Array) -> list[Any]:
    """Python values of an Arrow column, through numpy where that is exact (``to_pylist``
    costs ~0.3 us per number and ~0.7 us per string)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    if column.null_count or not len(column):
        return column.to_pylist()
    kind = column.type
    if pa.types.is_integer(kind) or pa.types.is_floating(kind):
        return column.to_numpy().tolist()
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        encoded = pc.dictionary_encode(column)
        dictionary = encoded.dictionary.to_pylist()
        words = np.empty(len(dictionary), dtype=object)
        words[:] = dictionary
        return words[encoded.indices.to_numpy()].tolist()
    return column.to_pylist()


def pair_runs(
    device_id: pa.ChunkedArray | pa.Array, sensor_id: pa.ChunkedArray | pa.Array
) -> list[tuple[tuple[str, str], int, int]]:
    """:meth:`ReadingColumns.runs` for Arrow columns: boundaries found in numpy."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    size = len(device_id)
    if not size:
        return []
    codes, words = [], []
    for column in (device_id, sensor_id):
        if isinstance(column, pa.ChunkedArray):
            column = column.combine_chunks()
        encoded = pc.dictionary_encode(column)
        codes.append(encoded.indices.to_numpy(zero_copy_only=False))
        words.append(encoded.dictionary.to_pylist())
    devices, sensors = codes
    changed = (devices[1:] != devices[:-1]) | (sensors[1:] != sensors[:-1])
    starts = np.concatenate(([0], np.flatnonzero(changed) + 1)).tolist()
    stops = [*starts[1:], size]
    device_words, sensor_words = words
    firsts_d, firsts_s = devices[starts].tolist(), sensors[starts].tolist()
    return [
        ((device_words[d], sensor_words[s]), start, stop)
        for d, s, start, stop in zip(firsts_d, firsts_s, starts, stops, strict=True)
    ]


def _float_array(values: list[Any]) -> pa.Array:
    """Values as float64, NaN kept; anything that is not a number becomes NaN so that the
    writer quarantines it with a reason instead of failing the batch."""
    import pyarrow as pa

    try:
        return pa.array(values, type=pa.float64())
    except (TypeError, ValueError, pa.ArrowException):
        return pa.array([_float_or_nan(v) for v in values], type=pa.float64())


def _float_or_nan(value: Any) -> float | None:
    if value is None:
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan
