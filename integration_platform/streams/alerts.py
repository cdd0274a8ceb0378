"""Threshold alerts evaluated reading by reading, as the collector accepts them.

One :class:`SensorEvaluator` per (device, sensor) with thresholds keeps a small state machine:

- a level (warning, critical) is *reached* when the value has been at or beyond its limit
  continuously for ``min_duration_s`` of reading time (``>=`` the limit for ``above``, ``<=``
  for ``below``); any reading back inside the limit restarts that clock;
- the first level reached opens an *episode* (one alert row); a higher level reached later
  escalates the same episode (its severity only goes up while it is open);
- the episode resolves when the value is back past the lowest limit by ``hysteresis``
  (``< limit - hysteresis`` for ``above``), so a value hovering at the limit does not flap;
- after a resolve no new episode starts for ``cooldown_s`` of reading time.

Time is the readings' ``ts``, not the wall clock, so replays, backfills and buffered bursts
give the same alerts as live data. Readings older than or equal to the last one evaluated for
a sensor (QoS 1 redeliveries, late backfill) and readings without a usable value (gaps,
quality ``bad``) are ignored. Evaluation is plain Python on the ingest thread: sensors without
thresholds cost two dictionary look-ups. Writing alerts to the state DB is someone else's job
(``streams/device_state.py``), through a queue.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal

from integration_platform.streams.devices import Registry, SensorSpec, Thresholds
from integration_platform.streams.readings import Reading, ReadingColumns, from_us, iso

EventKind = Literal["raised", "escalated", "resolved"]
SEVERITIES = ("warning", "critical")  # ascending
NEVER = -math.inf


def episode_key(device_id: str, sensor_id: str, reading_ts: datetime) -> str:
    """``device/sensor@<UTC ISO ts>`` of the reading that opened the episode: stable across
    retries and restarts, so the same episode is one row."""
    return f"{device_id}/{sensor_id}@{iso(reading_ts)}"


@dataclass(frozen=True, slots=True)
class AlertEvent:
    """A change of an alert episode, to be written to ``sensor_alerts``.

    ``reading_ts`` is the reading that caused the change; ``at`` the wall clock when the
    evaluator saw it (``raised_at`` for a raise).
    """

    kind: EventKind
    episode_key: str
    device_id: str
    sensor_id: str
    severity: str
    value: float
    threshold: float
    reading_ts: datetime
    at: datetime
    direction: str
    peak_value: float
    sensor_type: str | None = None
    unit: str | None = None
    asset_id: str | None = None


@dataclass(slots=True)
class _Episode:
    key: str
    level: int
    peak: float  # in signed space (see SensorEvaluator)


@dataclass(slots=True)
class SensorEvaluator:
    """The alert state of one sensor. Values are compared in *signed* space (``value`` for
    ``above``, ``-value`` for ``below``) so one code path serves both directions."""

    device_id: str
    sensor_id: str
    thresholds: Thresholds
    sensor_type: str | None = None
    unit: str | None = None
    asset_id: str | None = None
    _sign: float = field(init=False, default=1.0)
    _severities: tuple[str, ...] = field(init=False, default=())
    _limits: tuple[float, ...] = field(init=False, default=())  # signed, ascending severity
    # Reading time at which each level's limit started being exceeded without a break.
    _pending: list[float | None] = field(init=False, default_factory=list)
    _episode: _Episode | None = field(init=False, default=None)
    _last_ts: float = field(init=False, default=NEVER)
    _cooldown_until: float = field(init=False, default=NEVER)

    def __post_init__(self) -> None:
        th = self.thresholds
        self._sign = 1.0 if th.direction == "above" else -1.0
        pairs = [
            (s, lim)
            for s, lim in zip(SEVERITIES, (th.warning, th.critical), strict=True)
            if lim is not None
        ]
        self._severities = tuple(s for s, _ in pairs)
        self._limits = tuple(self._sign * lim for _, lim in pairs)
        self._pending = [None] * len(pairs)

    @property
    def active(self) -> str | None:
        """The open episode's key, if any."""
        return self._episode.key if self._episode else None

    def feed(self, value: float, ts: datetime) -> AlertEvent | None:
        """Evaluate one reading; the episode change it causes, if any."""
        t = ts.timestamp()
        if t <= self._last_ts or value != value:  # older/duplicate, or NaN
            return None
        self._last_ts = t
        x = self._sign * value
        limits, pending = self._limits, self._pending
        episode = self._episode
        if episode is None and x < limits[0] and pending[0] is None:
            return None  # the common case: quiet sensor
        min_duration = self.thresholds.min_duration_s
        reached = -1
        for i, limit in enumerate(limits):
            if x >= limit:
                since = pending[i]
                if since is None:
                    pending[i] = since = t
                if t - since >= min_duration:
                    reached = i
            else:
                pending[i] = None
        if episode is None:
            if reached < 0 or t < self._cooldown_until:
                return None
            self._episode = _Episode(episode_key(self.device_id, self.sensor_id, ts), reached, x)
            return self._event("raised", reached, value, ts)
        episode.peak = max(episode.peak, x)
        if reached > episode.level:
            episode.level = reached
            return self._event("escalated", reached, value, ts)
        if x < limits[0] - self.thresholds.hysteresis:
            event = self._event("resolved", episode.level, value, ts)
            self._episode = None
            self._cooldown_until = t + self.thresholds.cooldown_s
            self._pending = [None] * len(limits)
            return event
        return None

    def restore(
        self, key: str, severity: str, peak_value: float | None, reading_ts: datetime
    ) -> None:
        """Continue an episode that is still open in the state DB (collector restart)."""
        level = self._severities.index(severity) if severity in self._severities else 0
        peak = self._sign * peak_value if peak_value is not None else self._limits[level]
        self._episode = _Episode(key, level, peak)
        self._last_ts = max(self._last_ts, reading_ts.timestamp())

    def _event(self, kind: EventKind, level: int, value: float, ts: datetime) -> AlertEvent:
        assert self._episode is not None
        return AlertEvent(
            kind=kind,
            episode_key=self._episode.key,
            device_id=self.device_id,
            sensor_id=self.sensor_id,
            severity=self._severities[level],
            value=value,
            threshold=self._sign * self._limits[level],
            reading_ts=ts,
            at=datetime.now(UTC),
            direction=self.thresholds.direction,
            peak_value=self._sign * self._episode.peak,
            sensor_type=self.sensor_type,
            unit=self.unit,
            asset_id=self.asset_id,
        )


def _signature(sensor: SensorSpec, asset_id: str | None) -> tuple[object, ...]:
    return (sensor.thresholds, sensor.type, sensor.unit, asset_id)


class AlertEvaluator:
    """Every sensor with thresholds of a registry; :meth:`observe` is the ingest-path hook.

    Thread-safe (one lock per batch): MQTT ingest threads, the Modbus and OPC-UA loops may
    hand readings over at the same time.
    """

    def __init__(self, registry: Registry | None = None) -> None:
        self._lock = threading.Lock()
        self._sensors: dict[str, dict[str, SensorEvaluator]] = {}
        self._signatures: dict[tuple[str, str], tuple[object, ...]] = {}
        if registry is not None:
            self.configure(registry)

    def configure(self, registry: Registry) -> None:
        """Take a (re)loaded registry; sensors whose limits did not change keep their state."""
        sensors: dict[str, dict[str, SensorEvaluator]] = {}
        signatures: dict[tuple[str, str], tuple[object, ...]] = {}
        with self._lock:
            for device in registry.devices:
                if not device.enabled:
                    continue
                for sensor in device.sensors:
                    if sensor.thresholds is None:
                        continue
                    asset = sensor.asset_id or device.asset_id
                    key = (device.device_id, sensor.sensor_id)
                    signature = _signature(sensor, asset)
                    old = self._sensors.get(device.device_id, {}).get(sensor.sensor_id)
                    if old is None or self._signatures.get(key) != signature:
                        old = SensorEvaluator(
                            device.device_id,
                            sensor.sensor_id,
                            sensor.thresholds,
                            sensor_type=sensor.type,
                            unit=sensor.unit,
                            asset_id=asset,
                        )
                    sensors.setdefault(device.device_id, {})[sensor.sensor_id] = old
                    signatures[key] = signature
            self._sensors, self._signatures = sensors, signatures

    def observe(self, readings: Sequence[Reading]) -> list[AlertEvent]:
        """Evaluate readings in arrival order; the episode changes they cause."""
        events: list[AlertEvent] = []
        with self._lock:
            sensors = self._sensors
            if not sensors:
                return events
            for reading in readings:
                by_sensor = sensors.get(reading.device_id)
                if by_sensor is None:
                    continue
                evaluator = by_sensor.get(reading.sensor_id)
                if evaluator is None or reading.value is None or reading.quality == "bad":
                    continue
                event = evaluator.feed(reading.value, reading.ts)
                if event is not None:
                    events.append(event)
        return events

    def observe_columns(self, columns: ReadingColumns) -> list[AlertEvent]:
        """:meth:`observe` for readings in columns; a datetime is made only for the readings
        of sensors with thresholds."""
        events: list[AlertEvent] = []
        with self._lock:
            sensors = self._sensors
            if not sensors:
                return events
            for device_id, sensor_id, value, quality, ts_us in zip(
                columns.device_id,
                columns.sensor_id,
                columns.value,
                columns.quality,
                columns.ts_us,
                strict=True,
            ):
                by_sensor = sensors.get(device_id)
                if by_sensor is None:
                    continue
                evaluator = by_sensor.get(sensor_id)
                if evaluator is None or value is None or quality == "bad":
                    continue
                event = evaluator.feed(value, from_us(ts_us))
                if event is not None:
                    events.append(event)
        return events

    def evaluator(self, device_id: str, sensor_id: str) -> SensorEvaluator | None:
        return self._sensors.get(device_id, {}).get(sensor_id)

    def restore(self, episodes: Iterable[tuple[str, str, str, str, float | None, datetime]]) -> int:
        """Reopen ``(device, sensor, episode key, severity, peak, reading ts)`` episodes for
        sensors that have none in memory; returns how many were restored."""
        restored = 0
        with self._lock:
            for device_id, sensor_id, key, severity, peak, reading_ts in episodes:
                evaluator = self._sensors.get(device_id, {}).get(sensor_id)
                if evaluator is None or evaluator.active is not None:
                    continue
                evaluator.restore(key, severity, peak, reading_ts)
                restored += 1
        return restored
