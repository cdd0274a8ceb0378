"""The collector's link to the state DB: alert episodes and device status, off the ingest path.

The ingest path (:meth:`StateReporter.observe`, called after the spool has the readings)
only evaluates thresholds in memory, queues the resulting alert events and notes which
devices were heard. A writer thread does all database work:

- alert events and breach-run marks, written in arrival order, one transaction per wake-up,
  decided by the state DB (``streams/alert_arbiter.py``: one live episode per sensor however
  many collectors share its readings; a retried write is harmless); the DB's answer is handed
  back to the evaluator, whose in-memory state is a cache of it;
- every ``sync_s`` (1 s) a read of the live episodes and running breach runs, so collectors
  sharing a subscription learn of each other's episodes, resolves and dips between changes
  of their own (one small indexed query; nothing per reading);
- heartbeats every ``heartbeat_s`` per device heard since the last one (never per reading),
  ``error`` for a device that only produced gaps (missed polls); statuses are written when
  they change;
- with each heartbeat, silence: a device this collector answers for (enabled, of a protocol it
  runs) and has not heard for its limit (``streams/alerts.silence_rules``) is proposed to the
  state DB, which raises one ``silence`` episode for it unless another collector heard it
  meanwhile (``alert_arbiter.decide_silence``); the device is then ``offline``. The first
  usable reading heard again, by any collector, resolves the episode;
- on (re)connect: migrate the schema, insert registry devices the DB does not know, and
  take over the episodes still open in the DB (that read) so a restart does not raise them
  again.

When the state DB is unreachable the collector keeps collecting: events wait in memory (at
most ``max_queued`` of them; beyond that new ones are dropped and counted), heartbeats are
coalesced per device, and everything is written when the DB is back. Both transitions are
logged.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.engine import URL, Engine
from sqlalchemy.orm import Session

from integration_platform.state.devices import DEVICE_SENSOR_ID, Device
from integration_platform.streams.alert_arbiter import (
    SilenceAnswer,
    SilenceProposal,
    apply_changes,
    decide_silence,
    load_views,
)
from integration_platform.streams.alerts import (
    AlertEvaluator,
    AlertEvent,
    ClockMark,
    SensorView,
    SilenceRule,
    silence_rules,
)
from integration_platform.streams.devices import Registry
from integration_platform.streams.readings import Reading, ReadingColumns, from_us

log = logging.getLogger(__name__)

DEFAULT_MAX_QUEUED = 10_000
DEFAULT_SYNC_S = 1.0
MAX_BACKOFF_S = 30.0
NOT_RAISED_BECAUSE = {
    "closed": "its reading falls inside an episode already resolved",
    "late": "older than the sensor's newest episode",
    "cooldown": "the sensor's last episode resolved less than cooldown_s before",
    "rejected": "the breach run, with every collector's readings, is shorter than min_duration_s",
}


@dataclass
class StateStats:
    alerts_raised: int = 0
    alerts_escalated: int = 0
    alerts_resolved: int = 0
    events_written: int = 0
    events_queued: int = 0
    events_dropped: int = 0
    heartbeats_written: int = 0
    db_errors: int = 0
    db_available: bool = False
    restored_episodes: int = 0
    # What the state DB decided (several collectors: raises of one episode by each of them).
    episodes_opened: int = 0
    episodes_resolved: int = 0
    raises_joined: int = 0
    raises_dropped: int = 0  # inside a resolved episode, late, in cooldown, run too short
    episodes_adopted: int = 0  # raised by another collector, taken over
    marks_written: int = 0
    marks_dropped: int = 0
    syncs: int = 0
    # Silent devices: episodes this collector opened, found open (another collector's),
    # resolved or closed, and proposals another collector's heartbeat answered.
    silences_opened: int = 0
    silences_joined: int = 0
    silences_resolved: int = 0
    silences_heard_elsewhere: int = 0


def _utcnow() -> datetime:
    return datetime.now(UTC)


class StateReporter:
    """Alert evaluation plus the state-DB writer thread of one collector."""

    def __init__(
        self,
        url: str | URL,
        registry: Registry,
        *,
        reporter_id: str,
        heartbeat_s: float = 5.0,
        offline_after_s: float = 60.0,
        max_queued: int = DEFAULT_MAX_QUEUED,
        collected: Sequence[str] = ("mqtt", "modbus", "opcua"),
        sync_s: float = DEFAULT_SYNC_S,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], datetime] = _utcnow,
    ) -> None:
        """``clock`` (monotonic seconds) measures silence here; ``wall_clock`` stamps heartbeats
        and is what collectors compare: both are parameters so tests can move time."""
        self.url = url
        self.reporter_id = reporter_id
        self.heartbeat_s = heartbeat_s
        self.offline_after_s = offline_after_s
        self.max_queued = max_queued
        self.collected = tuple(collected)
        self.sync_s = sync_s
        self.evaluator = AlertEvaluator(registry)
        self.stats = StateStats()
        self._registry = registry
        self._registry_dirty = True
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._flush_lock = threading.Lock()  # one writer at a time (thread, stop, tests)
        self._events: deque[AlertEvent] = deque()
        self._marks: list[ClockMark] = []
        self._heard: dict[str, datetime] = {}  # device -> newest reading ts since last beat
        self._gaps: dict[str, int] = {}  # device -> gap readings since last beat
        self._status: dict[str, str] = {}  # device -> status last written
        self._clock = clock
        self._wall = wall_clock
        self._last_heard: dict[str, float] = {}  # device -> monotonic time last heard
        self._started = clock()
        # Silence (writer thread, but for what the ingest path reads or fills under _lock).
        self._rules: dict[str, SilenceRule] = {}
        self._watched_since: dict[str, float] = {}  # device -> when its rule appeared
        self._to_close: set[str] = set()  # no longer alerted on: close their episodes
        self._set_rules(registry)
        self._last_reading: dict[str, datetime] = {}  # device -> newest reading ts heard
        self._silent: frozenset[str] = frozenset()  # devices with a live silence episode
        self._resumed: dict[str, datetime] = {}  # silent device -> first reading heard again
        self._pending_heard: dict[str, datetime] = {}  # heard, not yet through a silence pass
        self._confirmed: set[str] = set()  # silent without an episode (silence_alert: off)
        self._recheck_at: dict[str, float] = {}  # heard by another collector: ask again then
        self._offline: dict[str, str] = {}  # confirmed silent, status not written yet: reason
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._engine: Engine | None = None
        self._schema_ready = False
        self._restored = False

    # -- ingest path ----------------------------------------------------------------------

    def observe(self, readings: Sequence[Reading]) -> None:
        """Evaluate and note readings the spool accepted; never raises, never blocks on I/O."""
        try:
            events = self.evaluator.observe(readings)
            marks = self.evaluator.take_marks()
            silent = self._silent
            with self._lock:
                heard, gaps, resumed = self._heard, self._gaps, self._resumed
                for reading in readings:
                    if reading.value is None:
                        gaps[reading.device_id] = gaps.get(reading.device_id, 0) + 1
                    else:
                        heard[reading.device_id] = reading.ts
                        if silent and reading.device_id in silent:
                            first = resumed.get(reading.device_id)
                            if first is None or reading.ts < first:
                                resumed[reading.device_id] = reading.ts
                self._changes(events, marks)
        except Exception:  # the collector must keep collecting whatever happens here
            log.exception("alert evaluation failed for a group of %d readings", len(readings))

    def observe_columns(self, columns: ReadingColumns) -> None:
        """:meth:`observe` for readings in columns (the MQTT hot path)."""
        try:
            events = self.evaluator.observe_columns(columns)
            marks = self.evaluator.take_marks()
            newest: dict[str, int] = {}
            gaps_seen: dict[str, int] = {}
            for device_id, value, ts_us in zip(
                columns.device_id, columns.value, columns.ts_us, strict=True
            ):
                if value is None:
                    gaps_seen[device_id] = gaps_seen.get(device_id, 0) + 1
                else:
                    newest[device_id] = ts_us
            silent = self._silent
            back = _first_heard(columns, silent) if silent and not silent.isdisjoint(newest) else {}
            with self._lock:
                heard, gaps, resumed = self._heard, self._gaps, self._resumed
                for device_id, count in gaps_seen.items():
                    gaps[device_id] = gaps.get(device_id, 0) + count
                for device_id, ts_us in newest.items():
                    heard[device_id] = from_us(ts_us)
                for device_id, ts in back.items():
                    if device_id not in resumed or ts < resumed[device_id]:
                        resumed[device_id] = ts
                self._changes(events, marks)
        except Exception:  # the collector must keep collecting whatever happens here
            log.exception("alert evaluation failed for a group of %d readings", len(columns))

    def _changes(self, events: list[AlertEvent], marks: list[ClockMark]) -> None:
        """Queue what the evaluator proposed (under ``_lock``) and wake the writer: other
        collectors' decisions depend on these marks as soon as they are made."""
        if marks:
            room = max(self.max_queued * 4 - len(self._marks), 0)
            if room < len(marks):
                self.stats.marks_dropped += len(marks) - room
                marks = marks[:room]
            self._marks.extend(marks)
        if events:
            self._queue(events)
        if events or marks:
            self._wake.notify()

    def _queue(self, events: list[AlertEvent]) -> None:
        stats = self.stats
        for event in events:
            if event.kind == "raised":
                stats.alerts_raised += 1
                log.warning(
                    "alert %s raised: %s %s %s %s (threshold %s) at %s",
                    event.episode_key,
                    event.severity,
                    event.sensor_id,
                    "at or above" if event.direction == "above" else "at or below",
                    event.value,
                    event.threshold,
                    event.reading_ts.isoformat(),
                )
            elif event.kind == "escalated":
                stats.alerts_escalated += 1
                log.warning("alert %s escalated to %s", event.episode_key, event.severity)
            elif event.kind == "peak":
                pass  # a detail of an episode another collector resolved
            else:
                stats.alerts_resolved += 1
                log.info("alert %s resolved (value %s)", event.episode_key, event.value)
            if len(self._events) >= self.max_queued:
                stats.events_dropped += 1
                if stats.events_dropped % 100 == 1:
                    log.error(
                        "state DB backlog full (%d alert events): dropped %s (%d dropped so far)",
                        self.max_queued,
                        event.episode_key,
                        stats.events_dropped,
                    )
                continue
            self._events.append(event)
        stats.events_queued = len(self._events)

    # -- life cycle -----------------------------------------------------------------------

    def update_registry(self, registry: Registry) -> None:
        self.evaluator.configure(registry)
        with self._lock:
            self._registry = registry
            self._registry_dirty = True
            self._set_rules(registry)

    def _set_rules(self, registry: Registry) -> None:
        """The devices this collector answers for (under ``_lock``); a device that left them
        or turned ``silence_alert`` off gets its silence episode closed with the next
        heartbeat."""
        rules = silence_rules(
            registry,
            offline_after_s=self.offline_after_s,
            heartbeat_s=self.heartbeat_s,
            collected=self.collected,
        )
        now = self._clock()
        for device_id in rules.keys() - self._rules.keys():
            self._watched_since[device_id] = now
            self._to_close.discard(device_id)
        for device_id in self._rules.keys() - rules.keys():
            self._watched_since.pop(device_id, None)
            self._to_close.add(device_id)
        for device_id, rule in rules.items():
            old = self._rules.get(device_id)
            if rule.severity is None and old is not None and old.severity is not None:
                self._to_close.add(device_id)
        self._rules = rules

    def start(self) -> None:
        """Connect once now (so open episodes are restored before readings flow), then run
        the writer thread; a DB that is down only delays the writes."""
        try:
            with self._flush_lock:
                self._connect()
            self._available()
        except Exception as exc:
            self._unavailable(exc)
        self._thread = threading.Thread(target=self._run, name="state-writer", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Write what is queued and the last heartbeats (up to ``timeout``), then stop."""
        self._stop.set()
        with self._lock:
            self._wake.notify_all()
        if self._thread is not None:
            self._thread.join(timeout + 5)
        try:
            self._flush(final=True)
        except Exception as exc:
            self._unavailable(exc)
        if self._events:
            log.error(
                "%d alert events not written: the state DB is unreachable (%s)",
                len(self._events),
                self._where(),
            )
        if self._engine is not None:
            self._engine.dispose()

    def flush(self, *, sync: bool = True) -> bool:
        """Write everything queued now and beat, after reading the other collectors' changes
        unless ``sync`` is False (tests replay a beat that comes before the periodic read);
        False if the DB refused."""
        try:
            self._flush(final=False, beat=True, sync=sync)
            return True
        except Exception as exc:
            self._unavailable(exc)
            return False

    # -- writer thread --------------------------------------------------------------------

    def _run(self) -> None:
        backoff = 0.5
        next_beat = time.monotonic() + self.heartbeat_s
        next_sync = time.monotonic() + self.sync_s
        while not self._stop.is_set():
            with self._lock:
                if not self._events and not self._marks:
                    due = min(next_beat, next_sync if self.sync_s > 0 else next_beat)
                    self._wake.wait(timeout=min(0.5, max(0.0, due - time.monotonic())))
            if self._stop.is_set():
                return
            now = time.monotonic()
            beat = now >= next_beat
            sync = self.sync_s > 0 and now >= next_sync
            try:
                self._flush(final=False, beat=beat, sync=sync)
                if sync:
                    next_sync = time.monotonic() + self.sync_s
                backoff = 0.5
            except Exception as exc:
                self._unavailable(exc)
                if self._stop.wait(backoff):
                    return
                backoff = min(backoff * 2, MAX_BACKOFF_S)
                continue
            if beat:
                next_beat = time.monotonic() + self.heartbeat_s

    def _flush(self, *, final: bool, beat: bool = True, sync: bool = False) -> None:
        with self._flush_lock:
            self._flush_locked(final=final, beat=beat, sync=sync)

    def _flush_locked(self, *, final: bool, beat: bool, sync: bool) -> None:
        engine = self._connect()
        with self._lock:
            events, marks = list(self._events), list(self._marks)
        if events or marks:
            with Session(engine) as session, session.begin():
                views = apply_changes(session, events, marks, reporter_id=self.reporter_id)
            with self._lock:
                for _ in events:
                    self._events.popleft()
                del self._marks[: len(marks)]
                self.stats.events_queued = len(self._events)
            self.stats.events_written += len(events)
            self.stats.marks_written += len(marks)
            self._answered(views)
        if sync and not final:
            self._sync(engine)
        if beat or final:
            self._beat(engine, final=final)
        self._available()

    def _answered(self, views: list[SensorView]) -> None:
        """Count and log what the state DB decided, then hand its answer to the evaluator."""
        stats = self.stats
        for view in views:
            for key, outcome in view.outcomes:
                if outcome == "opened":
                    stats.episodes_opened += 1
                elif outcome == "resolved":
                    stats.episodes_resolved += 1
                elif outcome == "joined":
                    stats.raises_joined += 1
                    if view.episode is not None and view.episode.key != key:
                        log.info("alert %s joins episode %s", key, view.episode.key)
                elif outcome in NOT_RAISED_BECAUSE:
                    stats.raises_dropped += 1
                    log.info("alert %s not raised: %s", key, NOT_RAISED_BECAUSE[outcome])
        self._reconcile(views)

    def _reconcile(self, views: list[SensorView]) -> None:
        """Hand the state DB's answer to the evaluator; what that changes (a run restarted, a
        peak to record) is queued like any proposal."""
        self.stats.episodes_adopted += self.evaluator.reconcile(views)
        events, marks = self.evaluator.take_events(), self.evaluator.take_marks()
        if events or marks:
            with self._lock:
                self._changes(events, marks)

    def _sync(self, engine: Engine) -> None:
        """Read what other collectors changed: live episodes and running breach runs."""
        with Session(engine) as session:
            views = load_views(session, self.evaluator.interest())
        self._note_silences(views)
        self._reconcile(views)
        self.stats.syncs += 1

    def _note_silences(self, views: Iterable[SensorView]) -> None:
        """The devices with a live silence episode, from a read of every live episode."""
        self._silent = frozenset(
            v.device_id for v in views if v.sensor_id == DEVICE_SENSOR_ID and v.episode
        )

    def _connect(self) -> Engine:
        from integration_platform.state import make_engine, migrate

        if self._engine is None:
            self._engine = make_engine(self.url)
        if not self._schema_ready:
            migrate.upgrade(self._engine.url)
            self._schema_ready = True
        with self._lock:
            dirty, registry = self._registry_dirty, self._registry
        if dirty:
            from integration_platform.streams.registry_db import ensure_devices

            with Session(self._engine) as session, session.begin():
                ensure_devices(session, registry, source=f"collector:{self.reporter_id}")
            with self._lock:
                self._registry_dirty = registry is not self._registry
        if not self._restored:
            self._restore(self._engine)
            self._restored = True
        return self._engine

    def _restore(self, engine: Engine) -> None:
        with Session(engine) as session:
            views = load_views(session)
        self._note_silences(views)
        restored = self.evaluator.restore(
            (
                v.device_id,
                v.sensor_id,
                v.episode.key,
                v.episode.severity,
                v.episode.peak_value,
                v.episode.reading_ts,
            )
            for v in views
            if v.episode is not None
        )
        self._reconcile(views)  # breach runs other collectors have in progress
        self.stats.restored_episodes += restored
        if restored:
            log.info("continuing %d alert episodes still open in the state DB", restored)

    def _beat(self, engine: Engine, *, final: bool) -> None:
        """Heartbeats, then silence, then the statuses that follow: three short transactions
        that each take one kind of row lock in device order, so collectors beating at once
        cannot deadlock (PostgreSQL)."""
        now, mono = self._wall(), self._clock()
        with self._lock:
            heard, self._heard = self._heard, {}
            gaps, self._gaps = self._gaps, {}
            resumed, self._resumed = self._resumed, {}
            to_close, self._to_close = self._to_close, set()
            rules = self._rules
        try:
            self._write_heartbeats(engine, heard, now)
        except Exception:
            with self._lock:  # put the heartbeats back for the next attempt
                for device_id, ts in heard.items():
                    if device_id not in self._heard or self._heard[device_id] < ts:
                        self._heard[device_id] = ts
                for device_id, count in gaps.items():
                    self._gaps[device_id] = self._gaps.get(device_id, 0) + count
                _keep_first(self._resumed, resumed)
                self._to_close |= to_close
            raise
        self.stats.heartbeats_written += len(heard)
        for device_id, ts in heard.items():
            self._status[device_id] = "online"
            self._last_heard[device_id] = mono
            if device_id not in self._last_reading or self._last_reading[device_id] < ts:
                self._last_reading[device_id] = ts
            self._recheck_at.pop(device_id, None)
            self._confirmed.discard(device_id)
            self._offline.pop(device_id, None)
        # Heard devices wait here until a silence pass took them (it may fail and retry).
        _keep_first(self._pending_heard, {d: resumed.get(d, ts) for d, ts in heard.items()})
        proposals = [] if final else self._proposals(rules, gaps, mono)
        try:
            answer = self._silence(engine, proposals, to_close, now)
        except Exception:
            with self._lock:
                self._to_close |= to_close
            raise
        for o in answer.outcomes:
            if o.outcome in ("opened", "joined", "silent"):
                self._offline[o.device_id] = o.reason or "silent"
        self._write_statuses(engine, gaps, heard, now)

    def _write_heartbeats(
        self, engine: Engine, heard: Mapping[str, datetime], now: datetime
    ) -> None:
        if not heard:
            return
        stamp = sa.literal(now, Device.__table__.c.status_changed_at.type)
        became_online = sa.case((Device.status != "online", stamp), else_=Device.status_changed_at)
        with Session(engine) as session, session.begin():
            for device_id in sorted(heard):
                session.execute(
                    sa.update(Device)
                    .where(Device.device_id == device_id)
                    .values(
                        last_heartbeat=now,
                        last_reading_ts=heard[device_id],
                        status="online",
                        status_detail=None,
                        status_changed_at=became_online,
                        reported_by=self.reporter_id,
                    )
                    .execution_options(synchronize_session=False)
                )

    def _proposals(
        self, rules: Mapping[str, SilenceRule], gaps: Mapping[str, int], mono: float
    ) -> list[SilenceProposal]:
        """Devices this collector has not heard for their limit and has not settled yet (a
        live episode, a confirmed silence, another collector's recent heartbeat)."""
        proposals = []
        for device_id, rule in rules.items():
            if device_id in self._silent or device_id in self._confirmed:
                continue
            if mono < self._recheck_at.get(device_id, mono):
                continue
            since = self._last_heard.get(device_id, self._watched_since.get(device_id, mono))
            silent_s = mono - max(since, self._started)
            if silent_s < rule.limit_s:
                continue
            proposals.append(
                SilenceProposal(
                    device_id,
                    limit_s=rule.limit_s,
                    silent_s=silent_s,
                    severity=rule.severity,
                    expected_s=rule.expected_s,
                    asset_id=rule.asset_id,
                    last_reading_ts=self._last_reading.get(device_id),
                    unanswered=device_id in gaps,
                )
            )
        return proposals

    def _silence(
        self,
        engine: Engine,
        proposals: list[SilenceProposal],
        to_close: Iterable[str],
        now: datetime,
    ) -> SilenceAnswer:
        """Let the state DB decide this collector's silence changes; count and log them."""
        heard = dict(self._pending_heard)
        if not heard and not proposals and not to_close:
            return SilenceAnswer([], self._silent)
        with Session(engine) as session, session.begin():
            answer = decide_silence(
                session,
                heard=heard,
                proposals=proposals,
                unwatched=to_close,
                at=now,
                reporter_id=self.reporter_id,
            )
        for device_id in heard:
            self._pending_heard.pop(device_id, None)
        self._silent = answer.live
        stats, mono = self.stats, self._clock()
        limits = {p.device_id: p.limit_s for p in proposals}
        for o in answer.outcomes:
            if o.outcome == "opened":
                stats.silences_opened += 1
                log.warning("alert %s raised: %s", o.episode_key, o.reason)
            elif o.outcome == "joined":
                stats.silences_joined += 1
                log.info("device %s: silence alert %s already open", o.device_id, o.episode_key)
            elif o.outcome == "silent":
                self._confirmed.add(o.device_id)
            elif o.outcome == "heard" and o.heard_at is not None:
                stats.silences_heard_elsewhere += 1
                left = limits[o.device_id] - (now - o.heard_at).total_seconds()
                self._recheck_at[o.device_id] = mono + max(left, self.heartbeat_s)
            elif o.outcome == "resolved":
                stats.silences_resolved += 1
                log.info("alert %s resolved: %s is heard again", o.episode_key, o.device_id)
            elif o.outcome == "closed":
                stats.silences_resolved += 1
                log.info("alert %s closed: %s is no longer alerted on", o.episode_key, o.device_id)
        return answer

    def _write_statuses(
        self,
        engine: Engine,
        gaps: Mapping[str, int],
        heard: Mapping[str, datetime],
        now: datetime,
    ) -> None:
        """``error`` for devices that only produced gaps; ``offline`` for devices the state DB
        confirmed silent (conditional: whoever wrote the status before)."""
        errors = {
            device_id: f"no answer: {count} missed readings"
            for device_id, count in gaps.items()
            if device_id not in heard and self._status.get(device_id) != "error"
        }
        offline = {d: reason for d, reason in self._offline.items() if d not in gaps}
        if not errors and not offline:
            self._offline.clear()
            return
        with Session(engine) as session, session.begin():
            for device_id in sorted(errors.keys() | offline.keys()):
                status = "error" if device_id in errors else "offline"
                detail = errors.get(device_id) or offline[device_id]
                changed = session.execute(
                    sa.update(Device)
                    .where(Device.device_id == device_id, Device.status != status)
                    .values(
                        status=status,
                        status_detail=detail,
                        status_changed_at=now,
                        reported_by=self.reporter_id,
                    )
                    .execution_options(synchronize_session=False)
                ).rowcount
                if changed:
                    log.warning("device %s is %s (%s)", device_id, status, detail)
        for device_id in errors:
            self._status[device_id] = "error"
        for device_id in offline:
            self._status[device_id] = "offline"
        self._offline.clear()

    # -- reporting ------------------------------------------------------------------------

    def _where(self) -> str:
        from integration_platform.state import mask_password

        return mask_password(self.url if isinstance(self.url, URL) else str(self.url))

    def _unavailable(self, exc: Exception) -> None:
        self.stats.db_errors += 1
        if self.stats.db_available or self.stats.db_errors == 1:
            log.error(
                "state DB %s unreachable (%s): collecting on; %d alert events and the device "
                "heartbeats are kept in memory (at most %d events) until it is back",
                self._where(),
                " ".join(str(exc).split())[:300],
                len(self._events),
                self.max_queued,
            )
        self.stats.db_available = False

    def _available(self) -> None:
        if not self.stats.db_available and self.stats.db_errors:
            log.warning(
                "state DB %s reachable again: queued alert events and heartbeats written",
                self._where(),
            )
        self.stats.db_available = True


def write_event(session: Session, event: AlertEvent, *, reporter_id: str | None = None) -> str:
    """Apply one alert event to ``sensor_alerts`` through the arbiter (idempotent: a repeated
    event changes nothing); returns its outcome (``opened``, ``joined``, ``resolved``, ...)."""
    (view,) = apply_changes(session, [event], reporter_id=reporter_id)
    return view.outcomes[0][1]


def _keep_first(into: dict[str, datetime], new: Mapping[str, datetime]) -> None:
    """Merge reading times per device, keeping the earliest."""
    for device_id, ts in new.items():
        if device_id not in into or ts < into[device_id]:
            into[device_id] = ts


def _first_heard(columns: ReadingColumns, devices: frozenset[str]) -> dict[str, datetime]:
    """The earliest usable reading per device among ``devices`` (silent ones): a second look
    at a group only when a silent device speaks again."""
    first: dict[str, int] = {}
    for device_id, value, ts_us in zip(
        columns.device_id, columns.value, columns.ts_us, strict=True
    ):
        if value is not None and device_id in devices and ts_us < first.get(device_id, ts_us + 1):
            first[device_id] = ts_us
    return {device_id: from_us(ts_us) for device_id, ts_us in first.items()}
