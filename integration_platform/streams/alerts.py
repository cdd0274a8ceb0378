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

Time is the readings' ``ts`` (integer microseconds inside), not the wall clock, so replays,
backfills and buffered bursts give the same alerts as live data. Readings older than or equal
to the last one evaluated for a sensor (QoS 1 redeliveries, late backfill) and readings without
a usable value (gaps, quality ``bad``) are ignored. Evaluation is plain Python on the ingest
thread: sensors without thresholds cost two dictionary look-ups.

**Several collectors.** Collectors sharing an MQTT subscription (``$share/<group>/...``) each
get part of a sensor's readings, so no process alone can decide an episode. The evaluator is
therefore a *cache* in front of the state DB, which arbitrates (``streams/alert_arbiter.py``;
the reasons are written there and in docs/streams.md): it proposes changes — an episode to
raise, escalate or resolve (:class:`AlertEvent`), a breach run of a level that started or ended
(:class:`ClockMark`, only for sensors with ``min_duration_s``) — and the DB's answer
(:class:`SensorView`: the live episode, the merged breach-run marks, the last resolve) brings
the cache back in line. Only changes are proposed: quiet and steady readings never lead to a
database round trip, and a single collector's proposals are simply confirmed.

**Silent devices.** :func:`silence_rules` and :func:`silence_reason` are the rule a collector
applies to the devices it collects (``streams/device_state.py`` runs it with each heartbeat;
the state DB decides, across collectors, in ``alert_arbiter.decide_silence``).
"""

from __future__ import annotations

import itertools
import math
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal

from integration_platform.streams.devices import Registry, SensorSpec, Thresholds
from integration_platform.streams.readings import Reading, ReadingColumns, from_us, iso, to_us

# ``peak``: a collector stops holding an episode another one resolved, and saw a value beyond
# the episode's recorded peak (each collector sees only part of the readings).
EventKind = Literal["raised", "escalated", "resolved", "peak"]
SEVERITIES = ("warning", "critical")  # ascending
NEVER = -(2**63)  # microseconds: before any reading
LATEST = 2**63 - 1
BREACH, CLEAR = 1, 0
# Breach-run marks kept per sensor and level: enough for the runs of the last minutes of a
# flapping sensor; older ones no longer decide anything (see run_start).
MAX_MARKS = 32


def episode_key(device_id: str, sensor_id: str, reading_ts: datetime) -> str:
    """``device/sensor@<UTC ISO ts>`` of the reading that opened the episode: stable across
    retries and restarts, so the same episode is one row."""
    return f"{device_id}/{sensor_id}@{iso(reading_ts)}"


def seconds_to_us(seconds: float) -> int:
    return round(seconds * 1_000_000)


# -- breach-run marks ------------------------------------------------------------------------


def merge_marks(old: Iterable[Sequence[int]], new: Iterable[Sequence[int]]) -> list[list[int]]:
    """The union of two lists of ``[ts_us, BREACH | CLEAR]`` marks, in time order, newest
    :data:`MAX_MARKS` kept: every collector's observations, whatever order they came in."""
    merged = sorted({(int(ts), int(flag)) for ts, flag in itertools.chain(old, new)})
    return [[ts, flag] for ts, flag in merged[-MAX_MARKS:]]


def run_start(marks: Sequence[Sequence[int]], at_us: int) -> int | None:
    """When the breach run in progress at ``at_us`` started: the first breach mark after the
    newest clear mark at or before ``at_us``; None when no run is known then.

    A full list that starts after ``at_us`` knows nothing about that time: None."""
    if len(marks) >= MAX_MARKS and marks and marks[0][0] > at_us:
        return None
    start: int | None = None
    for ts, flag in marks:
        if ts > at_us:
            break
        if flag == CLEAR:
            start = None
        elif start is None:
            start = ts
    return start


def reached_between(
    marks: Sequence[Sequence[int]], min_us: int, after_us: int, until_us: int
) -> bool:
    """Some breach run lasted ``min_us``, seen at a breach mark between the two times: two
    breach marks of one run (no clear mark between them) at least that far apart."""
    start: int | None = None
    for ts, flag in marks:
        if ts > until_us:
            break
        if flag == CLEAR:
            start = None
        elif start is None:
            start = ts
        elif ts >= after_us and ts - start >= min_us:
            return True
    return False


def _first_clear_after(marks: Sequence[Sequence[int]], at_us: int) -> int | None:
    return next((ts for ts, flag in marks if ts > at_us and flag == CLEAR), None)


# -- what the evaluator proposes and what the state DB answers --------------------------------


@dataclass(frozen=True, slots=True)
class AlertEvent:
    """A change of an alert episode, to be written to ``sensor_alerts``.

    ``reading_ts`` is the reading that caused the change; ``at`` the wall clock when the
    evaluator saw it (``raised_at`` for a raise). ``since`` is when the breach run of the
    event's level started as this collector knows it; with ``min_duration_s`` and
    ``cooldown_s`` it lets the state DB check the change against every collector's readings.
    ``seq`` orders the changes of one collector (the DB's answer says up to which it saw).
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
    since: datetime | None = None
    min_duration_s: float = 0.0
    cooldown_s: float = 0.0
    seq: int = 0


@dataclass(frozen=True, slots=True)
class ClockMark:
    """A breach run of one level started (``breach``) or a reading inside the limit ended or
    broke one (not ``breach``), as one collector saw it; the state DB merges the marks of all
    collectors into the shared "first breach at" of ``min_duration_s``."""

    device_id: str
    sensor_id: str
    severity: str
    ts_us: int
    breach: bool
    seq: int = 0
    # With the clear that ends a breach stretch of a collector holding no episode: the most
    # extreme value of the stretch and its time (another collector may hold the episode).
    peak: float | None = None
    peak_us: int | None = None


@dataclass(frozen=True, slots=True)
class LiveEpisode:
    """The sensor's open or acknowledged episode in the state DB."""

    key: str
    severity: str
    peak_value: float | None
    reading_ts: datetime


@dataclass(frozen=True, slots=True)
class SensorView:
    """What the state DB holds for one sensor, to bring a collector's cache in line.

    ``seq``: the newest change of this collector the answer includes (None for a periodic
    read). ``outcomes``: ``(episode key, outcome)`` of the events just written, where outcome
    is ``opened``, ``joined`` (another collector's live episode), ``closed`` (the raise fell
    inside an episode already resolved), ``late``, ``cooldown``, ``rejected`` (the shared
    breach run is shorter than ``min_duration_s``), ``escalated``, ``held`` (an escalation
    whose shared run is too short), ``resolved``, ``refined`` (an earlier resolve of an
    episode already resolved), ``unchanged`` or ``stale``.
    """

    device_id: str
    sensor_id: str
    episode: LiveEpisode | None
    last_resolved_us: int | None = None
    clocks: Mapping[str, Sequence[Sequence[int]]] = field(default_factory=dict)
    seq: int | None = None
    outcomes: tuple[tuple[str, str], ...] = ()


# -- one sensor ------------------------------------------------------------------------------

DROPPED_RAISES = frozenset({"closed", "late", "cooldown", "rejected"})


@dataclass(slots=True)
class _Episode:
    key: str
    level: int
    peak: float  # in signed space (see SensorEvaluator)
    peak_us: int = NEVER  # when this collector saw it (NEVER: told by the state DB)
    told: float = -math.inf  # the peak the state DB has (signed)


@dataclass(slots=True)
class SensorEvaluator:
    """The alert state of one sensor. Values are compared in *signed* space (``value`` for
    ``above``, ``-value`` for ``below``) so one code path serves both directions.

    ``marks`` receives the breach-run marks and ``outbox`` the episode changes made while
    reconciling (both shared by the sensors of an :class:`AlertEvaluator`); ``counter``
    numbers every proposed change.
    """

    device_id: str
    sensor_id: str
    thresholds: Thresholds
    sensor_type: str | None = None
    unit: str | None = None
    asset_id: str | None = None
    marks: list[ClockMark] = field(default_factory=list)
    outbox: list[AlertEvent] = field(default_factory=list)  # changes made while reconciling
    counter: Callable[[], int] = field(default_factory=lambda: itertools.count(1).__next__)
    _sign: float = field(init=False, default=1.0)
    _severities: tuple[str, ...] = field(init=False, default=())
    _limits: tuple[float, ...] = field(init=False, default=())  # signed, ascending severity
    _min_us: int = field(init=False, default=0)
    _cooldown_us: int = field(init=False, default=0)
    _track: bool = field(init=False, default=False)  # marks only matter with a min duration
    # Reading time (us) at which each level's limit started being exceeded without a break.
    # Invariant: None only when the last reading evaluated was inside that limit (or none was).
    _pending: list[int | None] = field(init=False, default_factory=list)
    # Per level: the start of a breach run another collector reported and this one is not in.
    # A breach here joins that run (its clock started there); a reading inside the limit here
    # is reported, so that run is broken for everyone.
    _shared: list[int | None] = field(init=False, default_factory=list)
    # Per level, while in a run: the merged marks last heard of, and the first reading inside
    # the limit another collector saw after this collector's last reading (the run ends there
    # for everyone, even if this collector only sees breaching readings).
    _known: list[Sequence[Sequence[int]]] = field(init=False, default_factory=list)
    _breaks: list[int | None] = field(init=False, default_factory=list)
    _watching: bool = field(init=False, default=False)
    _episode: _Episode | None = field(init=False, default=None)
    _last_us: int = field(init=False, default=NEVER)
    _cooldown_until: int = field(init=False, default=NEVER)
    # The most extreme value (signed) since this collector last held no breach run and no
    # episode, and its time: reported with the clear that ends the stretch.
    _hi: float = field(init=False, default=-math.inf)
    _hi_us: int = field(init=False, default=NEVER)
    _seq: int = field(init=False, default=0)  # newest change proposed
    _acked: int = field(init=False, default=0)  # newest change the state DB answered for

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
        self._min_us = seconds_to_us(th.min_duration_s)
        self._cooldown_us = seconds_to_us(th.cooldown_s)
        self._track = self._min_us > 0
        self._pending = [None] * len(pairs)
        self._shared = [None] * len(pairs)
        self._known = [()] * len(pairs)
        self._breaks = [None] * len(pairs)

    @property
    def active(self) -> str | None:
        """The open episode's key, if any."""
        return self._episode.key if self._episode else None

    @property
    def settled(self) -> bool:
        """The state DB has answered for every change this sensor proposed."""
        return self._acked >= self._seq

    @property
    def busy(self) -> bool:
        """Something the state DB may change: an episode, a breach run, a run to watch."""
        return (
            self._episode is not None or self._watching or any(p is not None for p in self._pending)
        )

    def feed(self, value: float, ts: datetime) -> AlertEvent | None:
        """Evaluate one reading; the episode change it causes, if any."""
        return self.feed_us(value, to_us(ts), ts)

    def feed_us(self, value: float, t: int, ts: datetime | None = None) -> AlertEvent | None:
        """:meth:`feed` with the reading time in microseconds (the datetime is made only when
        an event needs it)."""
        if t <= self._last_us or value != value:  # older/duplicate, or NaN
            return None
        prev, self._last_us = self._last_us, t
        x = self._sign * value
        limits = self._limits
        episode = self._episode
        if episode is None and x < limits[0] and self._pending[0] is None and not self._watching:
            return None  # the common case: quiet sensor
        if episode is None and self._track and x >= limits[0] and x > self._hi:
            self._hi, self._hi_us = x, t
        reached = self._runs(x, t, prev)
        if episode is None:
            if reached < 0 or t < self._cooldown_until:
                return None
            self._hi, self._hi_us = -math.inf, NEVER
            ts = ts or from_us(t)
            key = episode_key(self.device_id, self.sensor_id, ts)
            self._episode = _Episode(key, reached, x, t)
            return self._event("raised", reached, value, ts)
        if x > episode.peak:
            episode.peak, episode.peak_us = x, t
        if reached > episode.level:
            episode.level = reached
            return self._event("escalated", reached, value, ts or from_us(t))
        if x < limits[0] - self.thresholds.hysteresis:
            event = self._event("resolved", episode.level, value, ts or from_us(t))
            self._episode = None
            self._cooldown_until = t + self._cooldown_us
            self._pending = [None] * len(limits)
            self._breaks = [None] * len(limits)
            return event
        return None

    def _runs(self, x: float, t: int, prev: int) -> int:
        """Advance each level's breach run; the highest level reached (-1: none)."""
        reached = -1
        pending = self._pending
        for i, limit in enumerate(self._limits):
            since = pending[i]
            if x >= limit:
                if since is None:
                    pending[i] = since = self._run_from(i, t, prev)
                    if self._track:
                        self._mark(i, t, BREACH, prev)
                elif (brk := self._breaks[i]) is not None and t > brk:
                    pending[i] = since = self._rerun(i, t)
                if t - since >= self._min_us:
                    reached = i
            elif since is not None:
                pending[i] = self._breaks[i] = None
                if self._track:
                    self._mark(i, t, CLEAR, stretch_end=i == 0)
            elif self._shared[i] is not None:
                self._unshare(i)
                self._mark(i, t, CLEAR)
        return reached

    def _run_from(self, level: int, t: int, prev: int) -> int:
        """Where a run starting here at ``t`` starts: at the shared run's start when that
        began after this collector's last reading inside the limit (``prev``)."""
        shared = self._shared[level]
        if shared is None:
            return t
        self._unshare(level)
        if not prev < shared <= t:
            return t
        self._breaks[level] = _first_clear_after(self._known[level], t)
        return shared

    def _rerun(self, level: int, t: int) -> int:
        """This collector's run passed a break another collector saw: the run at ``t``
        started at the first breach known after it, else here."""
        known = self._known[level]
        self._breaks[level] = _first_clear_after(known, t)
        start = run_start(known, t)
        if start is None:
            self._mark(level, t, BREACH)
            return t
        return start

    def _unshare(self, level: int) -> None:
        self._shared[level] = None
        self._watching = any(s is not None for s in self._shared)

    def _mark(
        self, level: int, t: int, flag: int, prev: int = NEVER, *, stretch_end: bool = False
    ) -> None:
        """Propose a breach-run mark; a run's start also reports the reading before it, which
        was inside the limit (see ``_pending``), so other collectors' runs break there too.
        The end of a stretch without an episode here carries the stretch's extreme value."""
        self._seq = seq = self.counter()
        severity = self._severities[level]
        device, sensor = self.device_id, self.sensor_id
        if prev > NEVER:
            self.marks.append(ClockMark(device, sensor, severity, prev, False, seq))
        peak: float | None = None
        peak_us: int | None = None
        if stretch_end and self._hi_us > NEVER:
            if self._episode is None:
                peak, peak_us = self._sign * self._hi, self._hi_us
            self._hi, self._hi_us = -math.inf, NEVER
        self.marks.append(
            ClockMark(device, sensor, severity, t, flag == BREACH, seq, peak, peak_us)
        )

    def restore(
        self, key: str, severity: str, peak_value: float | None, reading_ts: datetime
    ) -> None:
        """Continue an episode that is still open in the state DB (collector restart)."""
        self._episode = self._adopted(key, severity, peak_value)
        self._last_us = max(self._last_us, to_us(reading_ts))

    def reconcile(self, view: SensorView) -> bool:
        """Bring the cache in line with the state DB; True if it took over an episode it did
        not hold (raised by another collector, or open before a restart).

        While changes of this sensor are still on their way to the DB only the outcomes of
        the answered ones are applied: the answer to the newer ones comes with them."""
        if view.seq is not None:
            self._acked = max(self._acked, view.seq)
            self._settle(view)
        if not self.settled:
            return False
        adopted = self._follow_episode(view)
        if self._track:
            self._follow_clocks(view.clocks)
        return adopted

    def _settle(self, view: SensorView) -> None:
        episode = self._episode
        for key, outcome in view.outcomes:
            if episode is None or episode.key != key:
                continue
            if outcome in DROPPED_RAISES:
                self._keep_peak(episode)
                self._episode = episode = None
            elif outcome == "joined" and view.episode is not None:
                episode.key = view.episode.key
            elif outcome == "held" and view.episode is not None and view.episode.key == key:
                episode.level = self._adopted(key, view.episode.severity, None).level

    def _keep_peak(self, episode: _Episode) -> None:
        """A raise the state DB did not take: the values this collector saw since still
        count for the episode live at their time (reported when the stretch ends)."""
        if episode.peak_us > NEVER and episode.peak > self._hi:
            self._hi, self._hi_us = episode.peak, episode.peak_us

    def _follow_episode(self, view: SensorView) -> bool:
        live, episode = view.episode, self._episode
        if view.last_resolved_us is not None:
            until = view.last_resolved_us + self._cooldown_us
            self._cooldown_until = max(self._cooldown_until, until)
        if episode is not None and (live is None or live.key != episode.key):
            self._let_go(episode)
            episode = self._episode = None
        if live is None:
            return False
        adopted = self._adopted(live.key, live.severity, live.peak_value)
        if episode is not None and episode.peak > adopted.peak:
            adopted.peak, adopted.peak_us = episode.peak, episode.peak_us
        if self._hi_us >= to_us(live.reading_ts) and self._hi > adopted.peak:
            adopted.peak, adopted.peak_us = self._hi, self._hi_us  # seen before it knew of it
        self._hi, self._hi_us = -math.inf, NEVER
        self._episode = adopted
        return episode is None

    def _let_go(self, episode: _Episode) -> None:
        """The state DB closed an episode this collector held (another collector resolved
        it): record a peak only this collector saw."""
        if episode.peak > episode.told:
            peak, last = self._sign * episode.peak, from_us(self._last_us)
            self.outbox.append(self._event("peak", episode.level, peak, last, episode))

    def _adopted(self, key: str, severity: str, peak_value: float | None) -> _Episode:
        level = self._severities.index(severity) if severity in self._severities else 0
        peak = self._sign * peak_value if peak_value is not None else self._limits[level]
        return _Episode(key, level, peak, told=peak)

    def _follow_clocks(self, clocks: Mapping[str, Sequence[Sequence[int]]]) -> None:
        """Take the merged breach runs: an earlier start another collector saw, or a break
        (a reading inside the limit) it saw during this collector's run."""
        for i, severity in enumerate(self._severities):
            marks = clocks.get(severity) or ()
            self._known[i] = marks
            if self._pending[i] is None:
                self._shared[i] = run_start(marks, LATEST) if marks else None
                continue
            self._shared[i] = None
            if not marks:
                continue
            start = run_start(marks, self._last_us)
            if start is None:
                # In a run, but another collector's break came after its start: the run
                # started again at the latest with this collector's last reading.
                start = self._last_us
                self._mark(i, start, BREACH)
            self._pending[i] = start
            self._breaks[i] = _first_clear_after(marks, self._last_us)
        self._watching = any(s is not None for s in self._shared)

    def _event(
        self,
        kind: EventKind,
        level: int,
        value: float,
        ts: datetime,
        episode: _Episode | None = None,
    ) -> AlertEvent:
        episode = episode or self._episode
        assert episode is not None
        self._seq = seq = self.counter()
        episode.told = max(episode.told, episode.peak)
        since = self._pending[level] if kind in ("raised", "escalated") else None
        return AlertEvent(
            kind=kind,
            episode_key=episode.key,
            device_id=self.device_id,
            sensor_id=self.sensor_id,
            severity=self._severities[level],
            value=value,
            threshold=self._sign * self._limits[level],
            reading_ts=ts,
            at=datetime.now(UTC),
            direction=self.thresholds.direction,
            peak_value=self._sign * episode.peak,
            sensor_type=self.sensor_type,
            unit=self.unit,
            asset_id=self.asset_id,
            since=from_us(since) if since is not None else None,
            min_duration_s=self.thresholds.min_duration_s,
            cooldown_s=self.thresholds.cooldown_s,
            seq=seq,
        )


# -- every sensor of a registry --------------------------------------------------------------


def _signature(sensor: SensorSpec, asset_id: str | None) -> tuple[object, ...]:
    return (sensor.thresholds, sensor.type, sensor.unit, asset_id)


class AlertEvaluator:
    """Every sensor with thresholds of a registry; :meth:`observe` is the ingest-path hook.

    Thread-safe (one lock per batch): MQTT ingest threads, the Modbus and OPC-UA loops may
    hand readings over at the same time, and the state writer reconciles from its thread.
    """

    def __init__(self, registry: Registry | None = None) -> None:
        self._lock = threading.Lock()
        self._sensors: dict[str, dict[str, SensorEvaluator]] = {}
        self._signatures: dict[tuple[str, str], tuple[object, ...]] = {}
        self._marks: list[ClockMark] = []
        self._outbox: list[AlertEvent] = []
        self._counter = itertools.count(1).__next__
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
                            marks=self._marks,
                            outbox=self._outbox,
                            counter=self._counter,
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
        """:meth:`observe` for readings in columns; no datetime is made unless an event needs
        one."""
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
                event = evaluator.feed_us(value, ts_us)
                if event is not None:
                    events.append(event)
        return events

    def take_marks(self) -> list[ClockMark]:
        """The breach-run marks proposed since the last call (cheap when there are none)."""
        if not self._marks:
            return []
        with self._lock:
            marks = self._marks[:]
            self._marks.clear()
        return marks

    def take_events(self) -> list[AlertEvent]:
        """Episode changes made while reconciling (a peak to record), since the last call."""
        if not self._outbox:
            return []
        with self._lock:
            events = self._outbox[:]
            self._outbox.clear()
        return events

    def evaluator(self, device_id: str, sensor_id: str) -> SensorEvaluator | None:
        return self._sensors.get(device_id, {}).get(sensor_id)

    def reconcile(self, views: Iterable[SensorView]) -> int:
        """Apply the state DB's answers; returns how many episodes were taken over."""
        adopted = 0
        with self._lock:
            for view in views:
                evaluator = self._sensors.get(view.device_id, {}).get(view.sensor_id)
                if evaluator is not None and evaluator.reconcile(view):
                    adopted += 1
        return adopted

    def interest(self) -> list[tuple[str, str]]:
        """Sensors whose state the DB may have changed under this collector (an episode, a
        breach run in progress): the periodic read asks for them besides the live ones."""
        with self._lock:
            return [
                (device_id, sensor_id)
                for device_id, by_sensor in self._sensors.items()
                for sensor_id, evaluator in by_sensor.items()
                if evaluator.busy
            ]

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


# -- silent devices --------------------------------------------------------------------------

# A device that declares ``expected_interval_s`` is silent after this many intervals without a
# usable reading: the factor the Dagster side uses for gaps and device health.
SILENCE_INTERVALS = 3
# Collectors tell each other what they heard with their heartbeats: a limit shorter than two
# heartbeat periods would raise silences another collector is about to report as heard.
MIN_SILENCE_HEARTBEATS = 2


@dataclass(frozen=True, slots=True)
class SilenceRule:
    """How a collector watches one device for silence (see :func:`silence_rules`)."""

    device_id: str
    limit_s: float  # silent after this long without a usable reading
    expected_s: float | None  # the declared interval, for the reason
    severity: str | None  # of the episode; None: device status only
    asset_id: str | None = None


def silence_rules(
    registry: Registry,
    *,
    offline_after_s: float,
    heartbeat_s: float,
    collected: Sequence[str],
) -> dict[str, SilenceRule]:
    """One rule per enabled device of a protocol this collector runs: the devices it answers
    for. Limit: ``SILENCE_INTERVALS`` x ``expected_interval_s`` if declared, else the
    collector's ``offline_after_s``; never under two heartbeats."""
    floor = MIN_SILENCE_HEARTBEATS * heartbeat_s
    rules = {}
    for device in registry.devices:
        if not device.enabled or device.protocol not in collected:
            continue
        expected = device.expected_interval_s
        limit = SILENCE_INTERVALS * expected if expected is not None else offline_after_s
        rules[device.device_id] = SilenceRule(
            device.device_id,
            max(limit, floor),
            expected,
            None if device.silence_alert == "off" else device.silence_alert,
            device.asset_id,
        )
    return rules


def silence_reason(
    device_id: str,
    *,
    last_reading_ts: datetime | None,
    watched_since: datetime,
    expected_s: float | None,
    limit_s: float,
    now: datetime,
    unanswered: bool = False,
) -> str:
    """The sentence operators read, e.g. ``no reading from pump-3 since 10:42:05 UTC
    (expected every 60 s)``."""

    def when(ts: datetime) -> str:
        ts = ts.astimezone(UTC)
        same_day = ts.date() == now.astimezone(UTC).date()
        return ts.strftime("%H:%M:%S UTC" if same_day else "%Y-%m-%d %H:%M:%S UTC")

    if last_reading_ts is not None:
        text = f"no reading from {device_id} since {when(last_reading_ts)}"
    else:
        text = f"no reading from {device_id} yet, watched since {when(watched_since)}"
    if expected_s is not None:
        text += f" (expected every {expected_s:g} s)"
    else:
        text += f" (expected within {limit_s:g} s)"
    if unanswered:
        text += "; its polls go unanswered"
    return text
