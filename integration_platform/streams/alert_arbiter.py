"""The state DB as the arbiter of alert episodes, for one collector or many.

Collectors sharing an MQTT v5 subscription (``$share/<group>/...``) each get part of every
sensor's readings: mosquitto picks a subscriber per *message*, so a sensor cannot be routed to
one collector by the broker, and forwarding readings between collectors would need a second
transport and an owner election. What every collector already shares is the state DB, and
alert episodes change rarely. So each collector's evaluator (``streams/alerts.py``) stays an
in-memory cache that costs nothing for quiet and steady readings, proposes only *changes*, and
this module decides them inside the writer's transaction, against what all collectors
reported. One collector (the common case) gets its proposals confirmed; nothing is added per
reading, only per change.

Rules, all in reading time (the readings' ``ts``; the collectors' wall clocks are never
compared, so clock skew between hosts changes nothing):

- **one live episode per sensor**: a partial unique index on ``sensor_alerts`` (device, sensor)
  ``WHERE status IN ('open', 'acknowledged')``; per sensor, writers take the
  ``sensor_alert_states`` row ``FOR UPDATE`` (SQLite: ``BEGIN IMMEDIATE`` serialises them), in
  sensor order, so concurrent collectors decide one after the other;
- **raise = insert or join**: a raise at reading time *r* joins the episode that covers *r*
  (opened at or before *r* and not resolved before it, or the live episode when none lies
  between); else it is *late* when the sensor's newest episode started after *r*, in
  *cooldown* when that one resolved less than ``cooldown_s`` before *r*, *rejected* when the
  merged breach run at *r* is shorter than ``min_duration_s``, and only then opens a row. The
  first row committed keeps its key and ``reading_ts`` (work orders refer to them); a joining
  raise can still raise its severity and peak;
- **escalate** applies to the episode covering its reading, severity only upwards, after the
  same ``min_duration_s`` check on the higher level's run;
- **resolve** at *c* closes the live episode if it opened before *c* (a conditional update, so
  an operator's acknowledgement cannot reopen it); for an episode already resolved later than
  *c* it moves the resolve back to *c* (the first reading back inside, whoever saw it): the
  result does not depend on which collector committed first. A resolve older than the episode
  (seen by a collector that learnt of it late) changes nothing;
- **min duration**: the "first breach at" is shared. Collectors report the marks of each level's
  breach runs (a run started at *t*, a reading inside the limit at *t*); ``run_start`` over the
  union says when the run in progress at *r* started, so a collector that missed the start of
  a run still raises on time, and a dip only one collector saw breaks everybody's run;
- when in doubt, merge: excursions that reach the DB out of order end in one episode, never in
  two; the cost is that two excursions closer than the collectors' write delay may be one row.

Every call answers with a :class:`~integration_platform.streams.alerts.SensorView` per sensor
(the live episode, the merged marks, the last resolve) that the collector's evaluator takes
over; :func:`load_views` is the periodic read that keeps collectors in step between changes.

**Silent devices** (:func:`decide_silence`) take the same path with wall-clock rules, since
silence has no reading to date it: a device's episode is the live episode of its reserved
sensor ``*`` (the same lock row, the same one-live index), raised only when no collector's
heartbeat says it was heard within the silence limit, joined when another collector raised it
first, and resolved by whichever collector hears the device again.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from integration_platform.state.devices import (
    ACTIVE_ALERT_STATUSES,
    DEVICE_SENSOR_ID,
    Device,
    SensorAlert,
    SensorAlertState,
)
from integration_platform.streams.alerts import (
    BREACH,
    CLEAR,
    LATEST,
    SEVERITIES,
    AlertEvent,
    ClockMark,
    LiveEpisode,
    SensorView,
    episode_key,
    merge_marks,
    reached_between,
    run_start,
    seconds_to_us,
    silence_reason,
)
from integration_platform.streams.readings import from_us, to_us

SensorKey = tuple[str, str]
IN_CHUNK = 500  # sensors per IN (...) list of the periodic read


def apply_changes(
    session: Session,
    events: Sequence[AlertEvent],
    marks: Sequence[ClockMark] = (),
    *,
    reporter_id: str | None = None,
) -> list[SensorView]:
    """Decide a collector's proposed changes, in its order per sensor; one view per sensor
    touched. Idempotent: a batch written again (a retried transaction) changes nothing."""
    marks_of: dict[SensorKey, list[ClockMark]] = {}
    events_of: dict[SensorKey, list[AlertEvent]] = {}
    for mark in marks:
        marks_of.setdefault((mark.device_id, mark.sensor_id), []).append(mark)
    for event in events:
        events_of.setdefault((event.device_id, event.sensor_id), []).append(event)
    keys = sorted(marks_of.keys() | events_of.keys())  # one lock order for every collector
    states = {key: lock_sensor(session, *key) for key in keys}
    views = []
    for key in keys:
        state = states[key]
        sensor_marks, sensor_events = marks_of.get(key, []), events_of.get(key, [])
        if sensor_marks:
            _add_marks(state, [_mark(m) for m in sensor_marks])
        outcomes = tuple(
            (event.episode_key, _apply(session, state, event, reporter_id))
            for event in sensor_events
        )
        _stretch_peaks(session, sensor_marks)
        state.updated_by = reporter_id
        seq = max(x.seq for x in [*sensor_marks, *sensor_events])
        views.append(_view(session, state, seq=seq, outcomes=outcomes))
    session.flush()
    return views


def load_views(session: Session, interest: Iterable[SensorKey] = ()) -> list[SensorView]:
    """The periodic read: every live episode, every sensor with a breach run in progress, and
    the sensors in ``interest`` (what this collector holds), as views."""
    live = {
        (row.device_id, row.sensor_id): row
        for row in session.scalars(
            sa.select(SensorAlert).where(SensorAlert.status.in_(ACTIVE_ALERT_STATUSES))
        )
    }
    states = {
        (row.device_id, row.sensor_id): row
        for row in session.scalars(sa.select(SensorAlertState).where(SensorAlertState.running))
    }
    wanted = [key for key in set(interest) if key not in states]
    for start in range(0, len(wanted), IN_CHUNK):
        chunk = wanted[start : start + IN_CHUNK]
        pairs = sa.tuple_(SensorAlertState.device_id, SensorAlertState.sensor_id)
        for row in session.scalars(sa.select(SensorAlertState).where(pairs.in_(chunk))):
            states[(row.device_id, row.sensor_id)] = row
    views = []
    for key in sorted(live.keys() | states.keys() | set(wanted)):
        state = states.get(key)
        views.append(
            SensorView(
                device_id=key[0],
                sensor_id=key[1],
                episode=_live_episode(live.get(key)),
                last_resolved_us=_us(state.last_resolved_ts) if state else None,
                clocks=dict(state.clocks or {}) if state else {},
            )
        )
    return views


def lock_sensor(session: Session, device_id: str, sensor_id: str) -> SensorAlertState:
    """The sensor's state row, created if missing and locked for this transaction."""
    insert = dialect_insert(session)
    session.execute(
        insert(SensorAlertState)
        .values(device_id=device_id, sensor_id=sensor_id, clocks={}, running=False)
        .on_conflict_do_nothing(index_elements=["device_id", "sensor_id"])
    )
    query = (
        sa.select(SensorAlertState)
        .where(SensorAlertState.device_id == device_id, SensorAlertState.sensor_id == sensor_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    return session.scalars(query).one()


def dialect_insert(session: Session) -> Any:
    """``INSERT ... ON CONFLICT`` for the session's database."""
    if session.get_bind().dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    return insert


# -- one change ------------------------------------------------------------------------------


def _apply(
    session: Session, state: SensorAlertState, event: AlertEvent, reporter_id: str | None
) -> str:
    if event.kind == "raised":
        return _raise(session, state, event, reporter_id)
    if event.kind == "escalated":
        return _escalate(session, state, event)
    if event.kind == "peak":
        return _record_peak(session, event)
    return _resolve(session, state, event)


def _raise(
    session: Session, state: SensorAlertState, event: AlertEvent, reporter_id: str | None
) -> str:
    r = event.reading_ts
    target = episode_at(session, event.device_id, event.sensor_id, r)
    if target is not None:
        _join(session, state, target, event)
        return "joined" if target.status in ACTIVE_ALERT_STATUSES else "closed"
    newest = _newest(session, event.device_id, event.sensor_id)
    if newest is not None:
        if newest.reading_ts > r:
            return "late"
        ended = newest.resolved_reading_ts
        if ended is not None and r < ended + timedelta(seconds=event.cooldown_s):
            return "cooldown"
    if not _run_long_enough(state, event):
        return "rejected"
    return _open(session, state, event, reporter_id)


def _open(
    session: Session, state: SensorAlertState, event: AlertEvent, reporter_id: str | None
) -> str:
    """Insert the episode; a live one committed meanwhile (a writer that did not lock) is
    joined instead."""
    now = datetime.now(UTC)
    statement = (
        dialect_insert(session)(SensorAlert)
        .values(
            episode_key=event.episode_key,
            device_id=event.device_id,
            sensor_id=event.sensor_id,
            sensor_type=event.sensor_type,
            asset_id=event.asset_id,
            unit=event.unit,
            direction=event.direction,
            severity=event.severity,
            status="open",
            value=event.value,
            threshold=event.threshold,
            peak_value=event.peak_value,
            reading_ts=event.reading_ts,
            raised_at=event.at,
            severity_history=[_history_entry(event)],
            raised_by=reporter_id,
            created_at=now,
            updated_at=now,
        )
        .on_conflict_do_nothing(index_elements=["episode_key"])
    )
    try:
        with session.begin_nested():
            inserted = session.execute(statement).rowcount
    except IntegrityError:
        inserted = 0
    if inserted:
        return "opened"
    live = _live(session, event.device_id, event.sensor_id)
    if live is None:
        return "stale"
    _join(session, state, live, event)
    return "joined"


def _join(
    session: Session, state: SensorAlertState, target: SensorAlert, event: AlertEvent
) -> None:
    """A raise for an episode that exists: its peak and a higher severity still count."""
    _peak(target, event.peak_value)
    if _rank(event.severity) > _rank(target.severity) and _run_long_enough(state, event, target):
        _raise_severity(target, event)


def _escalate(session: Session, state: SensorAlertState, event: AlertEvent) -> str:
    target = episode_at(session, event.device_id, event.sensor_id, event.reading_ts)
    if target is None:
        return "stale"
    _peak(target, event.peak_value)
    if _rank(event.severity) <= _rank(target.severity):
        return "unchanged"
    if not _run_long_enough(state, event, target):
        return "held"
    _raise_severity(target, event)
    return "escalated"


def _resolve(session: Session, state: SensorAlertState, event: AlertEvent) -> str:
    _record_peak(session, event)  # the episode this collector held, whoever closes it
    c = event.reading_ts
    target = _newest(session, event.device_id, event.sensor_id, before=c)
    if target is None:
        return "stale"
    newest = _newest(session, event.device_id, event.sensor_id)
    if target.status in ACTIVE_ALERT_STATUSES:
        _peak(target, event.peak_value)
        closed = session.execute(
            sa.update(SensorAlert)
            .where(SensorAlert.id == target.id, SensorAlert.status.in_(ACTIVE_ALERT_STATUSES))
            .values(
                status="resolved",
                resolved_at=event.at,
                resolved_reading_ts=c,
                resolved_value=event.value,
                updated_at=datetime.now(UTC),
            )
            .execution_options(synchronize_session=False)
        ).rowcount
        if not closed:
            return "stale"
        outcome = "resolved"
    elif target.resolved_reading_ts is not None and target.resolved_reading_ts > c:
        _peak(target, event.peak_value)
        target.resolved_reading_ts, target.resolved_value = c, event.value
        outcome = "refined"
    else:
        return "stale"
    if newest is not None and newest.id == target.id:
        state.last_resolved_ts = c
    return outcome


def _record_peak(session: Session, event: AlertEvent) -> str:
    """A collector that held the episode saw a value beyond its recorded peak."""
    row = session.scalar(sa.select(SensorAlert).where(SensorAlert.episode_key == event.episode_key))
    if row is None:
        return "stale"
    _peak(row, event.peak_value)
    return "unchanged"


def _stretch_peaks(session: Session, marks: Sequence[ClockMark]) -> None:
    """Values beyond the limit a collector saw while it held no episode belong to the
    episode live at their time, if any (another collector raised it)."""
    for mark in marks:
        if mark.peak is None or mark.peak_us is None:
            continue
        t = from_us(mark.peak_us)
        row = _newest(session, mark.device_id, mark.sensor_id, at_or_before=t)
        if row is not None and _covers(row, t):
            _peak(row, mark.peak)


# -- silent devices --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SilenceProposal:
    """A device one collector has not heard from (no usable reading) for its silence limit."""

    device_id: str
    limit_s: float
    silent_s: float  # since this collector last heard it, or started watching it
    severity: str | None  # None: confirm the silence for the device status, raise nothing
    expected_s: float | None = None  # the declared interval, for the reason
    asset_id: str | None = None
    last_reading_ts: datetime | None = None  # the newest reading this collector heard
    unanswered: bool = False  # its polls went unanswered (gap readings)


@dataclass(frozen=True, slots=True)
class SilenceOutcome:
    """What the state DB decided for one device: ``opened``; ``joined`` (an episode was live
    already); ``silent`` (confirmed, no episode wanted); ``heard`` (a collector heard it within
    the limit, last at ``heard_at``); ``resolved`` (heard again); ``closed`` (no longer
    watched); ``stale`` (nothing live to resolve)."""

    device_id: str
    outcome: str
    episode_key: str | None = None
    reason: str | None = None
    heard_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class SilenceAnswer:
    outcomes: list[SilenceOutcome] = field(default_factory=list)
    live: frozenset[str] = frozenset()  # devices with a live silence episode afterwards


def live_silences(session: Session) -> dict[str, SensorAlert]:
    """The live silence episodes by device (the live rows are few: the one-live index)."""
    query = sa.select(SensorAlert).where(
        SensorAlert.sensor_id == DEVICE_SENSOR_ID,
        SensorAlert.status.in_(ACTIVE_ALERT_STATUSES),
    )
    return {
        row.device_id: row
        for row in session.scalars(query.execution_options(populate_existing=True))
    }


def decide_silence(
    session: Session,
    *,
    heard: Mapping[str, datetime],
    proposals: Sequence[SilenceProposal] = (),
    unwatched: Iterable[str] = (),
    at: datetime,
    reporter_id: str | None = None,
) -> SilenceAnswer:
    """A collector's silence changes, in one transaction, devices in sorted order (the lock
    order of :func:`apply_changes`): resolve the live episodes of the devices in ``heard``
    (device -> first reading heard since the last pass), close those of ``unwatched``
    devices (the collector no longer answers for them), and decide each proposal."""
    live = live_silences(session)
    raises = {p.device_id: p for p in proposals}
    resolves = {d: ts for d, ts in heard.items() if d in live and d not in raises}
    closes = {d for d in unwatched if d in live} - raises.keys() - resolves.keys()
    outcomes = []
    for device_id in sorted(raises.keys() | resolves.keys() | closes):
        state = lock_sensor(session, device_id, DEVICE_SENSOR_ID)
        state.updated_by = reporter_id
        if device_id in raises:
            outcomes.append(_raise_silence(session, raises[device_id], at, reporter_id))
        else:
            first = resolves.get(device_id)
            outcomes.append(_resolve_silence(session, state, device_id, first, at))
    if not outcomes:
        return SilenceAnswer([], frozenset(live))
    session.flush()
    return SilenceAnswer(outcomes, frozenset(live_silences(session)))


def _raise_silence(
    session: Session, proposal: SilenceProposal, at: datetime, reporter_id: str | None
) -> SilenceOutcome:
    """Open the device's silence episode unless one is live or any collector's heartbeat
    (``devices.last_heartbeat``, written by whoever heard it) is younger than the limit."""
    device_id = proposal.device_id
    live = _live(session, device_id, DEVICE_SENSOR_ID)
    if live is not None:
        return SilenceOutcome(device_id, "joined", live.episode_key, live.reason)
    device = session.get(Device, device_id, populate_existing=True)
    heartbeat = device.last_heartbeat if device is not None else None
    silent_s = proposal.silent_s
    if heartbeat is not None:
        since_heard = (at - heartbeat).total_seconds()
        if since_heard < proposal.limit_s:
            return SilenceOutcome(device_id, "heard", heard_at=heartbeat)
        silent_s = min(silent_s, since_heard)
    known = [proposal.last_reading_ts, device.last_reading_ts if device is not None else None]
    last = max((ts for ts in known if ts is not None), default=None)
    since = at - timedelta(seconds=silent_s)
    reason = silence_reason(
        device_id,
        last_reading_ts=last,
        watched_since=since,
        expected_s=proposal.expected_s,
        limit_s=proposal.limit_s,
        now=at,
        unanswered=proposal.unanswered,
    )
    if proposal.severity is None:
        return SilenceOutcome(device_id, "silent", reason=reason)
    key = episode_key(device_id, DEVICE_SENSOR_ID, at)
    reading_ts = last if last is not None else since
    now = datetime.now(UTC)
    statement = (
        dialect_insert(session)(SensorAlert)
        .values(
            episode_key=key,
            device_id=device_id,
            sensor_id=DEVICE_SENSOR_ID,
            kind="silence",
            reason=reason,
            asset_id=proposal.asset_id,
            unit="s",
            direction="above",
            severity=proposal.severity,
            status="open",
            value=silent_s,
            threshold=proposal.limit_s,
            peak_value=silent_s,
            reading_ts=reading_ts,
            raised_at=at,
            severity_history=[
                {
                    "severity": proposal.severity,
                    "threshold": proposal.limit_s,
                    "value": silent_s,
                    "reading_ts": reading_ts.isoformat(),
                    "raised_at": at.isoformat(),
                }
            ],
            raised_by=reporter_id,
            created_at=now,
            updated_at=now,
        )
        .on_conflict_do_nothing(index_elements=["episode_key"])
    )
    try:
        with session.begin_nested():
            inserted = session.execute(statement).rowcount
    except IntegrityError:  # a live one committed meanwhile by a writer that did not lock
        inserted = 0
    if inserted:
        return SilenceOutcome(device_id, "opened", key, reason)
    live = _live(session, device_id, DEVICE_SENSOR_ID)
    if live is None:
        return SilenceOutcome(device_id, "stale")
    return SilenceOutcome(device_id, "joined", live.episode_key, live.reason)


def _resolve_silence(
    session: Session,
    state: SensorAlertState,
    device_id: str,
    first: datetime | None,
    at: datetime,
) -> SilenceOutcome:
    """Close the live episode (a conditional update, like a threshold resolve): at ``first``,
    the first reading heard again, or without a reading when nobody watches it any more."""
    live = _live(session, device_id, DEVICE_SENSOR_ID)
    if live is None:
        return SilenceOutcome(device_id, "stale")
    closed = session.execute(
        sa.update(SensorAlert)
        .where(SensorAlert.id == live.id, SensorAlert.status.in_(ACTIVE_ALERT_STATUSES))
        .values(
            status="resolved",
            resolved_at=at,
            resolved_reading_ts=first,
            updated_at=datetime.now(UTC),
        )
        .execution_options(synchronize_session=False)
    ).rowcount
    if not closed:
        return SilenceOutcome(device_id, "stale")
    if first is not None:
        state.last_resolved_ts = first
    return SilenceOutcome(device_id, "resolved" if first else "closed", live.episode_key)


# -- look-ups --------------------------------------------------------------------------------


def episode_at(session: Session, device_id: str, sensor_id: str, t: datetime) -> SensorAlert | None:
    """The episode a reading at ``t`` belongs to: the newest one opened at or before ``t``
    if it was still live then; else the live episode when it opened after ``t`` with no other
    episode in between (the same excursion, raised first by a collector that saw its start
    later)."""
    before = _newest(session, device_id, sensor_id, at_or_before=t)
    if before is not None and _covers(before, t):
        return before
    live = _live(session, device_id, sensor_id)
    if live is None or live.reading_ts <= t:
        return None
    between = session.scalar(
        sa.select(sa.func.count())
        .select_from(SensorAlert)
        .where(
            SensorAlert.device_id == device_id,
            SensorAlert.sensor_id == sensor_id,
            SensorAlert.reading_ts > t,
            SensorAlert.reading_ts < live.reading_ts,
        )
    )
    return live if not between else None


def _covers(row: SensorAlert, t: datetime) -> bool:
    if row.status in ACTIVE_ALERT_STATUSES:
        return True
    return row.resolved_reading_ts is not None and row.resolved_reading_ts >= t


def _live(session: Session, device_id: str, sensor_id: str) -> SensorAlert | None:
    return session.scalar(
        sa.select(SensorAlert)
        .where(
            SensorAlert.device_id == device_id,
            SensorAlert.sensor_id == sensor_id,
            SensorAlert.status.in_(ACTIVE_ALERT_STATUSES),
        )
        .execution_options(populate_existing=True)
    )


def _newest(
    session: Session,
    device_id: str,
    sensor_id: str,
    *,
    at_or_before: datetime | None = None,
    before: datetime | None = None,
) -> SensorAlert | None:
    query = sa.select(SensorAlert).where(
        SensorAlert.device_id == device_id, SensorAlert.sensor_id == sensor_id
    )
    if at_or_before is not None:
        query = query.where(SensorAlert.reading_ts <= at_or_before)
    if before is not None:
        query = query.where(SensorAlert.reading_ts < before)
    query = query.order_by(SensorAlert.reading_ts.desc(), SensorAlert.id.desc()).limit(1)
    return session.scalar(query.execution_options(populate_existing=True))


# -- changes to rows -------------------------------------------------------------------------


def _run_long_enough(
    state: SensorAlertState, event: AlertEvent, episode: SensorAlert | None = None
) -> bool:
    """The merged breach run of the event's level at its reading lasted ``min_duration_s``;
    for a higher severity of an existing ``episode``, any run since it opened counts.

    The proposing collector's own observations are marks too: its run start and the
    proposing reading, which is beyond the limit."""
    if event.min_duration_s <= 0:
        return True
    r = to_us(event.reading_ts)
    seen = [(event.severity, r, BREACH)]
    if event.since is not None:
        seen.append((event.severity, to_us(event.since), BREACH))
    _add_marks(state, seen)
    marks = state.clocks[event.severity]
    need = seconds_to_us(event.min_duration_s)
    start = run_start(marks, r)
    if start is not None and r - start >= need:
        return True
    return episode is not None and reached_between(marks, need, to_us(episode.reading_ts), r)


def _mark(mark: ClockMark) -> tuple[str, int, int]:
    return (mark.severity, mark.ts_us, BREACH if mark.breach else CLEAR)


def _add_marks(state: SensorAlertState, marks: Sequence[tuple[str, int, int]]) -> None:
    clocks: dict[str, Any] = dict(state.clocks or {})
    for severity in {m[0] for m in marks}:
        new = [(ts, flag) for sev, ts, flag in marks if sev == severity]
        clocks[severity] = merge_marks(clocks.get(severity, ()), new)
    state.clocks = clocks  # a new object: the ORM sees the change
    state.running = any(run_start(m, LATEST) is not None for m in clocks.values())


def _peak(row: SensorAlert, value: float) -> None:
    sign = 1.0 if row.direction != "below" else -1.0
    if row.peak_value is None or sign * value > sign * row.peak_value:
        row.peak_value = value


def _raise_severity(row: SensorAlert, event: AlertEvent) -> None:
    row.severity = event.severity
    row.threshold = event.threshold
    row.escalated_at = event.at
    row.severity_history = [*(row.severity_history or []), _history_entry(event)]


def _history_entry(event: AlertEvent) -> dict[str, object]:
    return {
        "severity": event.severity,
        "threshold": event.threshold,
        "value": event.value,
        "reading_ts": event.reading_ts.isoformat(),
        "raised_at": event.at.isoformat(),
    }


def _rank(severity: str) -> int:
    return SEVERITIES.index(severity) if severity in SEVERITIES else -1


# -- answers ---------------------------------------------------------------------------------


def _view(
    session: Session,
    state: SensorAlertState,
    *,
    seq: int,
    outcomes: tuple[tuple[str, str], ...],
) -> SensorView:
    session.flush()
    return SensorView(
        device_id=state.device_id,
        sensor_id=state.sensor_id,
        episode=_live_episode(_live(session, state.device_id, state.sensor_id)),
        last_resolved_us=_us(state.last_resolved_ts),
        clocks=dict(state.clocks or {}),
        seq=seq,
        outcomes=outcomes,
    )


def _live_episode(row: SensorAlert | None) -> LiveEpisode | None:
    if row is None:
        return None
    return LiveEpisode(row.episode_key, row.severity, row.peak_value, row.reading_ts)


def _us(ts: datetime | None) -> int | None:
    return to_us(ts) if ts is not None else None
