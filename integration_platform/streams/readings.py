"""The in-flight form of a sensor reading, between a collector and the Delta writer.

Collectors build :class:`Reading` objects, or (the MQTT parser, on the hot path)
:class:`ReadingColumns`, one list per field; the spool stores groups of them as one JSON row
each; the writer turns a batch of groups into the canonical ``SensorReading`` frame.
Timestamps are normalised to UTC with microsecond precision here, so the same instant sent as
epoch milliseconds or as ISO-8601 gives the same de-duplication key.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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


@dataclass(slots=True)
class ReadingColumns:
    """Readings as one list per field: what the MQTT parser fills, the spool stores (one row
    per group, :meth:`encode`) and the writer turns into Arrow, without a :class:`Reading` per
    value on the way (about 3 us each). Timestamps are integer microseconds since the epoch
    (UTC), so the de-duplication key ``(device_id, sensor_id, ts_us)`` is exact."""

    device_id: list[str] = field(default_factory=list)
    sensor_id: list[str] = field(default_factory=list)
    sensor_type: list[str] = field(default_factory=list)
    ts_us: list[int] = field(default_factory=list)
    value: list[float | None] = field(default_factory=list)
    unit: list[str | None] = field(default_factory=list)
    quality: list[str] = field(default_factory=list)
    source_protocol: list[str] = field(default_factory=list)
    ingested_us: list[int] = field(default_factory=list)
    origin: list[str | None] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.ts_us)

    def lists(self) -> list[list[Any]]:
        return [getattr(self, name) for name in COLUMN_NAMES]

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
        for mine, theirs in zip(self.lists(), other.lists(), strict=True):
            mine.extend(theirs)

    @classmethod
    def from_readings(cls, readings: Iterable[Reading]) -> ReadingColumns:
        columns = cls()
        for reading in readings:
            columns.add(reading)
        return columns

    @classmethod
    def concat(cls, parts: Iterable[ReadingColumns]) -> ReadingColumns:
        out = cls()
        for part in parts:
            out.extend(part)
        return out

    def take(self, positions: Sequence[int]) -> ReadingColumns:
        return ReadingColumns(*([column[i] for i in positions] for column in self.lists()))

    def keys(self) -> list[tuple[str, str, int]]:
        return list(zip(self.device_id, self.sensor_id, self.ts_us, strict=True))

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

    def encode(self) -> str:
        """One JSON array of the columns (NaN/Infinity tokens kept for the quarantine)."""
        return json.dumps(self.lists(), separators=(",", ":"))

    @classmethod
    def decode(cls, text: str | bytes) -> ReadingColumns:
        lists = json.loads(text)
        if len(lists) != len(COLUMN_NAMES):
            raise ValueError(f"a spooled group has {len(lists)} columns, not {len(COLUMN_NAMES)}")
        return cls(*lists)
