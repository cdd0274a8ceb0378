"""MQTT path: payload parsing, routing, and the collector against the real Mosquitto."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from integration_platform.streams.collector import Collector, CollectorConfig
from integration_platform.streams.devices import TopicPattern, parse_registry
from integration_platform.streams.mqtt import MalformedPayload, Router, parse_message
from integration_platform_tests.conftest import require_service
from integration_platform_tests.streams_helpers import (
    MQTT_HOST,
    MQTT_PORT,
    Publisher,
    forget_mqtt_session,
    read_delta_independently,
    row_keys,
    unique,
    wait_for,
)

T0 = datetime(2026, 5, 4, 10, 0, tzinfo=UTC)
RECEIVED = datetime(2026, 5, 4, 10, 0, 5, tzinfo=UTC)


def registry_yaml(site: str, client_id: str) -> str:
    return f"""
version: 1
site: {site}
collector: {{client_id: {client_id}, session_expiry_s: 300}}
devices:
  - device_id: pump-1
    protocol: mqtt
    endpoint: mqtt://{MQTT_HOST}:{MQTT_PORT}
    sensors:
      - {{sensor_id: vib, type: vibration, unit: mm/s, valid_range: [0, 50]}}
      - {{sensor_id: temp, type: temperature, unit: degC}}
  - device_id: ahu-1
    protocol: mqtt
    endpoint: mqtt://{MQTT_HOST}:{MQTT_PORT}
    mqtt:
      topic: plant/{{site}}/{{device_id}}/batch
      payload: {{readings: data.items, sensor_id: id, ts: t, value: v, quality: q}}
    sensors:
      - {{sensor_id: rh, type: humidity, unit: "%RH"}}
      - {{sensor_id: sat, type: temperature, unit: degC}}
"""


@pytest.fixture
def registry():
    return parse_registry(registry_yaml("s1", "c1"))


# -- parsing ------------------------------------------------------------------------------


def test_single_reading_with_epoch_ms_and_iso(registry) -> None:
    pump = registry.devices[0]
    topic = "plant/s1/pump-1/vib"
    values = {"site": "s1", "device_id": "pump-1", "sensor_id": "vib"}
    epoch = int(T0.timestamp() * 1000)
    by_epoch, _ = parse_message(pump, topic, values, b'{"ts": %d, "value": 3.5}' % epoch, RECEIVED)
    by_iso, _ = parse_message(
        pump, topic, values, b'{"ts": "2026-05-04T12:00:00+02:00", "value": 3.5}', RECEIVED
    )
    assert by_epoch[0].ts == by_iso[0].ts == T0
    assert by_epoch[0].key() == by_iso[0].key()
    reading = by_epoch[0]
    assert (reading.sensor_type, reading.unit, reading.quality) == ("vibration", "mm/s", "good")
    assert (reading.source_protocol, reading.origin, reading.ingested_at) == (
        "mqtt",
        topic,
        RECEIVED,
    )


def test_array_payload_and_readings_path(registry) -> None:
    pump, ahu = registry.devices
    values = {"site": "s1", "device_id": "pump-1", "sensor_id": "temp"}
    array = json.dumps([{"ts": 1_000_000_000_000 + i, "value": i} for i in range(3)]).encode()
    readings, problems = parse_message(pump, "t", values, array, RECEIVED)
    assert [r.value for r in readings] == [0.0, 1.0, 2.0] and not problems
    envelope = {
        "t": "2026-05-04T10:00:00Z",
        "data": {"items": [{"id": "rh", "v": 41.5, "q": "uncertain"}, {"id": "sat", "v": 18}]},
    }
    ahu_values = {"site": "s1", "device_id": "ahu-1"}
    readings, _ = parse_message(ahu, "t", ahu_values, json.dumps(envelope).encode(), RECEIVED)
    assert [(r.sensor_id, r.value, r.quality, r.ts) for r in readings] == [
        ("rh", 41.5, "uncertain", T0),
        ("sat", 18.0, "good", T0),
    ]


def test_out_of_range_values_are_kept_as_bad(registry) -> None:
    values = {"site": "s1", "device_id": "pump-1", "sensor_id": "vib"}
    readings, _ = parse_message(
        registry.devices[0], "t", values, b'{"ts": 0, "value": 80}', RECEIVED
    )
    assert (readings[0].value, readings[0].quality) == (80.0, "bad")


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"not json", "not JSON"),
        (b'{"ts": "2026-05-04T10:00:00", "value": 1}', "no time zone"),
        (b'{"ts": "yesterday", "value": 1}', "not ISO-8601"),
        (b'{"value": 1}', "no timestamp"),
        (b'{"ts": 0, "value": "abc"}', "not a number"),
        (b'{"ts": 0, "value": true}', "not a number"),
        (b'{"ts": 0}', "no value"),
        (b"[]", "empty array"),
    ],
)
def test_malformed_payloads_say_why(registry, payload: bytes, reason: str) -> None:
    values = {"site": "s1", "device_id": "pump-1", "sensor_id": "vib"}
    try:
        readings, problems = parse_message(registry.devices[0], "t", values, payload, RECEIVED)
    except MalformedPayload as exc:
        problems, readings = [str(exc)], []
    assert not readings and reason in problems[0]


def test_routing_and_subscriptions(registry) -> None:
    router = Router(registry, registry.devices)
    assert router.filters() == ["plant/s1/ahu-1/batch", "plant/s1/pump-1/+"]
    device, values = router.route("plant/s1/pump-1/vib")
    assert device.device_id == "pump-1" and values["sensor_id"] == "vib"
    assert router.route("plant/other-site/pump-1/vib") is None
    assert router.route("plant/s1/pump-1/vib/extra") is None
    with pytest.raises(ValueError, match="unknown placeholder"):
        TopicPattern("plant/{area}/{device_id}")


# -- against Mosquitto --------------------------------------------------------------------


@pytest.fixture
def mosquitto() -> None:
    require_service("Mosquitto", MQTT_HOST, MQTT_PORT)


class RunningCollector:
    def __init__(self, collector: Collector) -> None:
        self.collector = collector
        self.stop = threading.Event()
        self.thread = threading.Thread(target=collector.run, args=(self.stop,), daemon=True)

    def __enter__(self) -> Collector:
        self.thread.start()
        assert wait_for(lambda: bool(self.collector.mqtt), timeout=5)
        assert self.collector.wait_ready(timeout=10), "subscriptions were not confirmed"
        return self.collector

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(timeout=30)
        assert not self.thread.is_alive()


@pytest.fixture
def setup(tmp_path: Path, data_dir: Path, mosquitto: None) -> Iterator[dict]:
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
    )
    yield {"site": site, "client_id": client_id, "config": config, "devices": devices}
    forget_mqtt_session(client_id)


def table_rows(config: CollectorConfig) -> list[tuple]:
    path = Path(config.lake_root) / "telemetry" / "sensor_readings"
    if not (path / "_delta_log").exists():
        return []
    return row_keys(read_delta_independently(path))


@pytest.mark.timeout(60)
def test_end_to_end_exact_values_without_duplicates(setup: dict) -> None:
    site, config = setup["site"], setup["config"]
    expected = []
    with RunningCollector(Collector(config)) as collector, Publisher() as publisher:
        for i in range(40):
            ts = T0 + timedelta(seconds=i)
            sensor = "vib" if i % 2 else "temp"
            body = {"ts": int(ts.timestamp() * 1000), "value": i / 4, "quality": "good"}
            publisher.publish(f"plant/{site}/pump-1/{sensor}", body)
            publisher.publish(f"plant/{site}/pump-1/{sensor}", body)  # a QoS 1 duplicate
            expected.append(("pump-1", sensor, ts.isoformat(), i / 4))
        batch = {
            "t": T0.isoformat(),
            "data": {"items": [{"id": "rh", "v": 40.5}, {"id": "sat", "v": 17.25}]},
        }
        publisher.publish(f"plant/{site}/ahu-1/batch", batch)
        publisher.publish(f"plant/{site}/ahu-1/batch", batch)
        expected += [("ahu-1", "rh", T0.isoformat(), 40.5), ("ahu-1", "sat", T0.isoformat(), 17.25)]
        assert wait_for(lambda: collector.mqtt_stats().acked >= 82, timeout=20)
        assert wait_for(lambda: len(table_rows(config)) >= len(expected), timeout=20)
        stats = collector.mqtt_stats()
        assert (stats.readings, stats.duplicates, stats.malformed) == (42, 42, 0)
        assert stats.acked == 82
    assert table_rows(config) == sorted(expected)


@pytest.mark.timeout(60)
def test_malformed_payloads_are_counted_and_skipped(setup: dict) -> None:
    site, config = setup["site"], setup["config"]
    topic = f"plant/{site}/pump-1/vib"
    with RunningCollector(Collector(config)) as collector, Publisher() as publisher:
        publisher.publish(topic, b"\x00\x01 not json")
        publisher.publish(topic, {"ts": "2026-05-04T10:00:00", "value": 1})  # no zone
        publisher.publish(topic, {"ts": 0, "value": "high"})
        publisher.publish(f"plant/{site}/pump-1/unknown", {"ts": 0, "value": 1})
        publisher.publish(f"plant/{site}/pump-1/vib", {"ts": T0.isoformat(), "value": 2.5})
        assert wait_for(lambda: collector.mqtt_stats().acked >= 5, timeout=10)
        stats = collector.mqtt_stats()
        assert (stats.malformed, stats.readings, stats.acked) == (4, 1, 5)
        assert any("not declared" in p for p in stats.problems)
        assert wait_for(lambda: len(table_rows(config)) == 1, timeout=10)
    assert table_rows(config) == [("pump-1", "vib", T0.isoformat(), 2.5)]


@pytest.mark.timeout(90)
def test_lake_outage_spools_then_drains(setup: dict) -> None:
    site, config = setup["site"], setup["config"]
    lake = Path(config.lake_root)
    lake.mkdir(parents=True)
    blocker = lake / "telemetry"
    blocker.write_text("the lake cannot create its table while this file is here")
    expected = []
    with RunningCollector(Collector(config)) as collector, Publisher() as publisher:
        for i in range(30):
            ts = T0 + timedelta(seconds=i)
            publisher.publish(f"plant/{site}/pump-1/temp", {"ts": ts.isoformat(), "value": i})
            expected.append(("pump-1", "temp", ts.isoformat(), float(i)))
        assert wait_for(lambda: collector.spool.pending == 30, timeout=10)
        assert wait_for(lambda: collector.writer.stats.lake_errors >= 2, timeout=10)
        assert collector.mqtt_stats().acked == 30  # acknowledged: the spool has them
        blocker.unlink()
        assert wait_for(lambda: collector.spool.pending == 0, timeout=40)
    assert table_rows(config) == sorted(expected)


@pytest.mark.timeout(60)
def test_registry_reload_subscribes_new_devices(setup: dict) -> None:
    site, config, devices = setup["site"], setup["config"], setup["devices"]
    with RunningCollector(Collector(config)) as collector, Publisher() as publisher:
        text = devices.read_text().replace("device_id: pump-1", "device_id: pump-2")
        devices.write_text(text)
        assert wait_for(lambda: collector.registry.devices[0].device_id == "pump-2", timeout=10)
        assert collector.wait_ready(5)
        assert wait_for(
            lambda: "plant/" + site + "/pump-2/+"
            in next(iter(collector.mqtt.values()))._subscribed,
            timeout=5,
        )
        publisher.publish(f"plant/{site}/pump-2/vib", {"ts": T0.isoformat(), "value": 1.5})
        devices.write_text("devices: [oops")  # a broken edit keeps the running registry
        assert wait_for(lambda: len(table_rows(config)) == 1, timeout=15)
        assert collector.registry.devices[0].device_id == "pump-2"
    assert table_rows(config) == [("pump-2", "vib", T0.isoformat(), 1.5)]


@pytest.mark.timeout(60)
def test_two_collectors_share_a_subscription_into_one_table(setup: dict) -> None:
    site, config = setup["site"], setup["config"]
    second_id = unique("collector")
    configs = [
        CollectorConfig(**{**config.__dict__, "shared_group": "grp", "client_id": client_id})
        for client_id in (setup["client_id"], second_id)
    ]
    expected = []
    try:
        with (
            RunningCollector(Collector(configs[0])) as one,
            RunningCollector(Collector(configs[1])) as two,
            Publisher() as publisher,
        ):
            assert next(iter(one.mqtt.values()))._filters()[0].startswith("$share/grp/plant/")
            for i in range(60):
                ts = T0 + timedelta(seconds=i)
                publisher.publish(f"plant/{site}/pump-1/temp", {"ts": ts.isoformat(), "value": i})
                expected.append(("pump-1", "temp", ts.isoformat(), float(i)))
            assert wait_for(
                lambda: one.mqtt_stats().acked + two.mqtt_stats().acked >= 60, timeout=15
            )
            assert one.mqtt_stats().readings > 0 and two.mqtt_stats().readings > 0
            assert wait_for(lambda: len(table_rows(config)) >= 60, timeout=20)
    finally:
        forget_mqtt_session(second_id)
    assert table_rows(config) == sorted(expected)


@pytest.mark.timeout(60)
def test_arrays_of_readings_take_the_columnar_path_exactly(
    setup: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    from integration_platform.streams import mqtt

    monkeypatch.setattr(mqtt, "COLUMNAR_MIN_BYTES", 0)  # every group through Arrow
    site, config = setup["site"], setup["config"]
    base = int(T0.timestamp() * 1000)
    expected = []
    with RunningCollector(Collector(config)) as collector, Publisher() as publisher:
        for m in range(12):
            sensor = ("vib", "temp")[m % 2]
            items = [{"ts": base + 100 * m + k, "value": k / 8} for k in range(100)]
            if sensor == "vib":
                items[7]["value"] = 75.0  # outside valid_range: kept, quality bad
            publisher.publish(f"plant/{site}/pump-1/{sensor}", items)
            publisher.publish(f"plant/{site}/pump-1/{sensor}", items)  # a QoS 1 duplicate
            for item in items:
                ts = datetime.fromtimestamp(item["ts"] / 1000, UTC).isoformat()
                expected.append(("pump-1", sensor, ts, float(item["value"])))
        publisher.publish(f"plant/{site}/pump-1/vib", [{"ts": "yesterday", "value": 1}])
        assert wait_for(lambda: collector.mqtt_stats().acked >= 25, timeout=20)
        assert wait_for(lambda: len(table_rows(config)) >= len(expected), timeout=20)
        stats = collector.mqtt_stats()
        assert (stats.readings, stats.duplicates, stats.malformed) == (1200, 1200, 1)
        assert stats.columnar_messages >= 20
    assert table_rows(config) == sorted(expected)
    lake = read_delta_independently(Path(config.lake_root) / "telemetry" / "sensor_readings")
    bad = [row for row in lake.to_pylist() if row["quality"] == "bad"]
    assert [row["value"] for row in bad] == [75.0] * 6
