"""Stream commands: registry checks, argument wiring, and the simulated example plant end to end."""

from __future__ import annotations

import argparse
import asyncio
import socket
import threading
from pathlib import Path

import pytest

from integration_platform.cli import main
from integration_platform.streams.cli import EXAMPLE_DEVICES, add_stream_commands
from integration_platform.streams.collector import Collector, CollectorConfig
from integration_platform.streams.devices import parse_registry
from integration_platform.streams.simulate import Signal, run_simulator
from integration_platform_tests.conftest import require_service
from integration_platform_tests.streams_helpers import (
    MQTT_HOST,
    MQTT_PORT,
    forget_mqtt_session,
    read_delta_independently,
    unique,
    wait_for,
)


def test_devices_check_reports_file_line_and_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["devices", "check", str(EXAMPLE_DEVICES)]) == 0
    assert "ok: 4 devices, 12 sensors" in capsys.readouterr().out
    broken = tmp_path / "devices.yaml"
    broken.write_text(
        "devices:\n"
        "  - device_id: pump-1\n"
        "    protocol: mqtt\n"
        "    endpoint: mqtt://127.0.0.1:1883\n"
        "    sensors:\n"
        "      - sensor_id: vib\n"
        "        type: Vibration\n"
        "        thresholds: {warning: 9, critical: 7}\n"
    )
    assert main(["devices", "check", str(broken)]) == 1
    err = capsys.readouterr().err
    assert f"{broken}, line 7: devices[pump-1].sensors[vib].type: must be a lowercase" in err
    assert f"{broken}, line 8: devices[pump-1].sensors[vib].thresholds: critical" in err


def test_collect_refuses_a_broken_registry(
    tmp_path: Path, data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = tmp_path / "devices.yaml"
    broken.write_text("devices:\n  - device_id: [unclosed\n")
    assert main(["collect", "--devices", str(broken)]) == 2
    assert "not valid YAML" in capsys.readouterr().err


def test_commands_plug_into_a_parent_parser() -> None:
    parser = argparse.ArgumentParser()
    add_stream_commands(parser.add_subparsers())
    args = parser.parse_args(["collect", "--devices", "d.yaml", "--flush-rows", "10"])
    assert (args.flush_rows, args.flush_seconds, args.handler.__name__) == (10, 2.0, "run_collect")
    args = parser.parse_args(["simulate", "--duration", "5"])
    assert (args.duration, args.mqtt_url) == (5.0, "mqtt://127.0.0.1:1883")
    with pytest.raises(SystemExit):
        parser.parse_args(["collect", "--devices", "d.yaml", "--flush-seconds", "0"])


def test_bearing_fault_drives_vibration_past_critical() -> None:
    registry = parse_registry(EXAMPLE_DEVICES.read_text())
    sensor = registry.devices[0].sensor("bearing_vibration")
    signal = Signal(sensor, seed=1, fault_after_s=60, fault_ramp_s=30)
    from datetime import UTC, datetime

    now = datetime(2026, 1, 1, 12, tzinfo=UTC)
    before = [signal.value(t, now) for t in range(0, 60)]
    after = [signal.value(t, now) for t in range(95, 120)]
    assert max(before) < sensor.thresholds.warning
    assert min(after) > sensor.thresholds.critical


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.timeout(90)
def test_simulated_example_plant_lands_in_the_lake(tmp_path: Path, data_dir: Path) -> None:
    require_service("Mosquitto", MQTT_HOST, MQTT_PORT)
    site, client_id, port = unique("plant"), unique("collector"), _free_port()
    text = (
        EXAMPLE_DEVICES.read_text()
        .replace("site: plant1", f"site: {site}")
        .replace("client_id: ip-collector-1", f"client_id: {client_id}")
        .replace("tcp://127.0.0.1:5020", f"tcp://127.0.0.1:{port}")
        .replace("opc.tcp://127.0.0.1:4840", f"opc.tcp://127.0.0.1:{_free_port()}")
        .replace("poll_interval_s: 1.0", "poll_interval_s: 0.2")
        # The OPC-UA server starts with the simulator, after the collector's first connect
        # attempts: a short backoff cap keeps the next attempt inside the simulated window.
        .replace("reconnect_max_delay_s: 30 ", "reconnect_max_delay_s: 1.0")
    )
    devices = tmp_path / "devices.yaml"
    devices.write_text(text)
    registry = parse_registry(text)
    config = CollectorConfig(
        devices_file=devices,
        data_dir=data_dir,
        lake_root=str(data_dir / "lake"),
        flush_rows=500,
        flush_seconds=0.5,
    )
    collector = Collector(config)
    stop = threading.Event()
    thread = threading.Thread(target=collector.run, args=(stop,), daemon=True)
    thread.start()
    try:
        assert wait_for(lambda: bool(collector.mqtt), timeout=5)
        assert collector.wait_ready(10)
        stats = asyncio.run(
            run_simulator(
                registry,
                mqtt_url=f"mqtt://{MQTT_HOST}:{MQTT_PORT}",
                duration_s=4.0,
                interval_s=0.1,
                fault_after_s=1.0,
            )
        )
        assert stats.published > 100 and stats.modbus_servers == {"press-7-plc": port}
        assert wait_for(lambda: collector.mqtt_stats().messages >= stats.published, timeout=15)
    finally:
        stop.set()
        thread.join(30)
        forget_mqtt_session(client_id)
    frame = read_delta_independently(data_dir / "lake" / "telemetry" / "sensor_readings")
    frame = frame.to_pandas()
    counts = frame.groupby(["device_id", "sensor_id"]).size()
    assert len(counts) == 12  # every sensor of the example: MQTT (both shapes), Modbus, OPC-UA
    assert not frame.duplicated(["device_id", "sensor_id", "ts"]).any()
    vibration = frame[frame.sensor_id == "bearing_vibration"].sort_values("ts")["value"]
    assert vibration.iloc[:5].max() < 4.5 < 7.1 < vibration.max()  # the injected fault
    modbus = frame[(frame.device_id == "press-7-plc") & (frame.quality == "good")]
    oil = modbus[modbus.sensor_id == "oil_temp"]["value"]
    assert len(oil) >= 5 and oil.between(30, 70).all()
    pressure = modbus[modbus.sensor_id == "system_pressure"]["value"]
    assert pressure.between(150, 260).all()  # int16 with scale 0.1 decoded
