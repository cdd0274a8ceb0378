"""Modbus: decoding vectors for every type and order, and polling a real pymodbus server."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from integration_platform.streams.devices import parse_registry
from integration_platform.streams.modbus import (
    ModbusPoller,
    ModbusStats,
    decode,
    encode,
    plan_reads,
    scaled,
)
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


async def start_server(port: int):
    from pymodbus.server import ModbusTcpServer
    from pymodbus.simulator import DataType, SimData, SimDevice

    bits = [SimData(0, count=16, values=False, datatype=DataType.BITS)]
    holding = [SimData(0, values=list(HOLDING), datatype=DataType.REGISTERS)]
    inputs = [SimData(0, values=list(INPUT), datatype=DataType.REGISTERS)]
    device = SimDevice(id=3, simdata=(bits, bits, holding, inputs))
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
