"""Rollups, device health, gaps and condition triggers on hand-made readings.

The readings and registry helpers are shared with ``test_telemetry_dagster.py``.
"""

import math
from datetime import UTC, date, datetime
from pathlib import Path

import pandas as pd
import pytest

from integration_platform.streams.devices import Registry, parse_registry
from integration_platform.streams.maintenance import (
    TRIGGER_COLUMNS,
    condition_triggers,
    registry_sensors,
)
from integration_platform.streams.rollups import (
    ROLLUP_COLUMNS,
    device_health,
    expected_intervals,
    rollup,
    telemetry_gaps,
)

REGISTRY_YAML = """\
version: 1
site: plant1
devices:
  - device_id: pump-1
    protocol: mqtt
    endpoint: mqtt://127.0.0.1:1883
    asset_id: PUMP-1
    sensors:
      - {sensor_id: vib, type: vibration, unit: mm/s,
         thresholds: {warning: 4.5, min_duration_s: 120}}
      - {sensor_id: temp, type: temperature, unit: degC}
      - {sensor_id: run_hours, type: counter, unit: h}
  - device_id: plc-1
    protocol: modbus
    endpoint: tcp://127.0.0.1:5020
    asset_id: PRESS-1
    modbus: {poll_interval_s: 1.0}
    sensors:
      - {sensor_id: pressure, type: pressure, unit: bar, register: {address: 0}}
  - device_id: ghost-1
    protocol: mqtt
    endpoint: mqtt://127.0.0.1:1883
    sensors:
      - {sensor_id: t, type: temperature}
"""

UNITS = {"vibration": "mm/s", "temperature": "degC", "counter": "h", "pressure": "bar"}


def registry() -> Registry:
    return parse_registry(REGISTRY_YAML)


def write_registry(folder: Path) -> Path:
    path = folder / "devices.yaml"
    path.write_text(REGISTRY_YAML, encoding="utf-8")
    return path


def readings(rows: list[tuple]) -> pd.DataFrame:
    """Rows of (device, sensor, type, ts, value, quality) as the canonical reading frame."""
    frame = pd.DataFrame(
        rows, columns=["device_id", "sensor_id", "sensor_type", "ts", "value", "quality"]
    )
    frame["ts"] = pd.to_datetime(frame["ts"], utc=True)
    frame["value"] = frame["value"].astype("float64")
    frame["unit"] = frame["sensor_type"].map(UNITS)
    frame["source_protocol"] = "mqtt"
    frame["ingested_at"] = frame["ts"]
    return frame[
        [
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
    ]


def sample_readings() -> pd.DataFrame:
    """Vibration with uncertain, bad (no value) and bad (out of range) readings; temperature
    across an hour boundary."""
    return readings(
        [
            ("pump-1", "vib", "vibration", "2026-11-20T10:00:10Z", 3.0, "good"),
            ("pump-1", "vib", "vibration", "2026-11-20T10:00:20Z", 4.0, "uncertain"),
            ("pump-1", "vib", "vibration", "2026-11-20T10:00:30Z", None, "bad"),
            ("pump-1", "vib", "vibration", "2026-11-20T10:00:40Z", 99.0, "bad"),
            ("pump-1", "vib", "vibration", "2026-11-20T10:01:05Z", 6.0, "good"),
            ("pump-1", "temp", "temperature", "2026-11-20T10:00:00Z", 50.0, "good"),
            ("pump-1", "temp", "temperature", "2026-11-20T10:00:30Z", 52.0, "good"),
            ("pump-1", "temp", "temperature", "2026-11-20T10:59:59Z", 60.0, "good"),
            ("pump-1", "temp", "temperature", "2026-11-20T11:00:00Z", 70.0, "good"),
        ]
    )


def _row(frame: pd.DataFrame, sensor: str, start: str) -> pd.Series:
    match = frame[(frame["sensor_id"] == sensor) & (frame["window_start"] == pd.Timestamp(start))]
    assert len(match) == 1, match
    return match.iloc[0]


def test_minute_rollup_excludes_bad_readings_and_gives_vibration_rms() -> None:
    out = rollup(sample_readings(), "1min")
    assert list(out.columns) == list(ROLLUP_COLUMNS)
    first = _row(out, "vib", "2026-11-20T10:00:00Z")
    assert (first["count"], first["bad_count"]) == (2, 2)
    assert (first["min"], first["max"], first["mean"]) == (3.0, 4.0, 3.5)
    assert first["rms"] == pytest.approx(math.sqrt((9 + 16) / 2))
    assert first["window_end"] == pd.Timestamp("2026-11-20T10:01:00Z")
    second = _row(out, "vib", "2026-11-20T10:01:00Z")
    assert (second["count"], second["bad_count"], second["mean"], second["rms"]) == (1, 0, 6, 6)
    temp = _row(out, "temp", "2026-11-20T10:00:00Z")
    assert (temp["count"], temp["mean"]) == (2, 51.0)
    assert math.isnan(temp["rms"])  # RMS is for vibration only
    assert set(out["date"]) == {date(2026, 11, 20)}
    assert len(out) == 5


def test_hour_rollup() -> None:
    out = rollup(sample_readings(), "1h")
    vib = _row(out, "vib", "2026-11-20T10:00:00Z")
    assert (vib["count"], vib["bad_count"], vib["min"], vib["max"]) == (3, 2, 3.0, 6.0)
    assert vib["mean"] == pytest.approx(13 / 3)
    assert vib["rms"] == pytest.approx(math.sqrt(61 / 3))
    temp = _row(out, "temp", "2026-11-20T10:00:00Z")
    assert (temp["count"], temp["min"], temp["max"], temp["mean"]) == (3, 50.0, 60.0, 54.0)
    assert _row(out, "temp", "2026-11-20T11:00:00Z")["mean"] == 70.0


def test_rollup_of_no_readings_is_typed_and_empty() -> None:
    out = rollup(sample_readings().iloc[:0], "1min")
    assert out.empty and list(out.columns) == list(ROLLUP_COLUMNS)
    assert str(out["count"].dtype) == "int64"


def test_expected_interval_is_the_poll_interval_or_a_minute() -> None:
    assert expected_intervals(registry()) == {"pump-1": 60.0, "plc-1": 1.0, "ghost-1": 60.0}


def test_device_health() -> None:
    data = readings(
        [
            ("pump-1", "vib", "vibration", "2026-11-19T23:59:00Z", 3.0, "good"),
            ("pump-1", "vib", "vibration", "2026-11-20T09:58:00Z", 3.0, "good"),
            ("pump-1", "vib", "vibration", "2026-11-20T09:59:00Z", None, "bad"),
            ("plc-1", "pressure", "pressure", "2026-11-20T09:59:50Z", 4.0, "good"),
            ("plc-1", "pressure", "pressure", "2026-11-20T09:59:55Z", None, "bad"),
            ("stray-9", "x", "temperature", "2026-11-20T09:59:59Z", 1.0, "good"),
        ]
    )
    as_of = datetime(2026, 11, 20, 10, 0, 0, tzinfo=UTC)
    health = device_health(data, expected_intervals(registry()), as_of=as_of).set_index("device_id")
    assert list(health.index) == ["ghost-1", "plc-1", "pump-1", "stray-9"]
    pump = health.loc["pump-1"]
    # Silent 120 s <= 3 x 60 s; the last *usable* reading counts, bad ones do not.
    assert (pump["status"], pump["silent_s"], pump["readings_today"]) == ("online", 120.0, 2)
    assert pump["bad_share_today"] == 0.5
    plc = health.loc["plc-1"]
    assert (plc["status"], plc["silent_s"]) == ("offline", 10.0)  # 10 s > 3 x 1 s poll
    assert health.loc["ghost-1", "status"] == "offline"
    assert pd.isna(health.loc["ghost-1", "last_seen"])
    assert health.loc["stray-9", "status"] == "online"  # unregistered: a minute expected


def test_gaps_longer_than_three_intervals_with_missed_polls_counted() -> None:
    data = readings(
        [
            ("plc-1", "pressure", "pressure", "2026-11-20T10:00:00Z", 4.0, "good"),
            ("plc-1", "pressure", "pressure", "2026-11-20T10:00:01Z", 4.0, "good"),
            ("plc-1", "pressure", "pressure", "2026-11-20T10:00:02Z", None, "bad"),
            ("plc-1", "pressure", "pressure", "2026-11-20T10:00:03Z", None, "bad"),
            ("plc-1", "pressure", "pressure", "2026-11-20T10:00:11Z", 4.0, "good"),
            ("plc-1", "pressure", "pressure", "2026-11-20T10:00:13Z", 4.0, "good"),
            ("pump-1", "vib", "vibration", "2026-11-20T10:00:00Z", 3.0, "good"),
            ("pump-1", "vib", "vibration", "2026-11-20T10:03:00Z", 3.0, "good"),
            ("pump-1", "vib", "vibration", "2026-11-20T10:06:01Z", 3.0, "good"),
        ]
    )
    gaps = telemetry_gaps(data, expected_intervals(registry()))
    assert gaps[["device_id", "sensor_id", "gap_s", "bad_readings"]].values.tolist() == [
        ["plc-1", "pressure", 10.0, 2],
        ["pump-1", "vib", 181.0, 0],  # 180 s is exactly 3 x 60 s: not a gap
    ]
    assert gaps.loc[0, "gap_start"] == pd.Timestamp("2026-11-20T10:00:01Z")
    assert gaps.loc[0, "date"] == date(2026, 11, 20)


def _schedules() -> pd.DataFrame:
    base = {
        "asset_id": "PUMP-1",
        "status": "active",
        "trigger_type": "condition",
        "condition_metric": None,
        "condition_operator": None,
        "condition_threshold": None,
        "meter_name": None,
        "next_due_meter": None,
    }
    rows = [
        {"schedule_id": "S1", "condition_metric": "vibration", "condition_operator": "gt",
         "condition_threshold": 4.5},
        {"schedule_id": "S2", "condition_metric": "vibration", "condition_operator": "gt",
         "condition_threshold": 5.5},
        {"schedule_id": "S3", "asset_id": "PRESS-1", "condition_metric": "pressure",
         "condition_operator": "lt", "condition_threshold": 2.0},
        {"schedule_id": "S4", "condition_metric": "humidity", "condition_operator": "gt",
         "condition_threshold": 60.0},
        {"schedule_id": "U1", "trigger_type": "usage", "meter_name": "run_hours",
         "next_due_meter": 500.0},
        {"schedule_id": "U2", "trigger_type": "usage", "meter_name": "run_hours",
         "next_due_meter": 600.0},
        {"schedule_id": "P1", "status": "paused", "condition_metric": "vibration",
         "condition_operator": "gt", "condition_threshold": 1.0},
        {"schedule_id": "T1", "trigger_type": "time"},
    ]  # fmt: skip
    return pd.DataFrame([{**base, **row} for row in rows])


def _minutes(device: str, sensor: str, kind: str, values: list[float]) -> list[tuple]:
    return [
        (device, sensor, kind, f"2026-11-20T10:{minute:02d}:30Z", value, "good")
        for minute, value in enumerate(values)
    ]


def test_condition_and_usage_triggers() -> None:
    data = readings(
        # Minute means 5,5,3,5,5,5: the longest breach of 4.5 lasts 180 s (>= 120 s).
        _minutes("pump-1", "vib", "vibration", [5, 5, 3, 5, 5, 5])
        # 1.5 bar for two minutes, below 2.0: the registry gives no min duration.
        + _minutes("plc-1", "pressure", "pressure", [4, 1.5, 1.5, 4])
        + _minutes("pump-1", "run_hours", "counter", [509, 510])
    )
    out = condition_triggers(
        _schedules(),
        rollup(data, "1min"),
        registry_sensors(registry()),
        as_of=datetime(2026, 11, 20, 12, tzinfo=UTC),
        date="2026-11-20",
    )
    assert list(out.columns) == list(TRIGGER_COLUMNS)
    rows = out.set_index("schedule_id")
    assert list(rows.index) == ["S1", "S2", "S3", "S4", "U1", "U2"]  # paused, time: left out
    assert rows.loc["S1", ["due", "breach_s", "min_duration_s", "observed"]].tolist() == [
        True,
        180.0,
        120.0,
        5.0,
    ]
    assert rows.loc["S1", "sensor_id"] == "vib"
    assert not rows.loc["S2", "due"] and rows.loc["S2", "breach_s"] == 0
    assert rows.loc["S3", ["due", "breach_s", "observed"]].tolist() == [True, 120.0, 1.5]
    assert not rows.loc["S4", "due"]
    assert "no sensor of type humidity" in rows.loc["S4", "reason"]
    assert rows.loc["U1", ["due", "observed", "sensor_id"]].tolist() == [True, 510.0, "run_hours"]
    assert not rows.loc["U2", "due"]
    assert set(out["date"]) == {date(2026, 11, 20)}


def test_a_short_breach_is_not_due() -> None:
    data = readings(_minutes("pump-1", "vib", "vibration", [5, 3, 5, 3]))
    out = condition_triggers(
        _schedules().iloc[:1],
        rollup(data, "1min"),
        registry_sensors(registry()),
        as_of=datetime(2026, 11, 20, 12, tzinfo=UTC),
        date="2026-11-20",
    )
    assert out.loc[0, ["due", "breach_s"]].tolist() == [False, 60.0]
    assert "less than 120 s" in out.loc[0, "reason"]


def test_no_schedules_gives_the_columns() -> None:
    out = condition_triggers(
        _schedules().iloc[:0],
        rollup(sample_readings(), "1min"),
        registry_sensors(registry()),
        as_of=datetime(2026, 11, 20, 12, tzinfo=UTC),
        date="2026-11-20",
    )
    assert out.empty and list(out.columns) == list(TRIGGER_COLUMNS)
