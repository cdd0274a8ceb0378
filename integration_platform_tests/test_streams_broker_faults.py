"""Fault injection on the broker: Mosquitto stopped for 30 s and restarted under a collector.

A private broker (persistence on) is used, never the shared one on 1883. The collector talks
to it through a relay so the test can also stall the link: messages published while the
collector hears nothing are queued by the broker for the collector's persistent session, saved
when the broker stops, and must arrive after the restart, once each.

Already covered elsewhere, so not repeated here: a collector SIGKILLed and restarted while a
publisher keeps publishing (test_streams_faults.py); an OPC-UA server restarted under a
subscription (test_streams_opcua.py); a lake that refuses writes, then recovers
(test_streams_mqtt.py, test_streams_writer.py).
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from integration_platform.streams.collector import CollectorConfig
from integration_platform_tests.mqtt_rig import (
    Mosquitto,
    Relay,
    RigPublisher,
    RunningCollector,
    require_mosquitto,
)
from integration_platform_tests.streams_helpers import read_delta_independently, row_keys, wait_for

T0 = datetime(2026, 8, 3, 6, 0, tzinfo=UTC)
OUTAGE_S = 30.0
PER_PHASE = 100
SITE = "plant9"


def _message(phase: int, i: int) -> tuple[str, dict, tuple]:
    """Reading ``i`` of a phase: unique (device, sensor, ts), value encodes phase and index."""
    sensor = ("temp", "vib")[i % 2]
    ts = T0 + timedelta(minutes=phase, milliseconds=100 * i)
    value = phase * 1000 + i * 0.5
    body = {"ts": int(ts.timestamp() * 1000), "value": value, "quality": "good"}
    return f"plant/{SITE}/press-7/{sensor}", body, ("press-7", sensor, ts.isoformat(), value)


@pytest.mark.timeout(150)
def test_broker_down_30s_then_restarted_loses_and_duplicates_nothing(
    tmp_path: Path, data_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    require_mosquitto()
    caplog.set_level(logging.INFO, logger="integration_platform.streams.mqtt")
    broker = Mosquitto(tmp_path / "broker", max_queued_messages=10_000)
    broker.start()
    relay = Relay(broker.port)
    devices = tmp_path / "devices.yaml"
    devices.write_text(
        f"""
site: {SITE}
collector: {{client_id: outage-collector, session_expiry_s: 600, keepalive_s: 30}}
devices:
  - device_id: press-7
    protocol: mqtt
    endpoint: mqtt://127.0.0.1:{relay.port}
    sensors:
      - {{sensor_id: temp, type: temperature, unit: degC}}
      - {{sensor_id: vib, type: vibration, unit: mm/s}}
"""
    )
    config = CollectorConfig(
        devices_file=devices,
        data_dir=data_dir,
        lake_root=str(data_dir / "lake"),
        flush_rows=50,
        flush_seconds=0.3,
        progress_seconds=5.0,
        reload_seconds=0.5,
    )
    table = data_dir / "lake" / "telemetry" / "sensor_readings"

    def rows() -> list[tuple]:
        return row_keys(read_delta_independently(table)) if (table / "_delta_log").exists() else []

    def publish(phase: int) -> list[tuple]:
        with RigPublisher(broker.port) as publisher:  # waits for each PUBACK
            for i in range(PER_PHASE):
                topic, body, _ = _message(phase, i)
                publisher.publish(topic, body)
        return [_message(phase, i)[2] for i in range(PER_PHASE)]

    expected: list[tuple] = []
    try:
        running = RunningCollector(config)
        with running as collector:
            # 1. Before the outage: published and collected live.
            expected += publish(1)
            assert wait_for(lambda: collector.mqtt_stats().acked >= PER_PHASE, timeout=20)

            # 2. The link stalls: the collector hears nothing; the broker queues phase 2 for
            #    its session (20 in flight into the stalled link, the rest in its queue).
            relay.pause()
            expected += publish(2)
            acked_before_outage = collector.mqtt_stats().acked
            assert acked_before_outage == PER_PHASE  # phase 2 is held by the broker

            # 3. The broker stops cleanly (persistence saved) and stays down for 30 s.
            broker.stop()
            relay.drop()  # what was held in the stalled link is lost with the connection
            relay.resume()
            down_at = time.monotonic()
            time.sleep(OUTAGE_S)
            assert running.thread.is_alive()  # the collector kept running through the outage
            broker.start()
            outage = time.monotonic() - down_at

            # 4. The collector reconnects by itself (paho backs off 1, 2, 4, 8, 16 s: the
            #    attempt ~31 s after the drop finds the broker), its session is still there
            #    and the broker delivers phase 2.
            assert wait_for(lambda: collector.mqtt_stats().connects >= 2, timeout=45), (
                broker.log_tail()
            )
            assert wait_for(
                lambda: collector.mqtt_stats().acked >= acked_before_outage + PER_PHASE,
                timeout=20,
            )
            assert "session present: True" in caplog.text

            # 5. After the restart: live again.
            expected += publish(3)
            assert wait_for(lambda: len(rows()) >= len(expected), timeout=20)

        # 6. Collector stopped, readings published meanwhile, collector started again.
        expected += publish(4)
        with RunningCollector(config):
            assert wait_for(lambda: len(rows()) >= len(expected), timeout=20)
            time.sleep(0.5)  # a late duplicate would show up as an extra row
    finally:
        relay.close()
        broker.stop()
    assert outage >= OUTAGE_S
    assert rows() == sorted(expected)  # each reading exactly once: none lost, none doubled
