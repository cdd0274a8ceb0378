"""Alerts and device status through the running collector, over the real Mosquitto."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

from integration_platform.state import Device, SensorAlert, make_engine, upgrade
from integration_platform.streams.collector import CollectorConfig
from integration_platform.streams.device_state import StateReporter
from integration_platform.streams.devices import parse_registry
from integration_platform.streams.readings import Reading
from integration_platform_tests.conftest import require_service
from integration_platform_tests.mqtt_rig import RunningCollector
from integration_platform_tests.streams_helpers import (
    MQTT_HOST,
    MQTT_PORT,
    Publisher,
    forget_mqtt_session,
    unique,
    wait_for,
)


def registry_yaml(site: str, client_id: str) -> str:
    return f"""
version: 1
site: {site}
collector: {{client_id: {client_id}, session_expiry_s: 300}}
devices:
  - device_id: pump-1
    protocol: mqtt
    endpoint: mqtt://{MQTT_HOST}:{MQTT_PORT}
    asset_id: PUMP-1
    sensors:
      - sensor_id: vib
        type: vibration
        unit: mm/s
        valid_range: [0, 50]
        thresholds: {{warning: 4.5, critical: 7.1, hysteresis: 0.5, cooldown_s: 0}}
      - {{sensor_id: temp, type: temperature, unit: degC}}
  - device_id: pump-2
    protocol: mqtt
    endpoint: mqtt://{MQTT_HOST}:{MQTT_PORT}
    sensors:
      - {{sensor_id: vib, type: vibration, unit: mm/s, thresholds: {{critical: 7.1}}}}
"""


@pytest.fixture
def setup(tmp_path: Path, data_dir: Path) -> Iterator[dict]:
    require_service("Mosquitto", MQTT_HOST, MQTT_PORT)
    site, client_id = unique("site"), unique("collector")
    devices = tmp_path / "devices.yaml"
    devices.write_text(registry_yaml(site, client_id))
    config = CollectorConfig(
        devices_file=devices,
        data_dir=data_dir,
        lake_root=str(data_dir / "lake"),
        flush_rows=50,
        flush_seconds=0.3,
        progress_seconds=1.0,
        reload_seconds=0.2,
        heartbeat_seconds=0.2,
        offline_after_seconds=1.0,
    )
    yield {
        "site": site,
        "config": config,
        "url": f"sqlite:///{data_dir}/state/integration_platform.db",
    }
    forget_mqtt_session(client_id)


def alerts(url: str, kind: str = "threshold") -> list[SensorAlert]:
    engine = make_engine(url)
    try:
        with Session(engine) as session:
            query = sa.select(SensorAlert).where(SensorAlert.kind == kind)
            return list(session.scalars(query.order_by(SensorAlert.id)))
    finally:
        engine.dispose()


def devices(url: str) -> dict[str, Device]:
    engine = make_engine(url)
    try:
        with Session(engine) as session:
            return {d.device_id: d for d in session.scalars(sa.select(Device))}
    finally:
        engine.dispose()


@pytest.mark.timeout(90)
def test_critical_crossing_raises_one_alert_and_recovery_resolves_it(setup: dict) -> None:
    site, config, url = setup["site"], setup["config"], setup["url"]
    topic = f"plant/{site}/pump-1/vib"
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=1)

    def send(publisher: Publisher, second: int, value: float) -> datetime:
        ts = start + timedelta(seconds=second)
        publisher.publish(topic, {"ts": int(ts.timestamp() * 1000), "value": value})
        return ts

    with RunningCollector(config) as collector, Publisher() as publisher:
        for second, value in enumerate([2.0, 3.0]):
            send(publisher, second, value)
        publisher.publish(f"plant/{site}/pump-1/temp", {"ts": start.isoformat(), "value": 500})
        crossed = send(publisher, 2, 8.0)
        for second, value in [(3, 9.5), (4, 8.2), (5, 6.0), (6, 4.2)]:  # 4.2: inside hysteresis
            send(publisher, second, value)
            send(publisher, second, value)  # QoS 1 duplicates change nothing
        assert wait_for(lambda: collector.mqtt_stats().readings >= 8, timeout=20)
        assert wait_for(lambda: len(alerts(url)) == 1, timeout=20)
        (alert,) = alerts(url)
        assert (alert.device_id, alert.sensor_id, alert.asset_id) == ("pump-1", "vib", "PUMP-1")
        assert (alert.severity, alert.status, alert.value, alert.threshold) == (
            "critical",
            "open",
            8.0,
            7.1,
        )
        assert alert.reading_ts == crossed
        assert alert.raised_at >= alert.reading_ts
        assert alert.raised_at <= datetime.now(UTC)

        send(publisher, 7, 3.5)  # below 4.5 - 0.5: recovered
        assert wait_for(lambda: alerts(url)[0].status == "resolved", timeout=20)
        # pump-1 is heard, pump-2 never publishes: offline after 1 s of silence, with one
        # silence episode however many heartbeats pass.
        assert wait_for(lambda: devices(url)["pump-2"].status == "offline", timeout=20)
        (silent,) = [a for a in alerts(url, "silence") if a.device_id == "pump-2"]
        assert (silent.sensor_id, silent.severity, silent.status) == ("*", "warning", "open")
        assert silent.reason == devices(url)["pump-2"].status_detail
        assert silent.reason is not None and silent.reason.startswith("no reading from pump-2")
        # Heartbeats are written every heartbeat_s, apart from the alert writes.
        heard = start + timedelta(seconds=7)
        assert wait_for(lambda: devices(url)["pump-1"].last_reading_ts == heard, timeout=20)
        pump = devices(url)["pump-1"]
        assert pump.status == "online" and pump.last_heartbeat is not None
    (alert,) = alerts(url)
    assert alert.resolved_reading_ts == start + timedelta(seconds=7)
    assert (alert.resolved_value, alert.peak_value) == (3.5, 9.5)
    assert [h["severity"] for h in alert.severity_history] == ["critical"]
    assert collector.state.stats.events_written == 2
    assert len([a for a in alerts(url, "silence") if a.device_id == "pump-2"]) == 1


def reading(second: int, value: float) -> Reading:
    return Reading(
        device_id="pump-1",
        sensor_id="vib",
        sensor_type="vibration",
        ts=datetime(2026, 5, 4, 10, 0, tzinfo=UTC) + timedelta(seconds=second),
        value=value,
        unit="mm/s",
        quality="good",
        source_protocol="mqtt",
    )


@pytest.mark.postgres
@pytest.mark.timeout(60)
def test_state_db_outage_queues_alerts_and_writes_them_when_back(postgres_url: str) -> None:
    from integration_platform_tests.tcp_relay import tcp_relay

    upgrade(postgres_url)
    registry = parse_registry(registry_yaml("s", "c"))
    with tcp_relay(("127.0.0.1", 5432)) as relay:
        url = sa.make_url(postgres_url).set(host="127.0.0.1", port=relay.port)
        reporter = StateReporter(url, registry, reporter_id="c", heartbeat_s=3600)
        reporter.start()
        try:
            assert reporter.stats.db_available
            relay.cut()
            reporter.observe([reading(0, 1.0), reading(1, 9.0)])  # never blocks or raises
            assert reporter.stats.alerts_raised == 1
            assert not reporter.flush()
            assert reporter.stats.events_queued == 1 and not reporter.stats.db_available
            reporter.observe([reading(2, 1.0)])  # resolved while the DB is away
            relay.restore()
            assert wait_for(reporter.flush, timeout=20)
            assert reporter.stats.events_queued == 0
        finally:
            reporter.stop()
    (alert,) = alerts(postgres_url)
    assert (alert.status, alert.value, alert.resolved_value) == ("resolved", 9.0, 1.0)
    assert alert.reading_ts == reading(1, 9.0).ts
