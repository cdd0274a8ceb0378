"""Sparkplug B: payload decoding, alias maps from births, deaths, and device declarations."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest

from integration_platform.streams.devices import RegistryError, TopicPattern, parse_registry
from integration_platform.streams.sparkplug import (
    REBIRTH_METRIC,
    DataType,
    Metric,
    SparkplugDecoder,
    SparkplugTopic,
    encode_payload,
    payload_class,
    rebirth_request,
)

RECEIVED = datetime(2026, 5, 4, 10, 0, 5, tzinfo=UTC)
T_MS = int(datetime(2026, 5, 4, 10, 0, tzinfo=UTC).timestamp() * 1000)
DEVICE_TOPIC = "spBv1.0/Plant1/{kind}/Edge7/Pump3"

REGISTRY = """
version: 1
site: s1
devices:
  - device_id: pump-3
    protocol: mqtt
    endpoint: mqtt://127.0.0.1:1883
    mqtt:
      format: sparkplug_b
      sparkplug: {group_id: Plant1, edge_node_id: Edge7, device_id: Pump3, request_rebirth: true}
    sensors:
      - {sensor_id: vib, metric: Vibration/RMS, type: vibration, unit: mm/s, valid_range: [0, 50]}
      - {sensor_id: temp, metric: Bearing/Temp, type: temperature, unit: degC}
      - {sensor_id: count, metric: Cycles, type: flow}
"""


@pytest.fixture
def device():
    return parse_registry(REGISTRY).devices[0]


def birth() -> bytes:
    return encode_payload(
        [
            Metric("Vibration/RMS", 2.5, DataType.FLOAT, alias=1, timestamp_ms=T_MS),
            Metric("Bearing/Temp", -12, DataType.INT16, alias=2, timestamp_ms=T_MS),
            Metric("Cycles", 7, DataType.INT64, alias=3, timestamp_ms=T_MS),
            Metric("Properties/Serial", None, DataType.STRING, alias=4),
        ],
        seq=1,
        timestamp_ms=T_MS,
    )


def test_the_topic_follows_from_the_sparkplug_settings(device) -> None:
    assert device.mqtt.topic == "spBv1.0/Plant1/+/Edge7/Pump3"
    pattern = TopicPattern(device.mqtt.topic)
    assert pattern.match(DEVICE_TOPIC.format(kind="DDATA")) == {}
    assert pattern.match("spBv1.0/Plant1/DDATA/Edge7/Pump4") is None
    assert SparkplugTopic.parse("spBv1.0/Plant1/NDATA/Edge7") == SparkplugTopic(
        "Plant1", "NDATA", "Edge7", None
    )
    assert SparkplugTopic.parse("plant/Plant1/DDATA/Edge7/Pump3") is None
    assert SparkplugTopic.parse("spBv1.0/Plant1/XDATA/Edge7/Pump3") is None


def test_birth_values_become_readings_with_signed_types(device) -> None:
    decoder = SparkplugDecoder()
    readings, problems = decoder.decode(
        device, DEVICE_TOPIC.format(kind="DBIRTH"), birth(), RECEIVED
    )
    assert problems == []
    by_sensor = {r.sensor_id: r for r in readings}
    assert set(by_sensor) == {"vib", "temp", "count"}  # the serial number names no sensor
    assert by_sensor["vib"].value == 2.5
    assert by_sensor["temp"].value == -12.0  # two's complement in the unsigned field
    assert by_sensor["count"].value == 7.0
    assert by_sensor["vib"].ts == datetime.fromtimestamp(T_MS / 1000, UTC)
    assert by_sensor["vib"].unit == "mm/s" and by_sensor["vib"].source_protocol == "mqtt"
    assert decoder.stats.births == 1 and decoder.stats.unmapped_metrics == 1


def test_data_by_alias_after_the_birth(device) -> None:
    decoder = SparkplugDecoder()
    decoder.decode(device, DEVICE_TOPIC.format(kind="DBIRTH"), birth(), RECEIVED)
    data = encode_payload(
        [
            Metric(None, 61.0, DataType.FLOAT, alias=1, timestamp_ms=T_MS + 1000),
            Metric(None, -40000, DataType.INT32, alias=2),
            Metric(None, -5, DataType.INT64, alias=3),
        ],
        seq=2,
        timestamp_ms=T_MS + 2000,
    )
    readings, problems = decoder.decode(device, DEVICE_TOPIC.format(kind="DDATA"), data, RECEIVED)
    assert problems == []
    by_sensor = {r.sensor_id: r for r in readings}
    assert by_sensor["vib"].value == 61.0 and by_sensor["vib"].quality == "bad"  # above 50
    assert by_sensor["temp"].value == -40000.0
    assert by_sensor["count"].value == -5.0
    # a metric without its own timestamp takes the payload's
    assert by_sensor["temp"].ts == datetime.fromtimestamp((T_MS + 2000) / 1000, UTC)


def test_transient_metrics_are_counted_not_stored(device) -> None:
    decoder = SparkplugDecoder()
    message = payload_class()()
    metric = message.metrics.add(name="Bearing/Temp", datatype=int(DataType.DOUBLE))
    metric.double_value = 50.0
    metric.is_transient = True
    readings, problems = decoder.decode(
        device, DEVICE_TOPIC.format(kind="DDATA"), message.SerializeToString(), RECEIVED
    )
    assert (readings, problems) == ([], [])
    assert decoder.stats.transient_metrics == 1


def test_datatype_from_the_birth_when_data_leaves_it_out(device) -> None:
    decoder = SparkplugDecoder()
    decoder.decode(device, DEVICE_TOPIC.format(kind="DBIRTH"), birth(), RECEIVED)
    message = payload_class()()
    metric = message.metrics.add()
    metric.alias = 2
    metric.int_value = (-3) & 0xFFFFFFFF  # no datatype on the wire
    readings, _ = decoder.decode(
        device, DEVICE_TOPIC.format(kind="DDATA"), message.SerializeToString(), RECEIVED
    )
    assert [r.value for r in readings] == [-3.0]
    assert readings[0].ts == RECEIVED  # neither the metric nor the payload had a timestamp


def test_null_and_quality_property(device) -> None:
    decoder = SparkplugDecoder()
    message = payload_class()()
    null = message.metrics.add(name="Vibration/RMS", datatype=int(DataType.FLOAT), is_null=True)
    null.timestamp = T_MS
    stale = message.metrics.add(name="Bearing/Temp", datatype=int(DataType.DOUBLE))
    stale.double_value = 80.0
    stale.timestamp = T_MS
    stale.properties.keys.append("Quality")
    stale.properties.values.add(type=3).int_value = 0
    readings, _ = decoder.decode(
        device, DEVICE_TOPIC.format(kind="DDATA"), message.SerializeToString(), RECEIVED
    )
    by_sensor = {r.sensor_id: r for r in readings}
    assert by_sensor["vib"].value is None and by_sensor["vib"].quality == "bad"
    assert by_sensor["temp"].value == 80.0 and by_sensor["temp"].quality == "bad"


def test_unknown_alias_asks_for_a_rebirth_at_most_once_per_interval(device) -> None:
    asked: list[tuple[str, str]] = []
    now = [100.0]
    decoder = SparkplugDecoder(
        lambda group, node: asked.append((group, node)), rebirth_interval_s=30, clock=lambda: now[0]
    )
    data = encode_payload([Metric(None, 1.0, DataType.FLOAT, alias=1)], timestamp_ms=T_MS)
    readings, problems = decoder.decode(device, DEVICE_TOPIC.format(kind="DDATA"), data, RECEIVED)
    assert readings == [] and "alias 1" in problems[0] and "asked to publish" in problems[0]
    decoder.decode(device, DEVICE_TOPIC.format(kind="DDATA"), data, RECEIVED)
    assert asked == [("Plant1", "Edge7")]
    now[0] += 31
    decoder.decode(device, DEVICE_TOPIC.format(kind="DDATA"), data, RECEIVED)
    assert asked == [("Plant1", "Edge7")] * 2
    assert decoder.stats.unknown_aliases == 3 and decoder.stats.rebirths_requested == 2


def test_no_rebirth_unless_the_device_allows_it() -> None:
    quiet = parse_registry(REGISTRY.replace("request_rebirth: true", "request_rebirth: false"))
    asked: list[tuple[str, str]] = []
    decoder = SparkplugDecoder(lambda group, node: asked.append((group, node)))
    data = encode_payload([Metric(None, 1.0, DataType.FLOAT, alias=1)])
    _, problems = decoder.decode(
        quiet.devices[0], DEVICE_TOPIC.format(kind="DDATA"), data, RECEIVED
    )
    assert asked == [] and "set mqtt.sparkplug.request_rebirth" in problems[0]


def test_a_death_forgets_the_aliases(device) -> None:
    decoder = SparkplugDecoder()
    decoder.decode(device, DEVICE_TOPIC.format(kind="DBIRTH"), birth(), RECEIVED)
    node_death = encode_payload([Metric("bdSeq", 0, DataType.INT64)])
    assert decoder.decode(device, "spBv1.0/Plant1/NDEATH/Edge7", node_death, RECEIVED) == ([], [])
    data = encode_payload([Metric(None, 1.0, DataType.FLOAT, alias=1)])
    readings, problems = decoder.decode(device, DEVICE_TOPIC.format(kind="DDATA"), data, RECEIVED)
    assert readings == [] and problems and decoder.stats.deaths == 1


def test_bad_payloads_and_text_metrics_are_problems_not_crashes(device) -> None:
    decoder = SparkplugDecoder()
    readings, problems = decoder.decode(
        device, DEVICE_TOPIC.format(kind="DDATA"), b"\xff\xff\xff", RECEIVED
    )
    assert readings == [] and "not a Sparkplug B payload" in problems[0]
    text = encode_payload([Metric("Bearing/Temp", "hot", DataType.STRING)])  # type: ignore[arg-type]
    readings, problems = decoder.decode(device, DEVICE_TOPIC.format(kind="DDATA"), text, RECEIVED)
    assert readings == [] and "'Bearing/Temp'" in problems[0] and "not a number" in problems[0]
    assert decoder.decode(device, "plant/x/DDATA/y", b"", RECEIVED)[1]


def test_the_rebirth_command_names_the_control_metric() -> None:
    payload, qos = rebirth_request()
    message = payload_class().FromString(payload)
    assert qos == 0
    assert [(m.name, m.boolean_value) for m in message.metrics] == [(REBIRTH_METRIC, True)]


@pytest.mark.parametrize(
    ("mqtt", "reason"),
    [
        ("{format: sparkplug_b}", "needs sparkplug"),
        (
            "{format: sparkplug_b, topic: a/b, sparkplug: {group_id: g, edge_node_id: e}}",
            "leave topic out",
        ),
        ("{sparkplug: {group_id: g, edge_node_id: e}}", "need format: sparkplug_b"),
        ("{format: sparkplug_b, sparkplug: {group_id: g}}", "edge_node_id"),
    ],
)
def test_declaration_errors_name_the_fix(mqtt: str, reason: str) -> None:
    text = f"""
version: 1
devices:
  - device_id: d1
    protocol: mqtt
    endpoint: mqtt://127.0.0.1:1883
    mqtt: {mqtt}
    sensors: [{{sensor_id: a, type: vibration}}, {{sensor_id: b, type: vibration}}]
"""
    with pytest.raises(RegistryError) as raised:
        parse_registry(text)
    assert reason in str(raised.value)


# -- the simulated edge node -----------------------------------------------------------------


def test_simulated_edge_node_births_then_sends_aliases_only(device) -> None:
    from integration_platform.streams.simulate_sparkplug import SimulatedEdgeNodes

    registry = parse_registry(REGISTRY)
    edges = SimulatedEdgeNodes(registry)
    decoder = SparkplugDecoder()
    now = datetime(2026, 5, 4, 10, 0, tzinfo=UTC)
    first = edges.messages(device, {"vib": 1.5, "temp": 40.0, "count": 3.0}, now)
    assert [SparkplugTopic.parse(t).message_type for t, _ in first] == ["NBIRTH", "DBIRTH"]
    second = edges.messages(device, {"vib": 2.5, "temp": 41.0, "count": 4.0}, now)
    [(topic, payload)] = second
    assert SparkplugTopic.parse(topic).message_type == "DDATA"
    assert all(not m.name for m in payload_class().FromString(payload).metrics)
    seqs = [payload_class().FromString(p).seq for _, p in first + second]
    assert seqs == [0, 1, 2]
    for topic, payload in first + second:
        readings, problems = decoder.decode(device, topic, payload, RECEIVED)
    assert problems == []
    assert {r.sensor_id: r.value for r in readings} == {"vib": 2.5, "temp": 41.0, "count": 4.0}

    # a rebirth request births the node and its device again on the next tick
    command, _ = rebirth_request()
    [command_topic] = edges.command_topics()
    assert command_topic == "spBv1.0/Plant1/NCMD/Edge7"
    edges.on_command(command_topic, command)
    again = edges.messages(device, {"vib": 3.0, "temp": 42.0, "count": 5.0}, now)
    assert [SparkplugTopic.parse(t).message_type for t, _ in again] == ["NBIRTH", "DBIRTH"]
    assert payload_class().FromString(again[0][1]).seq == 0
    assert edges.rebirths == 1


# -- against Mosquitto: a collector that joins after the births ------------------------------


def sparkplug_registry(site: str, client_id: str, group: str) -> str:
    return f"""
version: 1
site: {site}
collector: {{client_id: {client_id}, session_expiry_s: 300}}
devices:
  - device_id: pump-3
    protocol: mqtt
    endpoint: mqtt://127.0.0.1:1883
    mqtt:
      format: sparkplug_b
      sparkplug: {{group_id: {group}, edge_node_id: Edge7, device_id: Pump3, request_rebirth: true}}
    sensors:
      - {{sensor_id: vib, metric: Vibration/RMS, type: vibration, unit: mm/s,
          simulate: {{base: 2.0, noise: 0.1}}}}
      - {{sensor_id: temp, metric: Bearing/Temp, type: temperature, unit: degC,
          simulate: {{base: 45.0, noise: 0.2}}}}
"""


@pytest.mark.timeout(90)
def test_a_late_collector_asks_for_births_and_lands_the_data(tmp_path) -> None:
    """The edge node was born before the collector subscribed: its data carries aliases the
    collector cannot resolve, so the collector asks for a rebirth, the (simulated) edge node
    answers with its births, and readings of both metrics land in Delta."""
    import asyncio
    import threading

    from integration_platform.streams.collector import Collector, CollectorConfig
    from integration_platform.streams.simulate import run_simulator
    from integration_platform_tests.conftest import require_service
    from integration_platform_tests.streams_helpers import (
        MQTT_HOST,
        MQTT_PORT,
        forget_mqtt_session,
        read_delta_independently,
        unique,
        wait_for,
    )

    require_service("Mosquitto", MQTT_HOST, MQTT_PORT)
    site, client_id, group = unique("site"), unique("collector"), unique("Plant")
    devices = tmp_path / "devices.yaml"
    devices.write_text(sparkplug_registry(site, client_id, group))
    registry = parse_registry(devices.read_text())
    stop_plant = threading.Event()
    plant_stats: list = []
    plant = threading.Thread(
        target=lambda: plant_stats.append(
            asyncio.run(
                run_simulator(
                    registry,
                    mqtt_url=f"mqtt://{MQTT_HOST}:{MQTT_PORT}",
                    duration_s=60,
                    interval_s=0.2,
                    stop=stop_plant,
                )
            )
        ),
        daemon=True,
    )
    plant.start()
    time.sleep(1.0)  # births and a few data messages go out before anyone listens
    config = CollectorConfig(
        devices_file=devices,
        data_dir=tmp_path / "data",
        lake_root=str(tmp_path / "lake"),
        flush_rows=20,
        flush_seconds=0.3,
        reload_seconds=0.2,
    )
    collector = Collector(config)
    stop = threading.Event()
    thread = threading.Thread(target=collector.run, args=(stop,), daemon=True)
    thread.start()
    table = tmp_path / "lake" / "telemetry" / "sensor_readings"

    def landed() -> set[str]:
        if not (table / "_delta_log").exists():
            return set()
        return set(read_delta_independently(table).column("sensor_id").to_pylist())

    try:
        assert wait_for(lambda: landed() == {"vib", "temp"}, timeout=30), landed()
        [mqtt] = collector.mqtt.values()
        decoder = mqtt.sparkplug
        assert decoder.stats.rebirths_requested >= 1
        assert decoder.stats.births >= 1
    finally:
        stop.set()
        thread.join(30)
        stop_plant.set()
        plant.join(30)
        forget_mqtt_session(client_id)
    rows = read_delta_independently(table).to_pylist()
    assert {row["device_id"] for row in rows} == {"pump-3"}
    vib = [row["value"] for row in rows if row["sensor_id"] == "vib"]
    assert all(1.0 < value < 3.0 for value in vib), vib  # the simulated signal, decoded
