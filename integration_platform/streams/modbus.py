"""Modbus TCP: register decoding (pure functions) and a polling collector.

Byte/word orders name where the bytes ``A B C D`` (most significant first) of a 32-bit value
sit in consecutive registers: ``ABCD`` big-endian, ``CDAB`` word-swapped, ``BADC``
byte-swapped, ``DCBA`` little-endian; 64-bit values extend the same rule to four registers and
16-bit values only see the byte swap. Coils and discrete inputs are one bit per address, the
raw value 0 or 1. ``value = raw * scale + offset``.

pymodbus' TCP client reconnects by itself (about a second after the device is back) and
buffers nothing while the device is away, so a failed poll is recorded as a gap: one reading
per sensor with no value and quality ``bad``, which keeps the outage visible in the data.
"""

from __future__ import annotations

import asyncio
import logging
import math
import struct
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from integration_platform.streams.aiorunner import (
    DeviceLoopRunner,
    DeviceStats,
    sleep_unless_stopped,
)
from integration_platform.streams.devices import (
    BIT_TABLES,
    DeviceSpec,
    ModbusSettings,
    Register,
    SensorSpec,
)
from integration_platform.streams.readings import Reading
from integration_platform.streams.spool import Spool, SpoolFullError

log = logging.getLogger(__name__)

ORDERS = ("ABCD", "CDAB", "BADC", "DCBA")
FORMATS: dict[str, tuple[int, str]] = {  # registers, struct format (big-endian)
    "int16": (1, ">h"),
    "uint16": (1, ">H"),
    "int32": (2, ">i"),
    "uint32": (2, ">I"),
    "float32": (2, ">f"),
    "float64": (4, ">d"),
}
MAX_READ = 125  # registers per read request (Modbus limit)
MAX_READ_BITS = 2000  # coils or discrete inputs per read request (Modbus limit)
MAX_GAP = 8  # unused addresses tolerated inside one read


def register_count(dtype: str) -> int:
    return FORMATS[dtype][0]


def width(reg: Register) -> int:
    """Addresses a value takes: one for a bit, its type's register count otherwise."""
    return 1 if reg.bit else register_count(reg.type)


def _check(dtype: str, order: str) -> None:
    if dtype not in FORMATS:
        raise ValueError(f"unknown register type {dtype!r}; use one of {', '.join(FORMATS)}")
    if order not in ORDERS:
        raise ValueError(f"unknown byte order {order!r}; use one of {', '.join(ORDERS)}")


def _reorder(registers: Sequence[int], order: str) -> list[int]:
    """Between device order and big-endian; the permutation is its own inverse."""
    words = [int(r) & 0xFFFF for r in registers]
    if order in {"BADC", "DCBA"}:
        words = [((w & 0xFF) << 8) | (w >> 8) for w in words]
    if order in {"CDAB", "DCBA"}:
        words.reverse()
    return words


def decode(registers: Sequence[int], dtype: str, order: str = "ABCD") -> int | float:
    """Raw value of ``registers`` (as read, lowest address first)."""
    _check(dtype, order)
    count, fmt = FORMATS[dtype]
    if len(registers) != count:
        raise ValueError(f"{dtype} takes {count} registers, got {len(registers)}")
    raw = b"".join(w.to_bytes(2, "big") for w in _reorder(registers, order))
    return struct.unpack(fmt, raw)[0]


def encode(value: float, dtype: str, order: str = "ABCD") -> list[int]:
    """Registers holding ``value`` (rounded for integer types): the inverse of :func:`decode`."""
    _check(dtype, order)
    count, fmt = FORMATS[dtype]
    number: float | int = value if dtype.startswith("float") else round(value)
    raw = struct.pack(fmt, number)
    words = [int.from_bytes(raw[i : i + 2], "big") for i in range(0, 2 * count, 2)]
    return _reorder(words, order)


def scaled(raw: float, scale: float = 1.0, offset: float = 0.0) -> float:
    return float(raw) * scale + offset


def unscaled(value: float, scale: float = 1.0, offset: float = 0.0) -> float:
    return (value - offset) / scale


@dataclass(frozen=True)
class ReadBlock:
    """One read request covering several sensors of one table (registers or bits)."""

    table: str
    start: int
    count: int
    sensors: tuple[SensorSpec, ...]

    @property
    def bits(self) -> bool:
        return self.table in BIT_TABLES


def plan_reads(sensors: Sequence[SensorSpec]) -> list[ReadBlock]:
    """Group sensors into as few reads as the protocol limits and small gaps allow.

    Per table: at most 125 registers or 2000 bits a read, and a new read after more than
    ``MAX_GAP`` unused addresses, so a sparse map does not read addresses a device may refuse.
    """
    blocks: list[ReadBlock] = []
    by_table: dict[str, list[SensorSpec]] = {}
    for sensor in sensors:
        if sensor.register_ is not None:
            by_table.setdefault(sensor.register_.table, []).append(sensor)
    for table, members in sorted(by_table.items()):
        members.sort(key=lambda s: s.register_.address)  # type: ignore[union-attr]
        limit = MAX_READ_BITS if table in BIT_TABLES else MAX_READ
        current: list[SensorSpec] = []
        start = end = 0
        for sensor in members:
            reg = sensor.register_
            assert reg is not None
            stop = reg.address + width(reg)
            if current and reg.address - end <= MAX_GAP and stop - start <= limit:
                current.append(sensor)
                end = max(end, stop)
                continue
            if current:
                blocks.append(ReadBlock(table, start, end - start, tuple(current)))
            current, start, end = [sensor], reg.address, stop
        if current:
            blocks.append(ReadBlock(table, start, end - start, tuple(current)))
    return blocks


def decode_block(block: ReadBlock, words: Sequence[int] | Sequence[bool]) -> dict[str, float]:
    """Scaled values of the block's sensors from the registers or bits the read returned.

    A bit read answers in whole bytes (pymodbus pads ``bits`` to a multiple of 8): only the
    first ``block.count`` are the device's answer, the rest are filler.
    """
    if len(words) < block.count:
        raise ValueError(f"asked for {block.count} values at {block.start}, got {len(words)}")
    words = words[: block.count]
    values: dict[str, float] = {}
    for sensor in block.sensors:
        reg = sensor.register_
        assert reg is not None
        offset = reg.address - block.start
        if block.bits:
            raw: int | float = 1 if words[offset] else 0
        else:
            raw = decode(words[offset : offset + width(reg)], reg.type, reg.order)
        values[sensor.sensor_id] = scaled(raw, reg.scale, reg.offset)
    return values


# -- polling -------------------------------------------------------------------------------


@dataclass
class ModbusStats(DeviceStats):
    polls: int = 0
    failed_polls: int = 0


class ModbusPoller:
    """Polls one device at a fixed rate into the spool; failed reads become gap readings."""

    def __init__(self, device: DeviceSpec, spool: Spool, stats: ModbusStats) -> None:
        self.device = device
        self.spool = spool
        self.stats = stats
        self.settings = device.modbus or ModbusSettings()
        self.blocks = plan_reads(device.sensors)
        self._offline_since: float | None = None

    async def run(self, stop: asyncio.Event) -> None:
        from pymodbus.client import AsyncModbusTcpClient

        host, port = self.device.host_port
        client = AsyncModbusTcpClient(
            host,
            port=port,
            timeout=self.settings.timeout_s,
            retries=0,
            reconnect_delay=0.5,
            reconnect_delay_max=5.0,
        )
        interval = self.settings.poll_interval_s
        log.info(
            "Modbus %s: polling %s every %.1fs",
            self.device.device_id,
            self.device.endpoint,
            interval,
        )
        try:
            await client.connect()
            next_poll = time.monotonic()
            while not stop.is_set():
                try:
                    if not client.connected:
                        await client.connect()  # returns at once while the device refuses
                    await self._store(await self.poll_once(client))
                except Exception:  # keep polling: a collector must outlive one bad poll
                    log.exception("Modbus %s: poll failed", self.device.device_id)
                next_poll += interval
                delay = next_poll - time.monotonic()
                if delay < 0:  # fell behind (slow device): skip missed ticks, keep the rate
                    next_poll = time.monotonic()
                    delay = 0
                await sleep_unless_stopped(stop, delay)
        finally:
            client.close()

    async def poll_once(self, client: Any) -> list[Reading]:
        """One poll of every block: values, or gap readings for blocks that failed."""
        ts = datetime.now(UTC)
        readings: list[Reading] = []
        failures: list[str] = []
        self.stats.polls += 1
        for block in self.blocks:
            try:
                values = await self._read(client, block)
            except Exception as exc:  # pymodbus raises several kinds; any failure is a gap
                failures.append(f"{type(exc).__name__}: {exc}")
                readings.extend(self._reading(s, ts, None) for s in block.sensors)
                self.stats.gap_readings += len(block.sensors)
                continue
            readings.extend(self._reading(s, ts, values[s.sensor_id]) for s in block.sensors)
        self._track(failures)
        return readings

    async def _read(self, client: Any, block: ReadBlock) -> dict[str, float]:
        read = {
            "holding": client.read_holding_registers,
            "input": client.read_input_registers,
            "coil": client.read_coils,
            "discrete": client.read_discrete_inputs,
        }[block.table]
        response = await read(block.start, count=block.count, device_id=self.settings.unit_id)
        if response.isError():
            raise RuntimeError(f"device answered with an exception: {response}")
        return decode_block(block, response.bits if block.bits else response.registers)

    def _reading(self, sensor: SensorSpec, ts: datetime, value: float | None) -> Reading:
        quality = "bad"
        if value is not None:
            quality = "good" if math.isfinite(value) and sensor.in_range(value) else "bad"
        return Reading.of(
            self.device,
            sensor,
            ts=ts,
            value=value,
            quality=quality,
            protocol="modbus",
            ingested_at=ts,
            origin=self.device.endpoint,
        )

    def _track(self, failures: list[str]) -> None:
        device = self.device.device_id
        if failures:
            self.stats.failed_polls += 1
            if self._offline_since is None:
                self._offline_since = time.monotonic()
                log.warning(
                    "Modbus %s unreachable (%s); recording gaps until it answers",
                    device,
                    failures[0],
                )
            self.stats.online[device] = False
        else:
            if self._offline_since is not None:
                log.info(
                    "Modbus %s answers again after %.1fs",
                    device,
                    time.monotonic() - self._offline_since,
                )
                self._offline_since = None
            self.stats.online[device] = True

    async def _store(self, readings: list[Reading]) -> None:
        try:
            result = await asyncio.to_thread(self.spool.append, readings)
        except SpoolFullError as exc:
            self.stats.dropped_spool_full += len(readings)
            if self.stats.dropped_spool_full <= len(readings) or self.stats.polls % 60 == 0:
                log.error("Modbus %s: poll dropped: %s", self.device.device_id, exc)
            return
        self.stats.readings += result.accepted


class ModbusRunner(DeviceLoopRunner):
    """Runs one :class:`ModbusPoller` per device on an asyncio loop in its own thread."""

    def __init__(self, spool: Spool) -> None:
        # Imported here, on the constructing thread: pymodbus imported from two threads at
        # once (the poller loop and an in-process simulator) can fail with an import deadlock.
        import pymodbus.client  # noqa: F401

        self.spool = spool
        self.stats = ModbusStats()
        super().__init__("modbus", lambda device: ModbusPoller(device, self.spool, self.stats), 5.0)
