"""The in-flight form of a sensor reading, between a collector and the Delta writer.

Collectors build :class:`Reading` objects; the spool stores them as JSON; the writer turns a
batch of them into the canonical ``SensorReading`` frame. Timestamps are normalised to UTC with
microsecond precision here, so the same instant sent as epoch milliseconds or as ISO-8601 gives
the same de-duplication key.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
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
