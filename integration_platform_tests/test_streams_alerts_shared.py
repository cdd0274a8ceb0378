"""Alert arbitration between collectors that each see part of a sensor's readings.

Two evaluators ("collectors") share one state DB (SQLite and PostgreSQL); the tests choose who
gets which reading and when each one writes its changes and reads the others', so the
interleavings the broker and the writer threads produce can be replayed exactly.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from integration_platform.state import (
    SensorAlert,
    dispose_engines,
    downgrade,
    make_engine,
    upgrade,
)
from integration_platform.streams.alert_arbiter import apply_changes, load_views
from integration_platform.streams.alert_store import acknowledge, get_alert
from integration_platform.streams.alerts import (
    BREACH,
    CLEAR,
    MAX_MARKS,
    AlertEvent,
    SensorEvaluator,
    merge_marks,
    reached_between,
    run_start,
)
from integration_platform.streams.devices import Thresholds
from integration_platform.streams.readings import to_us

T0 = datetime(2026, 5, 4, 10, 0, tzinfo=UTC)
SENSOR = ("pump-1", "vib")
LIMITS = {"warning": 4.5, "critical": 7.1, "hysteresis": 0.5, "min_duration_s": 3.0}


def at(second: float) -> datetime:
    return T0 + timedelta(seconds=second)


def us(second: float) -> int:
    return to_us(at(second))


# -- breach-run marks (pure) -----------------------------------------------------------------


def test_marks_merge_in_any_order_into_the_same_runs() -> None:
    a = [[us(0), CLEAR], [us(1), BREACH], [us(5), CLEAR]]
    b = [[us(2), BREACH], [us(3), CLEAR], [us(4), BREACH]]
    assert merge_marks(a, b) == merge_marks(b, a) == merge_marks(merge_marks(a, b), b)
    marks = merge_marks(a, b)
    assert run_start(marks, us(2)) == us(1)  # A's run, B's breach inside it
    assert run_start(marks, us(3)) is None  # B's dip breaks it for both
    assert run_start(marks, us(4.5)) == us(4)
    assert run_start(marks, us(9)) is None  # A's dip at 5


def test_a_run_reached_in_the_past_counts_for_an_escalation() -> None:
    # Breaching readings marked at 1 and 4 (one run), broken at 5, breaching again at 6.
    marks = [[us(1), BREACH], [us(4), BREACH], [us(5), CLEAR], [us(6), BREACH]]
    assert run_start(marks, us(7)) == us(6)  # the run now lasts 1 s...
    assert reached_between(marks, us(3) - us(0), us(0), us(7))  # ...but 1-4 lasted 3 s
    assert not reached_between(marks, us(3) - us(0), us(4.5), us(7))  # not since 4.5


def test_a_full_list_knows_nothing_before_its_oldest_mark() -> None:
    marks = merge_marks([], [[us(i), BREACH if i % 2 else CLEAR] for i in range(100)])
    assert len(marks) == MAX_MARKS
    assert run_start(marks, us(99)) == us(99)
    assert run_start(marks, us(10)) is None


def test_marks_are_proposed_only_with_a_min_duration() -> None:
    quick = SensorEvaluator("pump-1", "vib", Thresholds(critical=7.1))
    quick.feed(1.0, at(0))
    quick.feed(8.0, at(1))
    assert quick.marks == []
    slow = SensorEvaluator("pump-1", "vib", Thresholds(critical=7.1, min_duration_s=5))
    slow.feed(1.0, at(0))
    slow.feed(8.0, at(1))
    slow.feed(8.5, at(2))  # steady: nothing new
    slow.feed(2.0, at(3))
    # The run's start also reports the reading before it (inside the limit).
    assert [(m.ts_us, m.breach) for m in slow.marks] == [
        (us(0), False),
        (us(1), True),
        (us(3), False),
    ]


# -- collectors on one state DB --------------------------------------------------------------


@dataclass
class Peer:
    """One collector: its evaluator for the sensor and the changes it has not written."""

    name: str
    evaluator: SensorEvaluator
    events: list[AlertEvent] = field(default_factory=list)
    outcomes: list[str] = field(default_factory=list)

    @classmethod
    def of(cls, name: str, **limits: object) -> Peer:
        thresholds = Thresholds(**{"cooldown_s": 30.0, **LIMITS, **limits})
        return cls(name, SensorEvaluator(*SENSOR, thresholds, asset_id="PUMP-1"))

    def feed(self, second: float, value: float) -> None:
        event = self.evaluator.feed(value, at(second))
        if event is not None:
            self.events.append(event)

    def write(self, engine: Engine) -> None:
        """The writer thread's turn: decide the changes, take the answer."""
        events, self.events = self.events, []
        marks = self.evaluator.marks[:]
        self.evaluator.marks.clear()
        if not events and not marks:
            return
        with Session(engine) as session, session.begin():
            views = apply_changes(session, events, marks, reporter_id=self.name)
        for view in views:
            self.outcomes += [outcome for _, outcome in view.outcomes]
            self.evaluator.reconcile(view)
        self.events += self.evaluator.outbox  # written with the next turn
        self.evaluator.outbox.clear()

    def sync(self, engine: Engine) -> None:
        """The periodic read of what the other collectors changed."""
        interest = [SENSOR] if self.evaluator.busy else []
        with Session(engine) as session:
            views = load_views(session, interest)
        for view in views:
            if (view.device_id, view.sensor_id) == SENSOR:
                self.evaluator.reconcile(view)
        self.events += self.evaluator.outbox
        self.evaluator.outbox.clear()
        if self.events or self.evaluator.marks:  # what the answer changed wakes the writer
            self.write(engine)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'state.db'}"
    else:
        url = request.getfixturevalue("postgres_url")
    upgrade(url)
    engine = make_engine(url)
    yield engine
    engine.dispose()
    dispose_engines()


def rows(engine: Engine) -> list[SensorAlert]:
    with Session(engine) as session:
        return list(session.scalars(sa.select(SensorAlert).order_by(SensorAlert.id)))


def real_time(peers: dict[str, Peer], engine: Engine, plan: list[tuple[str, float, float]]):
    """Readings as they arrive live: each goes to its collector, which writes at once, and
    both read the other's changes before the next reading (writes take milliseconds, readings
    come a second apart)."""
    for name, second, value in plan:
        peers[name].feed(second, value)
        peers[name].write(engine)
        for peer in peers.values():
            peer.sync(engine)


def excursion() -> list[float]:
    """Quiet, warning for 3 s, critical with a dip below it inside the hysteresis band, a
    deeper dip still inside it, then recovery (1 s per value)."""
    return [2.0] * 3 + [5.5] * 3 + [8.0] * 4 + [6.8] + [8.0] * 6 + [5.0] + [8.0] * 2 + [3.0] * 5


def single_collector(values: list[float]) -> list[tuple[str, float, str]]:
    peer = Peer.of("alone")
    for second, value in enumerate(values):
        peer.feed(second, value)
    return [(e.kind, (e.reading_ts - T0).total_seconds(), e.severity) for e in peer.events]


def test_two_collectors_make_the_episode_one_collector_would(engine: Engine) -> None:
    values = excursion()
    assert single_collector(values) == [
        ("raised", 6.0, "warning"),
        ("escalated", 9.0, "critical"),
        ("resolved", 20.0, "critical"),
    ]
    peers = {"a": Peer.of("a"), "b": Peer.of("b")}
    plan = [("a" if second % 2 else "b", second, value) for second, value in enumerate(values)]
    real_time(peers, engine, plan)
    (alert,) = rows(engine)
    assert (alert.reading_ts, alert.severity, alert.status) == (at(6), "critical", "resolved")
    assert alert.resolved_reading_ts == at(20) and alert.peak_value == 8.0
    assert [h["severity"] for h in alert.severity_history] == ["warning", "critical"]
    outcomes = peers["a"].outcomes + peers["b"].outcomes
    assert outcomes.count("opened") == 1 and outcomes.count("resolved") == 1
    assert {p.evaluator.active for p in peers.values()} == {None}


def test_a_collector_that_missed_the_start_still_raises_on_time(engine: Engine) -> None:
    """Alone, neither sees 3 s of breach (a: 0-2, b: 3-5): together they do."""
    peers = {"a": Peer.of("a", warning=None), "b": Peer.of("b", warning=None)}
    plan = [("a", 0, 8.0), ("a", 1, 8.0), ("a", 2, 8.0)]
    plan += [("b", 3, 8.0), ("b", 4, 8.0), ("b", 5, 8.0), ("a", 6, 1.0)]
    real_time(peers, engine, plan)
    (alert,) = rows(engine)
    assert (alert.reading_ts, alert.raised_by) == (at(3), "b")
    assert alert.resolved_reading_ts == at(6)


def test_a_dip_one_collector_saw_restarts_the_run_for_both(engine: Engine) -> None:
    """a sees only breaching readings; b sees the dip at 3: no raise before 4 + 3 s."""
    peers = {"a": Peer.of("a", warning=None), "b": Peer.of("b", warning=None)}
    plan = [("a", 0, 8.0), ("b", 1, 8.0), ("a", 2, 8.0), ("b", 3, 6.9)]
    plan += [("a", s, 8.0) if s % 2 == 0 else ("b", s, 8.0) for s in range(4, 9)]
    real_time(peers, engine, plan)
    (alert,) = rows(engine)
    assert alert.reading_ts == at(7)  # single collector: run from 4, raised at 7
    assert "rejected" not in peers["a"].outcomes  # a knew of the dip before deciding


def test_a_raise_decided_before_the_dip_arrived_is_rejected(engine: Engine) -> None:
    """a raises in memory before b's dip is written: the state DB says no, a waits."""
    a, b = Peer.of("a", warning=None), Peer.of("b", warning=None)
    for second in (0, 2, 4):
        a.feed(second, 8.0)
    b.feed(1, 8.0)
    b.feed(3, 6.9)
    b.write(engine)  # the dip reaches the DB first
    a.write(engine)  # a's raise at 4 (run 0-4 as a saw it)
    assert a.outcomes == ["rejected"] and rows(engine) == []
    assert a.evaluator.active is None
    for second in (5, 6, 7):  # a's clock restarted after the dip: 7 - 4 >= 3
        a.feed(second, 8.0)
        a.write(engine)
    (alert,) = rows(engine)
    assert alert.reading_ts == at(7) and a.outcomes[-1] == "opened"


@pytest.mark.parametrize("first", ["a", "b"])
def test_raises_written_in_either_order_are_one_episode(engine: Engine, first: str) -> None:
    peers = {"a": Peer.of("a", min_duration_s=0), "b": Peer.of("b", min_duration_s=0)}
    peers["a"].feed(1, 8.0)
    peers["b"].feed(2, 9.0)
    second = "b" if first == "a" else "a"
    peers[first].write(engine)
    peers[second].write(engine)
    (alert,) = rows(engine)
    assert alert.raised_by == first  # the first committed keeps its key and reading
    assert alert.peak_value == 9.0
    assert peers["a"].evaluator.active == peers["b"].evaluator.active == alert.episode_key
    assert sorted(peers["a"].outcomes + peers["b"].outcomes) == ["joined", "opened"]
    # Both see the recovery; the earlier reading back inside is the resolve, whoever wrote.
    peers["b"].feed(5, 1.0)
    peers["a"].feed(4, 1.0)
    peers["b"].write(engine)
    peers["a"].write(engine)
    (alert,) = rows(engine)
    assert (alert.status, alert.resolved_reading_ts, alert.resolved_value) == (
        "resolved",
        at(4),
        1.0,
    )
    assert sorted(peers["a"].outcomes + peers["b"].outcomes)[-2:] == ["refined", "resolved"]


def test_a_resolve_elsewhere_ends_the_episode_here_and_starts_the_cooldown(
    engine: Engine,
) -> None:
    a, b = Peer.of("a", min_duration_s=0), Peer.of("b", min_duration_s=0)
    a.feed(0, 8.0)
    a.write(engine)
    b.feed(1, 8.0)
    b.write(engine)  # joined
    b.feed(1.5, 9.5)  # only b sees the peak: nothing to write yet
    a.feed(2, 1.0)
    a.write(engine)  # resolved by a; b has not seen a reading back inside
    assert b.evaluator.active is not None
    b.sync(engine)
    assert b.evaluator.active is None
    (alert,) = rows(engine)
    assert (alert.resolved_reading_ts, alert.peak_value) == (at(2), 9.5)  # b told its peak
    b.feed(10, 8.0)  # within cooldown_s (30) of the resolve at 2
    assert b.events == []
    b.feed(33, 8.0)
    b.write(engine)
    assert [r.reading_ts for r in rows(engine)] == [at(0), at(33)]


def test_late_raise_and_late_resolve_do_not_split_or_close_an_episode(engine: Engine) -> None:
    a, b = Peer.of("a", min_duration_s=0), Peer.of("b", min_duration_s=0)
    # a raises at 10 and resolves at 20; b saw 15 (breach) but writes only afterwards.
    a.feed(10, 8.0)
    a.feed(20, 1.0)
    b.feed(15, 9.5)
    a.write(engine)
    b.write(engine)
    (alert,) = rows(engine)
    assert b.outcomes == ["closed"] and b.evaluator.active is None
    assert (alert.status, alert.peak_value) == ("resolved", 9.5)  # b's peak still counts
    # A reading back inside older than a live episode does not end it.
    a.feed(60, 8.0)
    a.write(engine)
    c = Peer.of("c", min_duration_s=0)
    c.feed(55, 8.0)  # c's own episode, which it thinks opened at 55
    c.feed(58, 1.0)
    c.write(engine)
    live = [r for r in rows(engine) if r.status == "open"]
    assert [r.reading_ts for r in live] == [at(60)]
    assert c.outcomes == ["joined", "stale"]


def test_escalation_by_another_collector_raises_the_joined_episode(engine: Engine) -> None:
    a, b = Peer.of("a", min_duration_s=0), Peer.of("b", min_duration_s=0)
    a.feed(0, 5.0)
    a.write(engine)
    b.feed(1, 7.5)  # b's first reading is already critical: a raise at critical
    b.write(engine)
    (alert,) = rows(engine)
    assert alert.severity == "critical"
    assert [h["severity"] for h in alert.severity_history] == ["warning", "critical"]
    a.sync(engine)
    assert a.evaluator._episode is not None and a.evaluator._episode.level == 1


@pytest.mark.parametrize("seed", range(6))
def test_random_interleavings_keep_one_episode(engine: Engine, seed: int) -> None:
    """Readings split at random, writes delayed at random (a slow writer, a lost race):
    never two episodes, one raise, one resolve, inside the excursion."""
    rng = random.Random(seed)
    peers = [Peer.of("a"), Peer.of("b")]
    values = excursion() + [3.0] * 3
    for second, value in enumerate(values):
        peers[rng.randrange(2)].feed(second, value)
        for peer in peers:
            if rng.random() < 0.4:
                peer.write(engine)
            if rng.random() < 0.3:
                peer.sync(engine)
    for peer in peers:  # everything written, both up to date, and the sensor stays quiet
        peer.write(engine)
        peer.sync(engine)
    for second in range(len(values), len(values) + 3):
        for peer in peers:
            peer.feed(second, 3.0)
            peer.write(engine)
    (alert,) = rows(engine)
    assert at(6) <= alert.reading_ts <= at(19)
    assert alert.status == "resolved" and alert.severity == "critical"
    assert at(20) <= alert.resolved_reading_ts <= at(len(values) + 2)
    outcomes = peers[0].outcomes + peers[1].outcomes
    assert outcomes.count("opened") == 1 and outcomes.count("resolved") == 1


def test_migration_closes_duplicate_live_episodes_then_allows_one(engine: Engine) -> None:
    """Two collectors of an earlier version may have opened one excursion twice."""
    url = engine.url.render_as_string(hide_password=False)
    downgrade(url, "0008")
    table = SensorAlert.__table__
    values = {"device_id": "pump-1", "sensor_id": "vib", "severity": "critical"}

    def row(key: str, status: str, second: int) -> dict[str, object]:
        ts = at(second)
        return {**values, "episode_key": key, "status": status, "reading_ts": ts, "raised_at": ts}

    with engine.begin() as connection:  # what two collectors of version 0008 could leave
        connection.execute(
            table.insert(),
            [row("k2", "open", 2), row("k1", "acknowledged", 1), row("k0", "resolved", 0)],
        )
    upgrade(url)
    assert {r.episode_key: r.status for r in rows(engine)} == {
        "k2": "resolved",  # the later duplicate
        "k1": "acknowledged",
        "k0": "resolved",
    }
    with pytest.raises(sa.exc.IntegrityError), engine.begin() as connection:
        connection.execute(table.insert(), [row("k3", "open", 3)])


def test_an_acknowledgement_racing_a_resolve_does_not_reopen_the_episode(engine: Engine) -> None:
    a = Peer.of("a", min_duration_s=0)
    a.feed(0, 8.0)
    a.write(engine)
    (alert,) = rows(engine)
    with Session(engine, expire_on_commit=False) as operator:
        shown = get_alert(operator, alert.episode_key)  # on the operator's screen
        assert shown.status == "open"
        operator.commit()
        a.feed(1, 1.0)
        a.write(engine)  # resolved meanwhile
        acknowledged = acknowledge(operator, alert.episode_key, by="maria")
        operator.commit()
    assert (acknowledged.status, acknowledged.acknowledged_by) == ("resolved", "maria")
    (alert,) = rows(engine)
    assert (alert.status, alert.acknowledged_by) == ("resolved", "maria")
