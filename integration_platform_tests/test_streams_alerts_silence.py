"""A silent device raises one alert episode, on a real state DB (SQLite and PostgreSQL).

The collectors' state reporters run without their writer thread: each ``flush()`` is one
heartbeat, and both clocks (monotonic and wall) are moved by the test, so every interleaving
of two collectors sharing a device is replayed exactly.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from integration_platform.cli import main
from integration_platform.state import (
    CbmWorkOrder,
    Device,
    SensorAlert,
    dispose_engines,
    make_engine,
    upgrade,
)
from integration_platform.streams.alerts import silence_reason, silence_rules
from integration_platform.streams.cbm import OutboxGateway, open_work_orders
from integration_platform.streams.device_state import StateReporter
from integration_platform.streams.devices import RegistryError, parse_registry
from integration_platform.streams.readings import Reading, ReadingColumns

T0 = datetime(2026, 5, 4, 10, 41, 0, tzinfo=UTC)

REGISTRY = """
version: 1
site: plant1
devices:
  - device_id: pump-3
    protocol: mqtt
    endpoint: mqtt://127.0.0.1:1883
    asset_id: PUMP-3
    expected_interval_s: 60          # silent after 180 s
    sensors:
      - {sensor_id: vib, type: vibration, unit: mm/s, thresholds: {critical: 7.1}}
  - device_id: meter-9
    protocol: mqtt
    endpoint: mqtt://127.0.0.1:1883
    silence_alert: off               # status only
    sensors:
      - {sensor_id: kwh, type: energy, unit: kWh}
  - device_id: ahu-1                 # a protocol these collectors do not run
    protocol: bacnet
    endpoint: bacnet://127.0.0.1:47808
    bacnet: {device_instance: 1}
    sensors:
      - {sensor_id: temp, type: temperature, object_id: "analog-input,1"}
"""


class Clock:
    """Monotonic seconds since the test began, and the wall clock they stand for."""

    def __init__(self) -> None:
        self.t = 0.0

    def monotonic(self) -> float:
        return self.t

    def wall(self) -> datetime:
        return T0 + timedelta(seconds=self.t)

    def advance(self, seconds: float) -> None:
        self.t += seconds


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def state_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'state.db'}"
    else:
        url = request.getfixturevalue("postgres_url")
    upgrade(url)
    yield url
    dispose_engines()


@pytest.fixture
def engine(state_url: str) -> Iterator[Engine]:
    engine = make_engine(state_url)
    yield engine
    engine.dispose()


@pytest.fixture
def clock() -> Clock:
    return Clock()


class Collectors:
    """Collectors' state reporters by name, on one state DB and clock, made on first use."""

    def __init__(self, url: str, clock: Clock) -> None:
        self.url, self.clock = url, clock
        self.made: dict[str, StateReporter] = {}

    def __getitem__(self, name: str) -> StateReporter:
        if name not in self.made:
            self.made[name] = reporter(self.url, self.clock, name)
        return self.made[name]


@pytest.fixture
def reporters(state_url: str, clock: Clock) -> Iterator[Collectors]:
    collectors = Collectors(state_url, clock)
    yield collectors
    for made in collectors.made.values():
        made.stop(timeout=1)


def reporter(url: str, clock: Clock, name: str) -> StateReporter:
    return StateReporter(
        url,
        parse_registry(REGISTRY),
        reporter_id=name,
        heartbeat_s=5.0,
        offline_after_s=60.0,
        collected=("mqtt",),
        clock=clock.monotonic,
        wall_clock=clock.wall,
    )


def reading(device_id: str, ts: datetime, value: float | None = 1.0) -> Reading:
    sensor = "vib" if device_id == "pump-3" else "kwh"
    return Reading(
        device_id=device_id,
        sensor_id=sensor,
        sensor_type="vibration",
        ts=ts,
        value=value,
        unit="mm/s",
        quality="good" if value is not None else "bad",
        source_protocol="mqtt",
    )


def silences(engine: Engine) -> list[SensorAlert]:
    with Session(engine) as session:
        query = sa.select(SensorAlert).where(SensorAlert.kind == "silence")
        return list(session.scalars(query.order_by(SensorAlert.id)))


def device(engine: Engine, device_id: str) -> Device:
    with Session(engine) as session:
        found = session.get(Device, device_id)
        assert found is not None
        return found


def at(hms: str) -> datetime:
    return datetime.fromisoformat(f"2026-05-04T{hms}+00:00")


# -- the rule (pure) -------------------------------------------------------------------------


def test_the_limit_is_three_declared_intervals_else_the_collectors_offline_after() -> None:
    rules = silence_rules(
        parse_registry(REGISTRY), offline_after_s=60, heartbeat_s=5, collected=("mqtt",)
    )
    assert set(rules) == {"pump-3", "meter-9"}  # ahu-1: not a protocol this collector runs
    assert (rules["pump-3"].limit_s, rules["pump-3"].severity) == (180, "warning")
    assert (rules["meter-9"].limit_s, rules["meter-9"].severity) == (60, None)
    # Never under two heartbeats: collectors learn of each other's readings that late.
    fast = silence_rules(
        parse_registry(REGISTRY.replace("expected_interval_s: 60", "expected_interval_s: 1")),
        offline_after_s=60,
        heartbeat_s=5,
        collected=("mqtt",),
    )
    assert fast["pump-3"].limit_s == 10


def test_the_reason_says_since_when_and_how_often() -> None:
    now = at("10:45:06")
    assert (
        silence_reason(
            "pump-3",
            last_reading_ts=at("10:42:05.250"),
            watched_since=T0,
            expected_s=60,
            limit_s=180,
            now=now,
        )
        == "no reading from pump-3 since 10:42:05 UTC (expected every 60 s)"
    )
    assert (
        silence_reason(
            "plc-7",
            last_reading_ts=None,
            watched_since=T0,
            expected_s=None,
            limit_s=60,
            now=now,
            unanswered=True,
        )
        == "no reading from plc-7 yet, watched since 10:41:00 UTC (expected within 60 s); "
        "its polls go unanswered"
    )
    yesterday = at("23:59:00") - timedelta(days=1)
    assert "since 2026-05-03 23:59:00 UTC" in silence_reason(
        "pump-3",
        last_reading_ts=yesterday,
        watched_since=T0,
        expected_s=60,
        limit_s=180,
        now=now,
    )


def test_registry_errors_name_line_and_field() -> None:
    broken = REGISTRY.replace("expected_interval_s: 60 ", "expected_interval_s: 0 ")
    with pytest.raises(RegistryError, match=r"line 9: devices\[pump-3\]\.expected_interval_s"):
        parse_registry(broken)
    with pytest.raises(RegistryError, match=r"silence_alert: Input should be 'warning'"):
        parse_registry(REGISTRY.replace("silence_alert: off", "silence_alert: loud"))


# -- one collector ---------------------------------------------------------------------------


def test_a_device_that_stops_sending_raises_one_episode_until_it_speaks_again(
    engine: Engine, clock: Clock, reporters: Collectors
) -> None:
    a = reporters["a"]
    clock.advance(65)  # 10:42:05
    a.observe([reading("pump-3", clock.wall()), reading("meter-9", clock.wall())])
    assert a.flush()
    assert device(engine, "pump-3").status == "online"

    clock.advance(175)  # silent 175 s: inside 3 x 60 s
    assert a.flush()
    assert silences(engine) == []
    clock.advance(5)  # 180 s
    assert a.flush()
    (episode,) = silences(engine)
    reason = "no reading from pump-3 since 10:42:05 UTC (expected every 60 s)"
    assert (episode.device_id, episode.sensor_id, episode.kind) == ("pump-3", "*", "silence")
    assert (episode.severity, episode.status, episode.asset_id) == ("warning", "open", "PUMP-3")
    assert episode.reason == reason
    assert (episode.value, episode.threshold, episode.unit) == (180.0, 180.0, "s")
    assert episode.reading_ts == at("10:42:05") and episode.raised_at == clock.wall()
    assert episode.raised_by == "a"
    pump = device(engine, "pump-3")
    assert (pump.status, pump.status_detail) == ("offline", reason)

    for _ in range(4):  # more heartbeats within the same silence: nothing new
        clock.advance(5)
        assert a.flush()
    assert len(silences(engine)) == 1 and a.stats.silences_opened == 1

    # Readings resume (out of order within the group): the first one resolves it.
    clock.advance(10)
    back = clock.wall()
    a.observe([reading("pump-3", back + timedelta(seconds=1)), reading("pump-3", back)])
    a.observe([reading("pump-3", back + timedelta(seconds=2))])
    assert a.flush()
    (episode,) = silences(engine)
    assert (episode.status, episode.resolved_reading_ts) == ("resolved", back)
    assert episode.resolved_at == clock.wall()
    assert device(engine, "pump-3").status == "online"

    # Silent again: a new silence, a new episode.
    clock.advance(180)
    assert a.flush()
    first, second = silences(engine)
    assert (first.status, second.status) == ("resolved", "open")
    assert second.reason is not None and "since 10:45:37 UTC" in second.reason
    assert a.stats.silences_opened == 2 and a.stats.silences_resolved == 1


def test_silence_alert_off_sets_the_status_only(
    engine: Engine, clock: Clock, reporters: Collectors
) -> None:
    a = reporters["a"]
    a.observe([reading("meter-9", clock.wall()), reading("pump-3", clock.wall())])
    assert a.flush()
    clock.advance(60)
    assert a.flush()
    assert silences(engine) == []
    meter = device(engine, "meter-9")
    assert meter.status == "offline"
    assert (
        meter.status_detail == "no reading from meter-9 since 10:41:00 UTC (expected within 60 s)"
    )
    assert device(engine, "ahu-1").status == "unknown"  # nobody here collects BACnet


def test_columns_and_gaps(engine: Engine, clock: Clock, reporters: Collectors) -> None:
    """The MQTT path (columns) resolves too; gaps (missed polls) are no readings."""
    a = reporters["a"]
    a.observe_columns(ReadingColumns.from_readings([reading("pump-3", clock.wall())]))
    assert a.flush()
    clock.advance(180)
    a.observe([reading("pump-3", clock.wall(), value=None)])  # a gap: still silent
    assert a.flush()
    (episode,) = silences(engine)
    assert episode.reason is not None and episode.reason.endswith("its polls go unanswered")
    assert device(engine, "pump-3").status == "error"  # answers nothing: error, not offline
    clock.advance(5)
    later, back = clock.wall(), clock.wall() - timedelta(seconds=2)
    a.observe_columns(
        ReadingColumns.from_readings(
            [reading("meter-9", back), reading("pump-3", later), reading("pump-3", back)]
        )
    )
    assert a.flush()
    (episode,) = silences(engine)
    assert (episode.status, episode.resolved_reading_ts) == ("resolved", back)


def test_a_device_that_leaves_the_registry_or_goes_quiet_by_choice_closes_its_episode(
    engine: Engine, clock: Clock, reporters: Collectors
) -> None:
    a = reporters["a"]
    assert a.flush()
    clock.advance(180)
    assert a.flush()
    (episode,) = silences(engine)
    assert episode.reason == (
        "no reading from pump-3 yet, watched since 10:41:00 UTC (expected every 60 s)"
    )
    a.update_registry(parse_registry(REGISTRY.replace("expected_interval_s: 60", "enabled: no")))
    clock.advance(5)
    assert a.flush()
    (episode,) = silences(engine)
    assert (episode.status, episode.resolved_reading_ts) == ("resolved", None)


def test_a_restarted_collector_continues_the_open_episode(
    state_url: str, engine: Engine, clock: Clock, reporters: Collectors
) -> None:
    assert reporters["a"].flush()
    clock.advance(180)
    assert reporters["a"].flush()
    reporters["a"].stop(timeout=1)
    again = reporters["a-again"]
    assert again.flush()  # restore: knows the episode, proposes nothing
    clock.advance(180)
    assert again.flush()
    assert len(silences(engine)) == 1 and again.stats.silences_joined == 0
    again.observe([reading("pump-3", clock.wall())])
    assert again.flush()
    assert [e.status for e in silences(engine)] == ["resolved"]


# -- collectors sharing the device -----------------------------------------------------------


def test_two_collectors_that_both_miss_the_device_raise_one_episode(
    engine: Engine, clock: Clock, reporters: Collectors
) -> None:
    a, b = reporters["a"], reporters["b"]
    assert a.flush() and b.flush()
    clock.advance(180)
    assert a.flush()
    assert b.flush(sync=False)  # b decides before its periodic read shows a's episode
    (episode,) = silences(engine)
    assert episode.raised_by == "a"
    assert (a.stats.silences_opened, b.stats.silences_opened) == (1, 0)
    assert b.stats.silences_joined == 1
    for _ in range(3):
        clock.advance(5)
        assert a.flush() and b.flush()
    assert len(silences(engine)) == 1


def test_a_device_one_collector_hears_is_not_silent_for_the_other(
    engine: Engine, clock: Clock, reporters: Collectors
) -> None:
    """Shared subscription: b gets none of pump-3's messages, a gets them all."""
    a, b = reporters["a"], reporters["b"]
    for _ in range(8):  # 4 minutes, a reading a minute, all to a
        a.observe([reading("pump-3", clock.wall())])
        assert a.flush() and b.flush()
        clock.advance(30)
        assert a.flush() and b.flush()
        clock.advance(30)
    assert silences(engine) == []
    assert b.stats.silences_heard_elsewhere >= 1  # b asked, the state DB said heard
    assert device(engine, "pump-3").status == "online"

    clock.advance(150)  # pump-3 stops: 210 s since the last reading
    assert b.flush() and a.flush()
    (episode,) = silences(engine)
    assert episode.raised_by in {"a", "b"}

    # It speaks again, to b only: b resolves it; a, still hearing nothing, raises nothing.
    clock.advance(20)
    back = clock.wall()
    b.observe([reading("pump-3", back)])
    assert b.flush() and a.flush()
    clock.advance(5)
    assert a.flush() and b.flush()
    (episode,) = silences(engine)
    assert (episode.status, episode.resolved_reading_ts) == ("resolved", back)
    assert device(engine, "pump-3").status == "online"


# -- work orders and the operator's view -----------------------------------------------------


def test_the_critical_alert_work_orders_leave_silence_alone(
    engine: Engine, clock: Clock, reporters: Collectors
) -> None:
    a = reporters["a"]
    a.observe([reading("pump-3", clock.wall(), 9.0)])  # critical on vib
    assert a.flush()
    clock.advance(180)
    assert a.flush()
    assert len(silences(engine)) == 1
    report = open_work_orders(engine, OutboxGateway(engine), claimant="tick-1")
    (created,) = report.created
    assert created.startswith("pump-3/vib@")  # the threshold episode only
    with Session(engine) as session:
        (order,) = session.scalars(sa.select(CbmWorkOrder))
        assert order.episode_key == created
    (episode,) = silences(engine)
    assert episode.work_order_id is None and episode.work_order_attempts == 0


def test_alerts_list_shows_the_reason(
    state_url: str,
    clock: Clock,
    reporters: Collectors,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    a = reporters["a"]
    clock.advance(65)
    a.observe([reading("pump-3", clock.wall(), 9.0)])
    assert a.flush()
    clock.advance(180)
    assert a.flush()
    monkeypatch.setenv("INTEGRATION_PLATFORM_DB_URL", state_url)
    capsys.readouterr()

    assert main(["alerts", "list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[-1] == "REASON"
    (silent,) = [line for line in lines if "no reading from" in line]
    assert silent.split()[3] == "pump-3"  # the device, not a sensor
    assert silent.endswith("no reading from pump-3 since 10:42:05 UTC (expected every 60 s)")
    (threshold,) = [line for line in lines if "pump-3/vib" in line]
    assert threshold.endswith("vib at or above the critical limit 7.1 mm/s, peak 9")

    assert main(["alerts", "list", "--kind", "silence", "--json"]) == 0
    (row,) = map(json.loads, capsys.readouterr().out.splitlines())
    assert (row["kind"], row["sensor_id"], row["severity"]) == ("silence", "*", "warning")
    assert main(["alerts", "show", row["episode_key"]]) == 0
    assert "expected every 60 s" in capsys.readouterr().out


def test_status_changes_are_stamped_when_they_happen(
    engine: Engine, clock: Clock, reporters: Collectors
) -> None:
    a = reporters["a"]
    a.observe([reading("pump-3", clock.wall())])
    assert a.flush()
    online_since = clock.wall()
    clock.advance(5)
    a.observe([reading("pump-3", clock.wall())])
    assert a.flush()
    pump = device(engine, "pump-3")
    assert (pump.status_changed_at, pump.last_heartbeat) == (online_since, clock.wall())
    clock.advance(180)
    assert a.flush()
    assert device(engine, "pump-3").status_changed_at == clock.wall()
