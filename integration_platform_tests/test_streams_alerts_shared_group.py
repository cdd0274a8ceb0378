"""Two collectors in one MQTT shared subscription group, one state DB: one alert episode.

Mosquitto hands each message of ``$share/<group>/...`` to one member of the group, so each
collector evaluates part of the sensor's readings; the state DB (SQLite file or PostgreSQL)
arbitrates. Real broker, real collectors on threads, real databases.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

from integration_platform.state import SensorAlert, dispose_engines, make_engine
from integration_platform.streams.collector import Collector, CollectorConfig
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

STEP_S = 0.25  # reading time between two readings of the sensor
# Wall time between two publishes: a live sensor's pace, five times faster (a collector's
# change reaches the state DB within milliseconds, before the sensor's next reading).
PACE_S = STEP_S / 5


def registry_yaml(site: str) -> str:
    return f"""
version: 1
site: {site}
collector: {{session_expiry_s: 300}}
devices:
  - device_id: pump-1
    protocol: mqtt
    endpoint: mqtt://{MQTT_HOST}:{MQTT_PORT}
    asset_id: PUMP-1
    sensors:
      - sensor_id: vib
        type: vibration
        unit: mm/s
        thresholds: {{critical: 7.1, hysteresis: 0.5, min_duration_s: 2, cooldown_s: 60}}
"""


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def group(request: pytest.FixtureRequest, tmp_path: Path, data_dir: Path) -> Iterator[dict]:
    """Two collector configurations sharing a subscription group and a state DB."""
    require_service("Mosquitto", MQTT_HOST, MQTT_PORT)
    site = unique("site")
    devices = tmp_path / "devices.yaml"
    devices.write_text(registry_yaml(site))
    if request.param == "sqlite":
        state_url = f"sqlite:///{data_dir}/state/integration_platform.db"
    else:
        state_url = request.getfixturevalue("postgres_url")
    base = CollectorConfig(
        devices_file=devices,
        data_dir=data_dir,
        lake_root=str(data_dir / "lake"),
        flush_rows=200,
        flush_seconds=0.5,
        shared_group=unique("grp"),
        state_url=state_url,
        heartbeat_seconds=0.5,
    )
    client_ids = [unique("collector"), unique("collector")]
    configs = [replace(base, client_id=client_id) for client_id in client_ids]
    yield {"site": site, "configs": configs, "url": state_url}
    for client_id in client_ids:
        forget_mqtt_session(client_id)
    dispose_engines()


def alerts(url: str) -> list[SensorAlert]:
    engine = make_engine(url)
    try:
        with Session(engine) as session:
            return list(session.scalars(sa.select(SensorAlert).order_by(SensorAlert.id)))
    finally:
        engine.dispose()


class Sensor:
    """Publishes one reading after the other, ``STEP_S`` of reading time and ``PACE_S`` of
    wall time apart."""

    def __init__(self, publisher: Publisher, site: str, pace_s: float = PACE_S) -> None:
        self.publisher = publisher
        self.pace_s = pace_s
        self.topic = f"plant/{site}/pump-1/vib"
        self.start = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=2)
        self.count = 0

    def send(self, *values: float) -> datetime:
        """Publish the values; the reading time of the first."""
        first = self.at(self.count)
        for value in values:
            ts = self.at(self.count)
            self.publisher.publish(self.topic, {"ts": int(ts.timestamp() * 1000), "value": value})
            self.count += 1
            time.sleep(self.pace_s)
        return first

    def at(self, number: int) -> datetime:
        return self.start + timedelta(seconds=number * STEP_S)


def run_episode(
    group: dict, shape: list[float], pace_s: float = PACE_S
) -> tuple[list[Collector], Sensor, datetime]:
    """Publish quiet readings, then ``shape``, then readings back inside until the episode
    resolves (a live sensor keeps publishing); the collectors, the sensor and the time of
    the first reading back inside."""
    url = group["url"]
    with (
        RunningCollector(group["configs"][0]) as one,
        RunningCollector(group["configs"][1]) as two,
        Publisher() as publisher,
    ):
        sensor = Sensor(publisher, group["site"], pace_s)
        sensor.send(*[2.0] * 4)
        sensor.send(*shape)
        assert wait_for(lambda: len(alerts(url)) >= 1, timeout=20), "no episode was raised"
        recovered = sensor.send(3.0)

        def resolved() -> bool:
            if alerts(url)[0].status == "resolved":
                return True
            sensor.send(3.0)
            return False

        assert wait_for(resolved, timeout=20, interval=0.2), "the episode was not resolved"
        total = sensor.count
        assert wait_for(
            lambda: one.mqtt_stats().readings + two.mqtt_stats().readings >= total, timeout=20
        )
        # The broker split the sensor's readings between the two collectors.
        assert one.mqtt_stats().readings > 0 and two.mqtt_stats().readings > 0
        for collector in (one, two):
            assert wait_for(collector.state.flush, timeout=10)
    return [one, two], sensor, recovered


def assert_one_episode(collectors: list[Collector], url: str) -> SensorAlert:
    (alert,) = alerts(url)
    assert (alert.device_id, alert.sensor_id, alert.severity) == ("pump-1", "vib", "critical")
    assert len(alert.severity_history) == 1  # raised once, never raised again
    stats = [c.state.stats for c in collectors]
    assert sum(s.episodes_opened for s in stats) == 1
    assert sum(s.episodes_resolved for s in stats) == 1
    return alert


@pytest.mark.timeout(120)
@pytest.mark.parametrize("pace_s", [PACE_S, 0.0], ids=["live", "burst"])
def test_breach_past_min_duration_then_recovery_is_one_episode(group: dict, pace_s: float) -> None:
    """Live pace, and a burst (a backlog delivered at once: both collectors decide before
    either has written)."""
    breach = [8.0] * 16  # 4 s of reading time, min_duration_s is 2
    collectors, sensor, recovered = run_episode(group, breach, pace_s)
    alert = assert_one_episode(collectors, group["url"])
    first_breach = sensor.at(4)
    # Raised once the breach had lasted 2 s, by whichever collector saw that reading.
    assert first_breach + timedelta(seconds=2) <= alert.reading_ts <= sensor.at(19)
    assert alert.status == "resolved" and alert.resolved_value == 3.0
    assert alert.resolved_reading_ts >= recovered
    assert alert.peak_value == 8.0


@pytest.mark.timeout(120)
def test_flapping_inside_the_hysteresis_band_does_not_split_the_episode(group: dict) -> None:
    # Raised after 2 s, then back and forth across 7.1 but never below 7.1 - 0.5.
    shape = [8.0] * 10 + [6.8, 7.6, 6.7, 8.1, 6.9, 7.9, 6.75, 7.3] * 3
    collectors, _, recovered = run_episode(group, shape)
    alert = assert_one_episode(collectors, group["url"])
    assert alert.status == "resolved" and alert.resolved_reading_ts >= recovered
    assert alert.peak_value == 8.1
