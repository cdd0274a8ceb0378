"""The device registry in the state DB and the alert commands, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

from integration_platform.cli import main
from integration_platform.state import (
    Device,
    DeviceSensor,
    dispose_engines,
    make_engine,
    upgrade,
)
from integration_platform.streams.alerts import AlertEvent
from integration_platform.streams.device_state import write_event

T0 = datetime(2026, 5, 4, 10, 0, tzinfo=UTC)

REGISTRY = """
version: 1
site: plant1
devices:
  - device_id: pump-1
    name: Pump 1
    protocol: mqtt
    endpoint: mqtt://127.0.0.1:1883
    credentials: {username_env: MQTT_USERNAME}
    asset_id: PUMP-1
    sensors:
      - sensor_id: vib
        type: vibration
        unit: mm/s
        valid_range: [0, 50]
        calibration_date: 2026-01-15
        thresholds: {warning: 4.5, critical: 7.1, hysteresis: 0.5, min_duration_s: 30}
      - {sensor_id: temp, type: temperature, unit: degC, asset_id: MOTOR-1}
  - device_id: press-7
    protocol: modbus
    endpoint: tcp://127.0.0.1:5020
    sensors:
      - {sensor_id: oil, type: temperature, register: {address: 0, type: float32}}
"""


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def state_url(
    request: pytest.FixtureRequest, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[str]:
    if request.param == "sqlite":
        url = f"sqlite:///{data_dir / 'state.db'}"
    else:
        url = request.getfixturevalue("postgres_url")
    monkeypatch.setenv("INTEGRATION_PLATFORM_DB_URL", url)
    yield url
    dispose_engines()


def rows(url: str, model: type) -> list:
    engine = make_engine(url)
    try:
        with Session(engine) as session:
            return list(session.scalars(sa.select(model)))
    finally:
        engine.dispose()


def test_apply_upserts_and_retires(state_url: str, tmp_path: Path, capsys) -> None:
    file = tmp_path / "devices.yaml"
    file.write_text(REGISTRY)
    assert main(["devices", "apply", str(file)]) == 0
    assert "2 added" in capsys.readouterr().out
    devices = {d.device_id: d for d in rows(state_url, Device)}
    assert devices["pump-1"].settings["credentials"] == {"username_env": "MQTT_USERNAME"}
    assert (devices["pump-1"].site, devices["press-7"].protocol) == ("plant1", "modbus")
    sensors = {(s.device_id, s.sensor_id): s for s in rows(state_url, DeviceSensor)}
    vib = sensors[("pump-1", "vib")]
    assert (vib.valid_min, vib.valid_max, vib.calibration_date) == (0, 50, date(2026, 1, 15))
    assert vib.thresholds["critical"] == 7.1 and vib.thresholds["min_duration_s"] == 30
    assert (vib.asset_id, sensors[("pump-1", "temp")].asset_id) == ("PUMP-1", "MOTOR-1")

    # Applying again changes nothing; an edit updates; a removed device is retired, kept.
    assert main(["devices", "apply", str(file)]) == 0
    assert "0 added, 0 updated, 2 unchanged" in capsys.readouterr().out
    edited = REGISTRY.replace("critical: 7.1", "critical: 8.0").split("  - device_id: press-7")[0]
    file.write_text(edited)
    assert main(["devices", "apply", str(file)]) == 0
    out = capsys.readouterr().out
    assert "1 updated" in out and "1 retired" in out and "retired: press-7" in out
    devices = {d.device_id: d for d in rows(state_url, Device)}
    assert devices["press-7"].registry_state == "retired" and devices["press-7"].retired_at
    sensors = {(s.device_id, s.sensor_id): s for s in rows(state_url, DeviceSensor)}
    assert sensors[("pump-1", "vib")].thresholds["critical"] == 8.0
    assert sensors[("press-7", "oil")].registry_state == "retired"

    # Declared again: active again.
    file.write_text(REGISTRY)
    assert main(["devices", "apply", str(file)]) == 0
    capsys.readouterr()
    assert {d.device_id: d.registry_state for d in rows(state_url, Device)}["press-7"] == "active"


def test_apply_refuses_a_broken_file(state_url: str, tmp_path: Path, capsys) -> None:
    file = tmp_path / "devices.yaml"
    file.write_text(REGISTRY.replace("type: vibration", "type: Vibration"))
    assert main(["devices", "apply", str(file)]) == 2
    err = capsys.readouterr().err
    assert "line 13" in err and "sensors[vib].type" in err
    upgrade(state_url)
    assert rows(state_url, Device) == []


def raise_alert(url: str, device: str = "pump-1", second: int = 0, value: float = 9.0) -> str:
    event = AlertEvent(
        kind="raised",
        episode_key=f"{device}/vib@{second}",
        device_id=device,
        sensor_id="vib",
        severity="critical",
        value=value,
        threshold=7.1,
        reading_ts=T0 + timedelta(seconds=second),
        at=T0 + timedelta(seconds=second, milliseconds=40),
        direction="above",
        peak_value=value,
        asset_id="PUMP-1",
        unit="mm/s",
    )
    engine = make_engine(url)
    try:
        with Session(engine) as session, session.begin():
            write_event(session, event)
            write_event(session, event)  # a retried write: still one episode
    finally:
        engine.dispose()
    return event.episode_key


def test_list_show_and_ack(state_url: str, tmp_path: Path, capsys) -> None:
    file = tmp_path / "devices.yaml"
    file.write_text(REGISTRY)
    assert main(["devices", "apply", str(file)]) == 0
    key = raise_alert(state_url)
    engine = make_engine(state_url)
    with engine.begin() as connection:
        connection.execute(
            sa.update(Device)
            .where(Device.device_id == "pump-1")
            .values(status="online", last_heartbeat=datetime.now(UTC))
        )
    engine.dispose()
    capsys.readouterr()

    assert main(["devices", "list", "--json"]) == 0
    listed = {d["device_id"]: d for d in map(json.loads, capsys.readouterr().out.splitlines())}
    assert (listed["pump-1"]["status"], listed["pump-1"]["open_alerts"]) == ("online", 1)
    assert (listed["press-7"]["status"], listed["press-7"]["open_alerts"]) == ("unknown", 0)

    assert main(["devices", "show", "pump-1"]) == 0
    out = capsys.readouterr().out
    assert "2026-01-15" in out  # calibration date
    assert "vib" in out and "above w=4.5 c=7.1" in out and "critical" in out
    assert main(["devices", "show", "nope"]) == 1
    capsys.readouterr()

    assert main(["alerts", "list", "--json"]) == 0
    (alert,) = map(json.loads, capsys.readouterr().out.splitlines())
    assert (alert["episode_key"], alert["status"], alert["latency_ms"]) == (key, "open", 40.0)

    assert main(["alerts", "ack", str(alert["id"]), "--by", "jane", "--note", "on it"]) == 0
    assert "acknowledged by jane" in capsys.readouterr().out
    assert main(["alerts", "ack", key, "--by", "joe"]) == 0  # the first person stays
    capsys.readouterr()
    assert main(["alerts", "show", key]) == 0
    out = capsys.readouterr().out
    assert "acknowledged_by          jane" in out and "status                   acknowledged" in out
    assert main(["alerts", "list", "--status", "resolved"]) == 0
    assert key not in capsys.readouterr().out
    assert main(["alerts", "show", "999"]) == 1
