"""A plant simulator for the example devices: MQTT publishers, Modbus TCP, OPC-UA, CoAP and
BACnet/IP servers (the last two in ``simulate_coap_bacnet.py``).

Signals are plausible rather than random: a base value, a daily cycle, slow drift, Gaussian
noise, and, for sensors marked ``simulate: {fault: true}``, a bearing fault that ramps the
value past the sensor's critical threshold, so alerting and dashboards have something to find.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from integration_platform.streams.devices import (
    DeviceSpec,
    MqttSettings,
    Registry,
    SensorSpec,
    TopicPattern,
)
from integration_platform.streams.modbus import encode, unscaled
from integration_platform.streams.simulate_sparkplug import SimulatedEdgeNodes, is_sparkplug

log = logging.getLogger(__name__)

DEFAULTS: dict[str, tuple[float, float, float]] = {  # base, daily amplitude, noise
    "temperature": (45.0, 3.0, 0.2),
    "vibration": (2.0, 0.2, 0.1),
    "pressure": (5.0, 0.3, 0.05),
    "flow": (100.0, 8.0, 1.0),
    "humidity": (45.0, 8.0, 0.5),
}


@dataclass
class Signal:
    """One sensor's simulated value as a function of elapsed (simulated) seconds."""

    sensor: SensorSpec
    seed: int
    fault_after_s: float | None = None
    fault_ramp_s: float = 30.0
    _rng: random.Random = field(init=False)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)

    def value(self, elapsed_s: float, now: datetime) -> float:
        spec = self.sensor.simulate
        base, amplitude, noise = DEFAULTS.get(self.sensor.type, (10.0, 1.0, 0.1))
        if spec is not None:
            base = spec.base if spec.base is not None else base
            amplitude = spec.daily_amplitude if spec.daily_amplitude is not None else amplitude
            noise = spec.noise if spec.noise is not None else noise
        drift = (spec.drift_per_hour or 0.0) if spec else 0.0
        seconds_of_day = now.hour * 3600 + now.minute * 60 + now.second
        daily = amplitude * math.sin(2 * math.pi * (seconds_of_day / 86400.0 - 0.375))
        value = base + daily + drift * elapsed_s / 3600.0 + self._rng.gauss(0.0, noise)
        if spec is not None and spec.fault and self.fault_after_s is not None:
            progress = (elapsed_s - self.fault_after_s) / self.fault_ramp_s
            if progress > 0:
                value += min(progress, 1.0) * (self.fault_target() - base)
        if self.sensor.valid_range is not None:
            low, high = self.sensor.valid_range
            value = min(max(value, low), high)
        return value

    def fault_target(self) -> float:
        """Where a bearing fault takes the value: well past the critical limit."""
        limits = self.sensor.thresholds
        base = self.sensor.simulate.base if self.sensor.simulate else None
        if limits is not None and limits.critical is not None:
            return limits.critical * 1.4
        return (base or 1.0) * 4.0


@dataclass
class SimulatorStats:
    ticks: int = 0
    published: int = 0
    modbus_servers: dict[str, int] = field(default_factory=dict)  # device id -> port
    opcua_servers: dict[str, int] = field(default_factory=dict)  # device id -> port
    coap_servers: dict[str, int] = field(default_factory=dict)  # device id -> UDP port
    bacnet_servers: dict[str, int] = field(default_factory=dict)  # device id -> UDP port


def _set_path(target: dict, path: str, value: Any) -> None:
    parts = path.split(".")
    node = target
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value


def mqtt_messages(
    registry: Registry, device: DeviceSpec, values: dict[str, float], now: datetime
) -> list[tuple[str, str]]:
    """(topic, JSON payload) for one tick of one device, shaped by its topic and paths."""
    settings = device.mqtt or MqttSettings()
    paths = settings.payload
    pattern = TopicPattern(settings.topic)
    fixed = {"site": registry.site_of(device), "device_id": device.device_id}
    epoch_ms = int(now.timestamp() * 1000)

    def item(sensor_id: str, *, with_id: bool) -> dict:
        body: dict = {}
        ts: Any = epoch_ms if paths.ts_unit == "ms" else epoch_ms / 1000.0
        if paths.readings:
            ts = now.isoformat(timespec="milliseconds").replace("+00:00", "Z")
        _set_path(body, paths.ts, ts)
        _set_path(body, paths.value, round(values[sensor_id], 4))
        if paths.quality:
            _set_path(body, paths.quality, "good")
        if with_id and paths.sensor_id:
            _set_path(body, paths.sensor_id, sensor_id)
        return body

    if "sensor_id" in pattern.names:
        return [
            (
                pattern.subscription({**fixed, "sensor_id": sensor_id}),
                json.dumps(item(sensor_id, with_id=False)),
            )
            for sensor_id in values
        ]
    topic = pattern.subscription(fixed).replace("+", "sim")
    items = [item(sensor_id, with_id=True) for sensor_id in values]
    if paths.readings:
        envelope: dict = {}
        _set_path(envelope, paths.readings, items)
        return [(topic, json.dumps(envelope))]
    return [(topic, json.dumps(items))]


class ModbusSimServer:
    """A pymodbus TCP server whose registers and bits follow the device's simulated values.

    A coil or discrete input is on when its raw value (before scale and offset) is above 0.5,
    so ``scale: -1, offset: 1`` (a normally-closed contact) serves the inverted bit.
    """

    def __init__(self, device: DeviceSpec, port: int) -> None:
        self.device = device
        self.port = port
        self.holding: dict[int, int] = {}
        self.input: dict[int, int] = {}
        self.coils: dict[int, bool] = {}
        self.discrete: dict[int, bool] = {}
        self._server: Any = None

    def set_values(self, values: dict[str, float]) -> None:
        for sensor in self.device.sensors:
            reg = sensor.register_
            if reg is None or sensor.sensor_id not in values:
                continue
            raw = unscaled(values[sensor.sensor_id], reg.scale, reg.offset)
            if reg.bit:
                bits = self.coils if reg.table == "coil" else self.discrete
                bits[reg.address] = raw > 0.5
                continue
            if not reg.type.startswith("float"):
                raw = _clamp_int(raw, reg.type)
            table = self.input if reg.table == "input" else self.holding
            for index, word in enumerate(encode(raw, reg.type, reg.order)):
                table[reg.address + index] = word

    async def start(self) -> int:
        from pymodbus.server import ModbusTcpServer
        from pymodbus.simulator import DataType, SimData, SimDevice

        async def action(
            fc: int, start: int, address: int, count: int, current: list, set_values: Any
        ) -> None:
            if fc in (1, 2):  # bits live 16 to a word, bit 0 first; ``start`` counts words
                for bit_address, on in (self.coils if fc == 1 else self.discrete).items():
                    index, shift = divmod(bit_address, 16)
                    if 0 <= index - start < len(current):
                        word = current[index - start] & ~(1 << shift)
                        current[index - start] = word | (int(on) << shift)
                return
            source = self.input if fc == 4 else self.holding
            for index in range(count):
                word = source.get(address + index)
                if word is not None:
                    current[address + index - start] = word

        registers = [SimData(0, count=1024, values=0, datatype=DataType.REGISTERS)]
        bits = {
            table: [SimData(0, count=self._bit_count(table), values=False, datatype=DataType.BITS)]
            for table in ("coil", "discrete")
        }
        tables = (bits["coil"], bits["discrete"], registers, list(registers))
        unit = self.device.modbus.unit_id if self.device.modbus else 1
        sim = SimDevice(id=unit, simdata=tables, action=action)
        self._server = ModbusTcpServer(sim, address=("127.0.0.1", self.port))
        await self._server.listen()
        self.port = self._server.transport.sockets[0].getsockname()[1]
        return self.port

    async def stop(self) -> None:
        if self._server is not None:
            await self._server.shutdown()
            self._server = None

    def _bit_count(self, table: str) -> int:
        """Bits to serve: up to the highest declared address, whole words of 16."""
        addresses = [
            s.register_.address
            for s in self.device.sensors
            if s.register_ is not None and s.register_.table == table
        ]
        return 16 * (max(addresses, default=0) // 16 + 1)


class OpcuaSimServer:
    """An asyncua server with one Double variable per sensor node, history kept in memory.

    Values carry the simulation's timestamp as source timestamp; every change is historized
    (``historize_node_data_change``) so a collector can backfill an outage with HistoryRead.
    """

    def __init__(self, device: DeviceSpec, port: int, history_s: float = 3600.0) -> None:
        self.device = device
        self.port = port
        self.history_s = history_s
        self.nodes: dict[str, Any] = {}  # sensor id -> Node
        self._server: Any = None

    @property
    def endpoint(self) -> str:
        parts = urlsplit(self.device.endpoint)
        return f"opc.tcp://127.0.0.1:{self.port}{parts.path}"

    async def start(self, values: dict[str, float]) -> int:
        from datetime import timedelta

        from asyncua import Server, ua

        if self.port == 0:
            self.port = _free_port()
        server = Server()
        await server.init()
        server.set_endpoint(self.endpoint)
        server.set_server_name(f"integration-platform simulator ({self.device.device_id})")
        server.set_security_policy([ua.SecurityPolicyType.NoSecurity])
        sim_ns = await server.register_namespace("urn:integration-platform:simulator")
        folder = await server.nodes.objects.add_object(sim_ns, self.device.device_id)
        now = _now()
        for sensor in self.device.sensors:
            node_id = ua.NodeId.from_string(sensor.node_id or "")
            uri = getattr(node_id, "NamespaceUri", None)  # nsu=<uri>;... forms
            if uri:
                index = await server.register_namespace(uri)
                node_id = ua.NodeId(node_id.Identifier, index, node_id.NodeIdType)
            # ns=<index> ids: register placeholder namespaces until the index exists.
            while node_id.NamespaceIndex >= len(await server.get_namespace_array()):
                count = len(await server.get_namespace_array())
                await server.register_namespace(f"urn:integration-platform:simulator:{count}")
            node = await folder.add_variable(node_id, sensor.sensor_id, 0.0)
            await node.write_value(_datavalue(values.get(sensor.sensor_id, 0.0), now))
            self.nodes[sensor.sensor_id] = node
        await server.start()
        await server.historize_node_data_change(
            list(self.nodes.values()), period=timedelta(seconds=self.history_s)
        )
        self._server = server
        return self.port

    async def set_values(self, values: dict[str, float], ts: datetime) -> None:
        for sensor_id, value in values.items():
            node = self.nodes.get(sensor_id)
            if node is not None:
                await node.write_value(_datavalue(value, ts))

    async def stop(self) -> None:
        if self._server is not None:
            await self._server.stop()
            self._server = None


def _datavalue(value: float, ts: datetime) -> Any:
    from asyncua import ua

    return ua.DataValue(
        ua.Variant(float(value), ua.VariantType.Double), SourceTimestamp=ts, ServerTimestamp=ts
    )


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _clamp_int(value: float, dtype: str) -> float:
    bits = {"int16": 16, "uint16": 16, "int32": 32, "uint32": 32}[dtype]
    low, high = (
        (0, 2**bits - 1) if dtype.startswith("u") else (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1)
    )
    return float(min(max(round(value), low), high))


async def run_simulator(
    registry: Registry,
    *,
    mqtt_url: str | None,
    duration_s: float | None,
    interval_s: float = 1.0,
    fault_after_s: float | None = None,
    time_scale: float = 1.0,
    modbus_port: int | None = None,
    opcua_port: int | None = None,
    coap_port: int | None = None,
    bacnet_port: int | None = None,
    stop: threading.Event | None = None,
    on_ready: Callable[[SimulatorStats], None] | None = None,
    seed: int = 7,
) -> SimulatorStats:
    """Publish and serve until ``duration_s`` passes or ``stop`` is set."""
    stop = stop or threading.Event()
    stats = SimulatorStats()
    if fault_after_s is None:
        fault_after_s = (duration_s * time_scale * 0.5) if duration_s else 120.0
    ramp_s = 30.0
    if duration_s:  # a short run still shows the fault crossing its thresholds
        ramp_s = min(ramp_s, max(1.0, (duration_s * time_scale - fault_after_s) / 2))
    signals: dict[tuple[str, str], Signal] = {}
    for index, device in enumerate(registry.devices):
        for number, sensor in enumerate(device.sensors):
            signals[(device.device_id, sensor.sensor_id)] = Signal(
                sensor,
                seed=seed + 100 * index + number,
                fault_after_s=fault_after_s,
                fault_ramp_s=ramp_s,
            )
    servers: list[ModbusSimServer] = []
    for device in registry.enabled("modbus"):
        # --modbus-port applies to the first Modbus device; the others get free ports.
        port = device.host_port[1] if modbus_port is None else (0 if servers else modbus_port)
        server = ModbusSimServer(device, port)
        server.set_values(
            {
                s.sensor_id: signals[(device.device_id, s.sensor_id)].value(0, _now())
                for s in device.sensors
            }
        )
        stats.modbus_servers[device.device_id] = await server.start()
        servers.append(server)
        print(f"Modbus TCP simulator for {device.device_id} on 127.0.0.1:{server.port}", flush=True)
    opcua_servers: list[OpcuaSimServer] = []
    for device in registry.enabled("opcua"):
        # opcua_port applies to the first OPC-UA device; the others get free ports.
        port = device.host_port[1] if opcua_port is None else (0 if opcua_servers else opcua_port)
        opcua = OpcuaSimServer(device, port)
        stats.opcua_servers[device.device_id] = await opcua.start(
            {
                s.sensor_id: signals[(device.device_id, s.sensor_id)].value(0, _now())
                for s in device.sensors
            }
        )
        opcua_servers.append(opcua)
        print(f"OPC-UA simulator for {device.device_id} on {opcua.endpoint}", flush=True)
    from integration_platform.streams.simulate_coap_bacnet import CoapBacnetPlant

    udp_plant = CoapBacnetPlant()  # coap_port / bacnet_port: the first device's, 0: free
    stats.coap_servers, stats.bacnet_servers = await udp_plant.start(
        registry,
        lambda device: {
            s.sensor_id: signals[(device.device_id, s.sensor_id)].value(0, _now())
            for s in device.sensors
        },
        _now(),
        coap_port=coap_port,
        bacnet_port=bacnet_port,
    )
    client = _mqtt_publisher(mqtt_url) if mqtt_url and registry.enabled("mqtt") else None
    edge_nodes = SimulatedEdgeNodes(registry)
    if client is not None:
        print(f"publishing to {mqtt_url} every {interval_s:g}s; fault after {fault_after_s:g}s")
        _listen_for_commands(client, edge_nodes)
    if on_ready is not None:
        on_ready(stats)
    started = time.monotonic()
    try:
        while not stop.is_set():
            elapsed = time.monotonic() - started
            if duration_s is not None and elapsed >= duration_s:
                break
            now = _now()
            sim_elapsed = elapsed * time_scale
            for device in registry.devices:
                if not device.enabled:
                    continue
                values = {
                    s.sensor_id: signals[(device.device_id, s.sensor_id)].value(sim_elapsed, now)
                    for s in device.sensors
                }
                if device.protocol == "mqtt" and client is not None:
                    messages: Sequence[tuple[str, str | bytes]] = (
                        edge_nodes.messages(device, values, now)
                        if is_sparkplug(device)
                        else mqtt_messages(registry, device, values, now)
                    )
                    for topic, payload in messages:
                        client.publish(topic, payload, qos=1)
                        stats.published += 1
                elif device.protocol == "modbus":
                    for server in servers:
                        if server.device.device_id == device.device_id:
                            server.set_values(values)
                elif device.protocol == "opcua":
                    for opcua in opcua_servers:
                        if opcua.device.device_id == device.device_id:
                            await opcua.set_values(values, now)
                elif device.protocol in ("coap", "bacnet"):
                    udp_plant.set_values(device, values, now)
            stats.ticks += 1
            if stats.ticks % max(1, int(10 / interval_s)) == 0:
                faulty = [
                    f"{d}/{s}={sig.value(sim_elapsed, now):.2f}{sig.sensor.unit or ''}"
                    for (d, s), sig in signals.items()
                    if sig.sensor.simulate and sig.sensor.simulate.fault
                ]
                print(
                    f"t={elapsed:5.0f}s published {stats.published} messages; "
                    f"fault sensors: {', '.join(faulty) or 'none'}",
                    flush=True,
                )
            next_tick = started + stats.ticks * interval_s
            await asyncio.sleep(max(0.0, next_tick - time.monotonic()))
    finally:
        if client is not None:
            client.disconnect()
            client.loop_stop()
        for server in servers:
            await server.stop()
        for opcua in opcua_servers:
            await opcua.stop()
        await udp_plant.stop()
    return stats


def _now() -> datetime:
    return datetime.now(UTC)


def _listen_for_commands(client: Any, edge_nodes: SimulatedEdgeNodes) -> None:
    """Sparkplug edge nodes answer rebirth requests (NCMD) like real ones."""
    topics = edge_nodes.command_topics()
    if not topics:
        return
    client.on_message = lambda _client, _userdata, message: edge_nodes.on_command(
        message.topic, message.payload
    )
    for topic in topics:
        client.subscribe(topic, qos=0)


def _mqtt_publisher(url: str) -> Any:
    import paho.mqtt.client as mqtt

    parts = urlsplit(url)
    if parts.scheme not in {"mqtt", "mqtts", "tcp"}:
        raise ValueError(f"--mqtt-url {url!r}: use mqtt://host:port or mqtts://host:port")
    client = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2,
        client_id=f"ip-simulator-{random.randrange(1 << 30):x}",
        protocol=mqtt.MQTTv5,
    )
    if parts.username:
        client.username_pw_set(parts.username, parts.password)
    if parts.scheme == "mqtts":
        client.tls_set()
    client.max_queued_messages_set(10_000)
    client.connect(parts.hostname or "127.0.0.1", parts.port or 1883)
    client.loop_start()
    return client
