"""Modbus: decoding vectors for every type and order, and polling a real pymodbus server
(registers, coils and discrete inputs; the simulator's server too)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from integration_platform.streams.devices import (
    DeviceSpec,
    RegistryError,
    load_registry,
    parse_registry,
)
from integration_platform.streams.modbus import (
    ModbusPoller,
    ModbusStats,
    decode,
    decode_block,
    encode,
    plan_reads,
    scaled,
)
from integration_platform.streams.readings import Reading
from integration_platform.streams.simulate import ModbusSimServer, Signal
from integration_platform.streams.spool import Spool
from integration_platform.streams.writer import DeltaWriter
from integration_platform_tests.streams_helpers import (
    free_port,
    read_delta_independently,
    running,
    wait_until,
)

# Registers as a device sends them (lowest address first), written out by hand per order.
VECTORS: list[tuple[str, int | float, dict[str, list[int]]]] = [
    ("int16", -12345, {"ABCD": [0xCFC7], "CDAB": [0xCFC7], "BADC": [0xC7CF], "DCBA": [0xC7CF]}),
    ("uint16", 51000, {"ABCD": [0xC738], "CDAB": [0xC738], "BADC": [0x38C7], "DCBA": [0x38C7]}),
    (
        "int32",
        -123456789,
        {
            "ABCD": [0xF8A4, 0x32EB],
            "CDAB": [0x32EB, 0xF8A4],
            "BADC": [0xA4F8, 0xEB32],
            "DCBA": [0xEB32, 0xA4F8],
        },
    ),
    (
        "uint32",
        3000000000,
        {
            "ABCD": [0xB2D0, 0x5E00],
            "CDAB": [0x5E00, 0xB2D0],
            "BADC": [0xD0B2, 0x005E],
            "DCBA": [0x005E, 0xD0B2],
        },
    ),
    (
        "float32",
        123.456,
        {
            "ABCD": [0x42F6, 0xE979],
            "CDAB": [0xE979, 0x42F6],
            "BADC": [0xF642, 0x79E9],
            "DCBA": [0x79E9, 0xF642],
        },
    ),
    (
        "float64",
        -1234.5678,
        {
            "ABCD": [0xC093, 0x4A45, 0x6D5C, 0xFAAD],
            "CDAB": [0xFAAD, 0x6D5C, 0x4A45, 0xC093],
            "BADC": [0x93C0, 0x454A, 0x5C6D, 0xADFA],
            "DCBA": [0xADFA, 0x5C6D, 0x454A, 0x93C0],
        },
    ),
]
CASES = [
    (dtype, value, order, registers)
    for dtype, value, orders in VECTORS
    for order, registers in orders.items()
]


@pytest.mark.parametrize(("dtype", "value", "order", "registers"), CASES)
def test_decode_vectors(dtype: str, value: float, order: str, registers: list[int]) -> None:
    decoded = decode(registers, dtype, order)
    if dtype == "float32":
        assert decoded == pytest.approx(value, rel=1e-7)
    else:
        assert decoded == value


@pytest.mark.parametrize(("dtype", "value", "order", "registers"), CASES)
def test_encode_is_the_inverse(dtype: str, value: float, order: str, registers: list[int]) -> None:
    assert encode(value, dtype, order) == registers


def test_scale_offset_and_errors() -> None:
    assert scaled(decode([0xCFC7], "int16"), 0.1, 0) == pytest.approx(-1234.5)
    assert scaled(decode([0x0190], "uint16"), 0.5, -40) == pytest.approx(160.0)
    with pytest.raises(ValueError, match="takes 2 registers"):
        decode([1], "float32")
    with pytest.raises(ValueError, match="unknown byte order"):
        decode([1, 2], "int32", "ACBD")


def device_yaml(port: int) -> str:
    return f"""
devices:
  - device_id: press-7
    protocol: modbus
    endpoint: tcp://127.0.0.1:{port}
    modbus: {{unit_id: 3, poll_interval_s: 0.1, timeout_s: 0.3}}
    sensors:
      - {{sensor_id: oil_temp, type: temperature, unit: degC,
          register: {{address: 0, type: float32, order: ABCD}}}}
      - {{sensor_id: pressure, type: pressure, unit: bar,
          register: {{address: 2, type: int16, scale: 0.1}}}}
      - {{sensor_id: vib, type: vibration, unit: mm/s,
          register: {{address: 4, type: float64, order: DCBA}}}}
      - {{sensor_id: flow, type: flow, unit: l/min, valid_range: [0, 1000],
          register: {{table: input, address: 10, type: uint32, order: CDAB, scale: 0.01}}}}
"""


HOLDING = [0x42F6, 0xE979, 0xCFC7, 0x0000, 0xADFA, 0x5C6D, 0x454A, 0x93C0]
INPUT = [0] * 10 + [0x5E00, 0xB2D0]


async def start_server(
    port: int, coils: list[bool] | None = None, discrete: list[bool] | None = None
) -> Any:
    """Unit 3 with the HOLDING and INPUT registers and the given bits (a multiple of 16)."""
    from pymodbus.server import ModbusTcpServer
    from pymodbus.simulator import DataType, SimData, SimDevice

    def bits(values: list[bool] | None) -> list[SimData]:
        return [SimData(0, values=values or [False] * 16, datatype=DataType.BITS)]

    holding = [SimData(0, values=list(HOLDING), datatype=DataType.REGISTERS)]
    inputs = [SimData(0, values=list(INPUT), datatype=DataType.REGISTERS)]
    device = SimDevice(id=3, simdata=(bits(coils), bits(discrete), holding, inputs))
    server = ModbusTcpServer(device, address=("127.0.0.1", port))
    await server.listen()
    return server


def test_plan_reads_groups_near_registers() -> None:
    sensors = parse_registry(device_yaml(502)).devices[0].sensors
    blocks = [(b.table, b.start, b.count, len(b.sensors)) for b in plan_reads(sensors)]
    assert blocks == [("holding", 0, 8, 3), ("input", 10, 2, 1)]


@pytest.mark.timeout(60)
def test_polling_decodes_values_and_records_a_server_restart_gap(tmp_path: Path) -> None:
    port = free_port()
    device = parse_registry(device_yaml(port)).devices[0]
    spool = Spool(tmp_path / "spool.sqlite", "modbus-test")
    stats = ModbusStats()
    poller = ModbusPoller(device, spool, stats)

    async def scenario() -> None:
        server = await start_server(port)
        async with running(poller, stop_timeout=5):
            await wait_until(lambda: stats.polls >= 3 and stats.online.get("press-7"))
            await server.shutdown()  # the device goes away
            await wait_until(lambda: stats.gap_readings >= 8)
            server = await start_server(port)  # and comes back on the same port
            gaps = stats.gap_readings
            await wait_until(lambda: stats.online.get("press-7") and stats.gap_readings >= gaps)
            polls = stats.polls
            await wait_until(lambda: stats.polls >= polls + 2)
        await server.shutdown()

    asyncio.run(scenario())
    readings = spool.pending_readings()
    by_poll: list[tuple[str, ...]] = []
    for index in range(0, len(readings), 4):
        by_poll.append(tuple(r.quality for r in readings[index : index + 4]))
    ok = ("good", "good", "good", "bad")  # flow is outside its valid range: kept as bad
    gap = ("bad",) * 4
    assert by_poll[0] == ok
    assert gap in by_poll  # the outage: every sensor, no value
    assert by_poll[-1] == ok  # and it recovered
    first_gap = by_poll.index(gap)
    assert all(p == ok for p in by_poll[:first_gap])
    good = {r.sensor_id: r.value for r in readings[:4]}
    assert good["oil_temp"] == pytest.approx(123.456, rel=1e-6)
    assert good["pressure"] == pytest.approx(-1234.5)
    assert good["vib"] == -1234.5678
    flow = next(r for r in readings if r.sensor_id == "flow" and r.value is not None)
    assert flow.value == pytest.approx(30_000_000.0)
    assert flow.quality == "bad"  # outside its valid range [0, 1000]
    missing = next(r for r in readings if r.value is None)
    assert (missing.quality, missing.source_protocol) == ("bad", "modbus")
    assert missing.origin == device.endpoint

    writer = DeltaWriter(spool, str(tmp_path / "lake"), flush_rows=10_000)
    assert writer.drain(timeout=30)
    table = read_delta_independently(tmp_path / "lake" / "telemetry" / "sensor_readings")
    assert table.num_rows == len(readings)
    rows = table.to_pylist()
    assert any(r["quality"] == "bad" and r["value"] is None for r in rows)
    spool.close()


# -- coils and discrete inputs -------------------------------------------------------------


def bits_device(port: int, sensors: list[str]) -> DeviceSpec:
    """A unit-3 device at ``port`` with the given sensor lines (YAML flow mappings)."""
    lines = "\n".join(f"      - {line}" for line in sensors)
    return parse_registry(f"""
devices:
  - device_id: pump-3
    protocol: modbus
    endpoint: tcp://127.0.0.1:{port}
    modbus: {{unit_id: 3, timeout_s: 1.0}}
    sensors:
{lines}
""").devices[0]


def bit(sensor_id: str, table: str, address: int, extra: str = "") -> str:
    register = f"{{table: {table}, address: {address}{extra}}}"
    return f"{{sensor_id: {sensor_id}, type: status, register: {register}}}"


class RecordingClient:
    """A pymodbus client that notes each read (method, start, count) before passing it on."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.reads: list[tuple[str, int, int]] = []

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.client, name)
        if not name.startswith("read_"):
            return method

        async def read(address: int, *, count: int, device_id: int) -> Any:
            self.reads.append((name, address, count))
            return await method(address, count=count, device_id=device_id)

        return read


async def poll_once(device: DeviceSpec, port: int, tmp_path: Path) -> tuple[dict, list]:
    """One poll of ``device`` at ``port``: values by sensor id, and the reads it took."""
    from pymodbus.client import AsyncModbusTcpClient

    spool = Spool(tmp_path / "spool.sqlite", "modbus-bits-test")
    client = AsyncModbusTcpClient("127.0.0.1", port=port, timeout=1.0, retries=0)
    try:
        await client.connect()
        recording = RecordingClient(client)
        poller = ModbusPoller(device, spool, ModbusStats())
        readings: list[Reading] = await poller.poll_once(recording)
    finally:
        client.close()
        spool.close()
    assert all(r.quality == "good" for r in readings), readings
    return {r.sensor_id: r.value for r in readings}, recording.reads


@pytest.mark.timeout(60)
def test_coils_and_discrete_inputs_are_read_in_one_poll_beside_registers(tmp_path: Path) -> None:
    port = free_port()
    device = bits_device(
        port,
        [
            "{sensor_id: oil_temp, type: temperature, register: {address: 0, type: float32}}",
            "{sensor_id: flow, type: flow, register: {table: input, address: 10, type: uint32,"
            " order: CDAB, scale: 0.01}}",
            bit("running", "coil", 0),
            # Normally-closed contacts: the input is 1 while the door is shut, so invert it.
            bit("door_1_open", "discrete", 1, ", scale: -1, offset: 1"),
            bit("breaker_trip", "discrete", 2),
            bit("door_2_open", "discrete", 3, ", scale: -1, offset: 1"),
        ],
    )
    blocks = [(b.table, b.start, b.count, len(b.sensors)) for b in plan_reads(device.sensors)]
    assert blocks == [
        ("coil", 0, 1, 1),
        ("discrete", 1, 3, 3),
        ("holding", 0, 2, 1),
        ("input", 10, 2, 1),
    ]

    async def scenario() -> tuple[dict, list]:
        coils = [True] + [False] * 15
        discrete = [False, True, True, False] + [False] * 12
        server = await start_server(port, coils, discrete)
        try:
            return await poll_once(device, port, tmp_path)
        finally:
            await server.shutdown()

    values, reads = asyncio.run(scenario())
    assert values == {
        "oil_temp": pytest.approx(123.456, rel=1e-6),
        "flow": pytest.approx(30_000_000.0),
        "running": 1.0,
        "door_1_open": 0.0,  # contact closed (input 1): door shut
        "breaker_trip": 1.0,
        "door_2_open": 1.0,  # contact open (input 0): door open
    }
    assert sorted(reads) == [
        ("read_coils", 0, 1),
        ("read_discrete_inputs", 1, 3),
        ("read_holding_registers", 0, 2),
        ("read_input_registers", 10, 2),
    ]


@pytest.mark.timeout(60)
def test_bits_beyond_the_2000_bit_limit_take_a_second_read(tmp_path: Path) -> None:
    port = free_port()
    addresses = [*range(0, 1999, 9), 1999, 2000]  # gaps of 8: grouped, up to the limit
    device = bits_device(port, [bit(f"c{a:04d}", "coil", a) for a in addresses])
    blocks = [(b.start, b.count, len(b.sensors)) for b in plan_reads(device.sensors)]
    assert blocks == [(0, 2000, len(addresses) - 1), (2000, 1, 1)]
    pattern = [a % 3 == 0 for a in range(2016)]

    async def scenario() -> tuple[dict, list]:
        server = await start_server(port, coils=pattern)
        try:
            return await poll_once(device, port, tmp_path)
        finally:
            await server.shutdown()

    values, reads = asyncio.run(scenario())
    assert reads == [("read_coils", 0, 2000), ("read_coils", 2000, 1)]
    assert values == {f"c{a:04d}": float(pattern[a]) for a in addresses}


@pytest.mark.timeout(60)
def test_padding_bits_do_not_leak_into_other_sensors(tmp_path: Path) -> None:
    port = free_port()
    # Coils 0-2 are read as one block of 3, answered with a byte of 8 bits: 3-7 are filler
    # (all on here), as are 4-7 of the single-bit reads of coil 12 and discrete input 3.
    device = bits_device(
        port,
        [
            bit("c0", "coil", 0),
            bit("c1", "coil", 1),
            bit("c2", "coil", 2),
            bit("c12", "coil", 12),
            bit("d3", "discrete", 3),
        ],
    )
    coils = [True, False, True] + [True] * 9 + [False] + [True] * 3
    discrete = [True] * 3 + [False] + [True] * 12

    async def scenario() -> tuple[dict, list]:
        server = await start_server(port, coils, discrete)
        try:
            return await poll_once(device, port, tmp_path)
        finally:
            await server.shutdown()

    values, reads = asyncio.run(scenario())
    assert values == {"c0": 1.0, "c1": 0.0, "c2": 1.0, "c12": 0.0, "d3": 0.0}
    assert sorted(reads) == [
        ("read_coils", 0, 3),
        ("read_coils", 12, 1),
        ("read_discrete_inputs", 3, 1),
    ]

    block = plan_reads(device.sensors)[0]
    assert decode_block(block, [True, False, True] + [True] * 5) == {
        "c0": 1.0,
        "c1": 0.0,
        "c2": 1.0,
    }
    with pytest.raises(ValueError, match="asked for 3 values at 0, got 2"):
        decode_block(block, [True, False])


@pytest.mark.timeout(60)
def test_simulator_serves_coils_and_discrete_inputs(tmp_path: Path) -> None:
    device = bits_device(
        0,
        [
            "{sensor_id: oil_temp, type: temperature, register: {address: 0, type: float32}}",
            "{sensor_id: running, type: status, register: {table: coil, address: 5},"
            " simulate: {base: 1, daily_amplitude: 0, noise: 0}}",
            bit("door_open", "discrete", 17, ", scale: -1, offset: 1"),  # second word of bits
        ],
    )
    running = Signal(device.sensors[1], seed=1).value(0, datetime.now(UTC))

    async def scenario() -> list[tuple[dict, bool]]:
        from pymodbus.client import AsyncModbusTcpClient

        sim = ModbusSimServer(device, 0)
        sim.set_values({"oil_temp": 50.0, "running": running, "door_open": 0.0})
        port = await sim.start()
        results = []
        try:
            for values in ({}, {"running": 0.2, "door_open": 0.9}):
                sim.set_values(values)
                polled, _ = await poll_once(device, port, tmp_path)
                client = AsyncModbusTcpClient("127.0.0.1", port=port, timeout=1.0, retries=0)
                await client.connect()
                contact = await client.read_discrete_inputs(17, count=1, device_id=3)
                client.close()
                results.append((polled, contact.bits[0]))
        finally:
            await sim.stop()
        return results

    first, second = asyncio.run(scenario())
    assert first == ({"oil_temp": 50.0, "running": 1.0, "door_open": 0.0}, True)
    assert second == ({"oil_temp": 50.0, "running": 0.0, "door_open": 1.0}, False)


@pytest.mark.parametrize(
    ("table", "field", "value", "kind"),
    [("coil", "type", "float32", "coil"), ("discrete", "order", "CDAB", "discrete input")],
)
def test_bit_registers_refuse_type_and_order(
    tmp_path: Path, table: str, field: str, value: str, kind: str
) -> None:
    setting = f"{field}: {value}"
    path = tmp_path / "devices.yaml"
    path.write_text(f"""devices:
  - device_id: pump-3
    protocol: modbus
    endpoint: tcp://127.0.0.1:502
    sensors:
      - sensor_id: running
        type: status
        register:
          table: {table}
          address: 0
          {setting}
""")
    with pytest.raises(RegistryError) as caught:
        load_registry(path)
    assert caught.value.problems == [
        f"{path}, line 11: devices[pump-3].sensors[running].register.{field}: "
        f"{field} {value!r} does not apply to a {kind}: "
        f"it is one bit, read as 0 or 1 (then scale and offset); leave {field} out"
    ]
    # Their defaults, written out, are harmless and accepted.
    path.write_text(path.read_text().replace(setting, "type: uint16\n          order: ABCD"))
    assert load_registry(path).devices[0].sensors[0].register_.bit  # type: ignore[union-attr]
