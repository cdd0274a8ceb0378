"""Fault injection: a collector process SIGKILLed while it flushes, restarted, loses nothing.

The broker is a private mosquitto with a queue deep enough for what is published while the
collector is down: the shared broker's default (1000 messages per client) would drop some,
and that loss would be the broker's, not the collector's (see docs/streams.md).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from integration_platform_tests.mqtt_rig import HOST, Mosquitto, require_mosquitto
from integration_platform_tests.streams_helpers import (
    Publisher,
    read_delta_independently,
    row_keys,
    unique,
    wait_for,
)

T0 = datetime(2026, 7, 1, 8, 0, tzinfo=UTC)
MESSAGES = 600


def _message(site: str, i: int) -> tuple[str, dict, tuple]:
    sensor = ("a", "b")[i % 2]
    ts = T0 + timedelta(milliseconds=250 * i)
    body = {"ts": int(ts.timestamp() * 1000), "value": i * 0.5, "quality": "good"}
    return f"plant/{site}/dev-1/{sensor}", body, ("dev-1", sensor, ts.isoformat(), i * 0.5)


@pytest.mark.timeout(150)
def test_sigkill_mid_flush_then_restart_loses_and_duplicates_nothing(
    tmp_path: Path, data_dir: Path
) -> None:
    require_mosquitto()
    broker = Mosquitto(tmp_path / "broker")
    broker.start()
    site, client_id = unique("site"), unique("collector")
    devices = tmp_path / "devices.yaml"
    devices.write_text(
        f"""
site: {site}
collector: {{client_id: {client_id}, session_expiry_s: 300}}
devices:
  - device_id: dev-1
    protocol: mqtt
    endpoint: mqtt://{HOST}:{broker.port}
    sensors:
      - {{sensor_id: a, type: temperature, unit: degC}}
      - {{sensor_id: b, type: vibration, unit: mm/s}}
"""
    )
    lake = data_dir / "lake"
    table = lake / "telemetry" / "sensor_readings"
    command = [
        sys.executable,
        "-m",
        "integration_platform.cli",
        "collect",
        "--devices",
        str(devices),
        "--data-dir",
        str(data_dir),
        "--lake-uri",
        str(lake),
        "--flush-rows",
        "20",
        "--flush-seconds",
        "0.1",
        "--progress-seconds",
        "1",
    ]
    log_path = tmp_path / "collector.log"
    log = log_path.open("a")
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}

    def start() -> subprocess.Popen:
        return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)

    def commits() -> int:
        return len(list((table / "_delta_log").glob("*.json"))) if table.exists() else 0

    def rows() -> list[tuple]:
        return row_keys(read_delta_independently(table)) if commits() else []

    process = start()
    kills = 0
    try:
        with Publisher(HOST, broker.port) as publisher:
            topic, body, first = _message(site, 0)

            def probe() -> bool:  # the same reading again and again: de-duplicated
                publisher.publish(topic, body)
                return first in rows()

            assert wait_for(probe, timeout=40, interval=0.3), log_path.read_text()[-3000:]

            def publish_all() -> None:
                for i in range(1, MESSAGES):
                    topic, body, _ = _message(site, i)
                    publisher.publish(topic, body)
                    publisher.publish(topic, body)  # QoS 1 duplicate
                    time.sleep(0.004)

            sender = threading.Thread(target=publish_all)
            sender.start()
            for _ in range(3):
                seen = commits()
                assert wait_for(lambda seen=seen: commits() >= seen + 3, timeout=40)
                process.send_signal(signal.SIGKILL)  # flushes run every 0.1 s: mid-flush
                process.wait(10)
                kills += 1
                process = start()
            sender.join(60)
            assert not sender.is_alive()
        expected = sorted(_message(site, i)[2] for i in range(MESSAGES))
        assert wait_for(lambda: len(rows()) >= MESSAGES, timeout=60), (
            f"{len(rows())} rows of {MESSAGES}\n" + log_path.read_text()[-3000:]
        )
        time.sleep(0.5)  # anything late would show up as an extra row
        process.send_signal(signal.SIGTERM)
        assert process.wait(40) == 0  # flushed: the spool is empty
        assert kills == 3
        assert rows() == expected  # exactly once each: no loss, no duplicates
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
        log.close()
        broker.stop()
