"""The streams part of ``make demo``: plant -> collector -> Delta -> alert -> one work order."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

from integration_platform.defs.alerts.resources import CbmCmms
from integration_platform.defs.alerts.sensors import cbm_work_orders_critical_alert_sensor
from integration_platform.lake import DeltaLake
from integration_platform.state import SensorAlert, StateDatabase, dispose_engines, make_engine
from integration_platform.state.devices import CbmWorkOrder
from integration_platform.streams.demo import FAULT_SENSOR, run_streams_demo
from integration_platform_tests.conftest import require_service
from integration_platform_tests.streams_helpers import (
    MQTT_HOST,
    MQTT_PORT,
    forget_mqtt_session,
    read_delta_independently,
)

BROKER = f"mqtt://{MQTT_HOST}:{MQTT_PORT}"


@pytest.fixture
def state_url(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.delenv("CBM_CMMS_CONNECTION", raising=False)  # the outbox, as in make demo
    yield f"sqlite:///{data_dir / 'state.db'}"
    dispose_engines()


def rows(url: str, model: type) -> list:
    engine = make_engine(url)
    try:
        with Session(engine, expire_on_commit=False) as session:
            return list(session.scalars(sa.select(model)))
    finally:
        engine.dispose()


@pytest.mark.timeout(90)
def test_demo_lands_readings_raises_the_alert_and_opens_one_work_order(
    data_dir: Path, state_url: str
) -> None:
    require_service("Mosquitto", MQTT_HOST, MQTT_PORT)
    lake_root = str(data_dir / "lake")
    with dg.DagsterInstance.ephemeral() as instance:
        result = run_streams_demo(
            instance, lake_root, state_url, data_dir, broker_url=BROKER, out=lambda _: None
        )
    forget_mqtt_session(str(result.client_id))
    assert result.status == "ok", result.text

    frame = read_delta_independently(data_dir / "lake" / "telemetry" / "sensor_readings")
    frame = frame.to_pandas()
    counts = frame.groupby(["device_id", "sensor_id"]).size()
    assert len(counts) == 12 and counts.min() >= 3  # every sensor: MQTT, Modbus and OPC-UA
    assert result.readings == len(frame)
    assert not frame.duplicated(["device_id", "sensor_id", "ts"]).any()
    assert (frame["quality"] == "good").all()  # no outage gaps at start or stop
    vibration = frame[frame.sensor_id == FAULT_SENSOR[1]].sort_values("ts")["value"]
    assert vibration.iloc[0] < 4.5 and vibration.max() > 7.1  # the injected fault

    alerts = rows(state_url, SensorAlert)
    assert [(a.device_id, a.sensor_id, a.severity) for a in alerts] == [(*FAULT_SENSOR, "critical")]
    (alert,) = alerts
    assert result.alerts == [alert.episode_key]
    assert alert.value >= 4.5 and alert.threshold == 7.1 and alert.asset_id == "PUMP-101"
    assert alert.severity_history[-1]["severity"] == "critical"  # raised, or warning escalated
    outbox = rows(state_url, CbmWorkOrder)
    assert [(w.reference, w.episode_key) for w in outbox] == [
        (alert.work_order_id, alert.episode_key)
    ]
    assert (alert.work_order_system, result.work_orders) == ("outbox", [alert.work_order_id])
    assert outbox[0].asset_id == "PUMP-101"

    rollups = DeltaLake(uri=lake_root).read(["gold", "sensor_rollups_1m"])
    pump = rollups[(rollups.device_id == FAULT_SENSOR[0]) & (rollups.sensor_id == FAULT_SENSOR[1])]
    assert pump["count"].sum() == len(vibration) and pump["max"].max() > 7.1

    # The sensor's next tick (the daemon's, every 30 s) opens nothing more for the episode.
    context = dg.build_sensor_context(
        resources={
            "state": StateDatabase(url=state_url),
            "cbm_cmms": CbmCmms(),
            "lake": DeltaLake(uri=lake_root),
        }
    )
    cbm_work_orders_critical_alert_sensor(context)
    assert len(rows(state_url, CbmWorkOrder)) == 1

    for text in ("readings landed in this run", "gold/sensor_rollups_1m", "work order CB"):
        assert text in result.text


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_without_a_broker_the_part_is_skipped_with_the_reason_but_fails_in_ci(
    data_dir: Path, state_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"mqtt://127.0.0.1:{_closed_port()}"
    monkeypatch.delenv("CI", raising=False)
    lake_root = str(data_dir / "lake")
    with dg.DagsterInstance.ephemeral() as instance:
        skipped = run_streams_demo(instance, lake_root, state_url, data_dir, broker_url=url)
        monkeypatch.setenv("CI", "true")
        failed = run_streams_demo(instance, lake_root, state_url, data_dir, broker_url=url)
    assert skipped.status == "skipped"
    assert skipped.text.startswith("streams part skipped: no MQTT broker at 127.0.0.1:")
    assert "Start Mosquitto" in skipped.text and "MQTT_URL" in skipped.text
    assert failed.status == "failed" and "CI must provide the broker" in failed.text
    assert not (data_dir / "lake").exists()
