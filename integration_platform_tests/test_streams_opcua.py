"""OPC-UA: a real asyncua server on loopback, restarted under a subscribed collector.

The server historizes two of the three nodes and answers ``BadHistoryOperationUnsupported``
for the third, as servers without a historian do, so one run shows both outage outcomes:
backfilled from history, and a gap that stays recorded.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from integration_platform.streams.devices import RegistryError, parse_registry
from integration_platform.streams.opcua import OpcuaCollector, OpcuaStats, quality_of
from integration_platform.streams.spool import Spool
from integration_platform.streams.writer import DeltaWriter
from integration_platform_tests.streams_helpers import (
    free_port,
    read_delta_independently,
    running,
    running_collector,
    wait_until,
)

NS = "urn:test:plant"
NODES = {"vib": "Pump1.Vibration", "temp": "Pump1.BearingTemp", "flow": "Pump1.Flow"}
HISTORIZED = ("vib", "temp")
T0 = datetime(2026, 1, 5, 8, 0, 0, 123456, tzinfo=UTC)  # initial values' source timestamp


def device_yaml(port: int, extra: str = "") -> str:
    return f"""
devices:
  - device_id: pump-1
    protocol: opcua
    endpoint: opc.tcp://127.0.0.1:{port}/plant
    opcua: {{publishing_interval_ms: 50, reconnect_max_delay_s: 4{extra}}}
    sensors:
      - {{sensor_id: vib, type: vibration, unit: mm/s, node_id: "ns=2;s=Pump1.Vibration"}}
      - {{sensor_id: temp, type: temperature, unit: degC, node_id: "ns=2;s=Pump1.BearingTemp"}}
      - {{sensor_id: flow, type: flow, unit: l/min, valid_range: [0, 500],
          node_id: "ns=2;s=Pump1.Flow"}}
"""


class PlantServer:
    """An asyncua server with three Double variables; restartable on the same port."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.server: Any = None
        self.nodes: dict[str, Any] = {}

    async def start(self) -> None:
        from asyncua import Server, ua

        server = Server()
        await server.init()
        server.set_endpoint(f"opc.tcp://127.0.0.1:{self.port}/plant")
        server.set_security_policy([ua.SecurityPolicyType.NoSecurity])
        ns = await server.register_namespace(NS)
        assert ns == 2
        pump = await server.nodes.objects.add_object(f"ns={ns};s=Pump1", "Pump1")
        for key, name in NODES.items():
            node = await pump.add_variable(f"ns={ns};s={name}", name, 0.0)
            await node.write_value(_dv(1.0, T0))
            self.nodes[key] = node
        await server.start()
        await server.historize_node_data_change(
            [self.nodes[k] for k in HISTORIZED], period=None, count=1000
        )
        _answer_unsupported_without_history(server)
        self.server = server

    async def write(self, key: str, value: float, ts: datetime, status: int = 0) -> None:
        await self.nodes[key].write_value(_dv(value, ts, status))

    async def stop(self) -> None:
        await self.server.stop()
        self.server = None


def _dv(value: float, ts: datetime, status: int = 0) -> Any:
    from asyncua import ua

    return ua.DataValue(
        ua.Variant(value, ua.VariantType.Double),
        StatusCode=ua.StatusCode(status),
        SourceTimestamp=ts,
        ServerTimestamp=ts,
    )


def _answer_unsupported_without_history(server: Any) -> None:
    """asyncua answers Good with no values for a node it does not historize; real servers
    answer BadHistoryOperationUnsupported, which is what the collector must handle."""
    from asyncua import ua

    manager = server.iserver.history_manager
    original = manager._read_history

    async def read(details: Any, rv: Any) -> Any:
        if rv.NodeId not in manager.storage._datachanges:
            result = ua.HistoryReadResult()
            result.StatusCode = ua.StatusCode(ua.StatusCodes.BadHistoryOperationUnsupported)
            return result
        return await original(details, rv)

    manager._read_history = read


def values_of(spool: Spool, sensor: str) -> list[tuple[datetime, float | None, str]]:
    return sorted(
        (r.ts, r.value, r.quality) for r in spool.pending_readings() if r.sensor_id == sensor
    )


def has_latest(spool: Spool, written: dict[str, list[tuple[datetime, float]]]) -> bool:
    have = {(r.sensor_id, r.ts, r.value) for r in spool.pending_readings()}
    return all((key, *values[-1]) in have for key, values in written.items())


@pytest.mark.timeout(60)
def test_subscription_restart_gap_and_history_backfill(tmp_path: Path) -> None:
    port = free_port()
    device = parse_registry(device_yaml(port)).devices[0]
    spool = Spool(tmp_path / "spool.sqlite", "opcua-test")
    stats = OpcuaStats()
    collector = OpcuaCollector(device, spool, stats)
    written: dict[str, list[tuple[datetime, float]]] = {k: [(T0, 1.0)] for k in NODES}
    restored_only: dict[str, list[tuple[datetime, float]]] = {}

    async def write_all(plant: PlantServer, base: float, count: int) -> None:
        for step in range(count):
            ts = datetime.now(UTC)
            for number, key in enumerate(NODES):
                value = base + step + number / 10
                await plant.write(key, value, ts)
                written[key].append((ts, value))
            await asyncio.sleep(0.005)  # distinct source timestamps

    async def scenario() -> None:
        plant = PlantServer(port)
        await plant.start()
        async with running(collector):
            await asyncio.wait_for(collector.connected.wait(), 10)
            await wait_until(lambda: stats.readings >= 3, what="initial values")
            # Several changes between two publishes: the server-side queue keeps each of them.
            await write_all(plant, 10.0, 5)
            await wait_until(lambda: stats.readings >= 18, what="live changes")

            await plant.stop()  # server restart: the session and its queues are gone
            await wait_until(lambda: stats.gap_readings >= 3, what="gap recorded")
            await asyncio.sleep(0.3)
            plant = PlantServer(port)  # same port, same node ids, fresh (in-memory) history
            await plant.start()
            await write_all(plant, 20.0, 4)  # while the collector is still backing off
            for key in NODES:
                if key not in HISTORIZED:  # only the current value comes back by subscription
                    restored_only[key] = written[key][-4:-1]
            await wait_until(lambda: stats.reconnects >= 1, timeout=20, what="reconnect")
            await wait_until(lambda: collector._lost_at is None, what="backfill")
            await write_all(plant, 30.0, 2)  # and the restored subscription delivers again
            await wait_until(lambda: has_latest(spool, written), what="live after restart")
        await plant.stop()

    asyncio.run(scenario())

    assert stats.outages == 1 and stats.reconnects == 1
    assert stats.history_unsupported == 1  # flow
    assert stats.backfilled == 2 * 3  # vib and temp: the last 3 of the 4 outage writes
    for key in NODES:
        got = values_of(spool, key)
        gaps = [g for g in got if g[1] is None]
        assert len(gaps) == 1 and gaps[0][2] == "bad"  # one gap reading at the loss
        lost_at = gaps[0][0]
        expected = sorted(written[key])
        if key in restored_only:
            expected = sorted(set(expected) - set(restored_only[key]))
        values = [(ts, value) for ts, value, _q in got if value is not None]
        assert values == expected, key  # exact set, each once
        assert all(q == "good" for _ts, v, q in got if v is not None)
        assert all(ts.tzinfo is UTC or ts.utcoffset() == timedelta(0) for ts, _v, _q in got)
        before = [ts for ts, _v in expected if ts < lost_at]
        assert len(before) == 6  # initial + 5 live values, all before the loss

    spool_rows = spool.pending_readings()
    writer = DeltaWriter(spool, str(tmp_path / "lake"), flush_rows=10_000)
    assert writer.drain(timeout=30)
    table = read_delta_independently(tmp_path / "lake" / "telemetry" / "sensor_readings")
    rows = table.to_pylist()
    assert len(rows) == len(spool_rows)
    keys = [(r["sensor_id"], r["ts"]) for r in rows]
    assert len(keys) == len(set(keys))  # no duplicates in the lake
    vib = sorted(
        (r["ts"], r["value"]) for r in rows if r["sensor_id"] == "vib" and r["value"] is not None
    )
    assert vib == sorted(written["vib"])
    assert {r["source_protocol"] for r in rows} == {"opcua"}
    assert all(r["ts"].utcoffset() == timedelta(0) for r in rows)
    spool.close()


@pytest.mark.timeout(30)
def test_quality_from_status_codes(tmp_path: Path) -> None:
    from asyncua import ua

    assert quality_of(ua.StatusCode(ua.StatusCodes.Good)) == "good"
    assert quality_of(ua.StatusCode(ua.StatusCodes.UncertainLastUsableValue)) == "uncertain"
    assert quality_of(ua.StatusCode(ua.StatusCodes.BadSensorFailure)) == "bad"
    assert quality_of(None) == "good"

    port = free_port()
    device = parse_registry(device_yaml(port)).devices[0]
    spool = Spool(tmp_path / "spool.sqlite", "opcua-quality")
    stats = OpcuaStats()
    collector = OpcuaCollector(device, spool, stats)
    ts = datetime.now(UTC).replace(microsecond=500)

    async def scenario() -> None:
        plant = PlantServer(port)
        await plant.start()
        async with running(collector):
            await wait_until(lambda: stats.readings >= 3, what="initial values")
            await plant.write("vib", 2.5, ts, ua.StatusCodes.UncertainLastUsableValue)
            await plant.write("temp", 40.0, ts, ua.StatusCodes.BadSensorFailure)
            await plant.write("flow", 900.0, ts)  # good, but outside the valid range
            await wait_until(lambda: stats.readings >= 6, what="quality values")
        await plant.stop()

    asyncio.run(scenario())
    latest = {r.sensor_id: r for r in spool.pending_readings() if r.ts == ts}
    assert (latest["vib"].quality, latest["vib"].value) == ("uncertain", 2.5)
    assert latest["temp"].quality == "bad"  # the value of a Bad DataValue is not trusted
    assert latest["temp"].value in (None, 40.0)
    assert (latest["flow"].quality, latest["flow"].value) == ("bad", 900.0)
    assert latest["vib"].ts == ts and latest["vib"].ts.tzinfo is not None
    spool.close()


def test_registry_checks_opcua_fields(tmp_path: Path) -> None:
    good = parse_registry(device_yaml(4840, ", history_backfill: false")).devices[0]
    assert good.opcua is not None and good.opcua.publishing_interval_ms == 50
    assert good.sensors[0].node_id == "ns=2;s=Pump1.Vibration"
    assert good.host_port == ("127.0.0.1", 4840)

    bad = tmp_path / "devices.yaml"
    bad.write_text(
        """devices:
  - device_id: pump-1
    protocol: opcua
    endpoint: opc.tcp://127.0.0.1:4840
    opcua:
      publishing_interval_ms: 0
      security: {policy: Basic256Sha256, mode: SignAndEncrypt, certificate: c.der}
    sensors:
      - {sensor_id: vib, type: vibration, node_id: "Pump1.Vibration"}
      - {sensor_id: temp, type: temperature}
  - device_id: pump-2
    protocol: opcua
    endpoint: tcp://127.0.0.1:4840
    sensors:
      - {sensor_id: vib, type: vibration, node_id: "ns=2;i=7"}
"""
    )
    from integration_platform.streams.devices import load_registry

    with pytest.raises(RegistryError) as caught:
        load_registry(bad)
    text = "\n".join(caught.value.problems)
    assert f"{bad}, line 6: devices[pump-1].opcua.publishing_interval_ms" in text
    assert (
        "devices[pump-1].opcua.security: " in text and "needs certificate and private_key" in text
    )
    assert "line 9: devices[pump-1].sensors[vib].node_id: must be an OPC-UA node id" in text
    assert (
        "devices[pump-2]: endpoint 'tcp://127.0.0.1:4840': a opcua endpoint starts with "
        "opc.tcp://" in text
    )

    with pytest.raises(RegistryError, match="opcua sensors need a node_id: temp"):
        parse_registry(
            """devices:
  - device_id: pump-1
    protocol: opcua
    endpoint: opc.tcp://127.0.0.1:4840
    sensors:
      - {sensor_id: temp, type: temperature}
"""
        )
    with pytest.raises(RegistryError, match="policy and mode go together"):
        parse_registry(device_yaml(4840, ", security: {policy: Basic256Sha256}"))


@pytest.mark.timeout(60)
def test_collector_runs_the_simulated_opcua_device_and_reloads(tmp_path: Path) -> None:
    from integration_platform.streams.simulate import run_simulator
    from integration_platform_tests.streams_helpers import wait_for

    port = free_port()
    # The server starts with the simulator, after the collector's first connect attempts: a
    # backoff cap of 1 s keeps the next attempt inside the simulated window on a busy machine.
    text = (
        device_yaml(port)
        .replace("pump-1", "comp-2")
        .replace("reconnect_max_delay_s: 4", "reconnect_max_delay_s: 1")
    )
    devices = tmp_path / "devices.yaml"
    devices.write_text(text)
    with running_collector(tmp_path, devices, "opcua-collector") as collector:
        assert wait_for(lambda: collector.opcua.devices == ["comp-2"], timeout=5)
        stats = asyncio.run(
            run_simulator(parse_registry(text), mqtt_url=None, duration_s=3.5, interval_s=0.1)
        )
        assert stats.opcua_servers == {"comp-2": port}
        assert collector.opcua.stats.readings >= 30
        devices.write_text(text.replace("protocol: opcua", "protocol: opcua\n    enabled: false"))
        assert wait_for(lambda: collector.opcua.devices == [], timeout=10)  # reload removed it
    rows = read_delta_independently(tmp_path / "lake" / "telemetry" / "sensor_readings")
    rows = rows.to_pylist()
    keys = [(r["sensor_id"], r["ts"]) for r in rows]
    assert len(keys) == len(set(keys))
    good = [r for r in rows if r["quality"] == "good"]
    assert {r["sensor_id"] for r in good} == {"vib", "temp", "flow"}
    assert all(r["device_id"] == "comp-2" and r["source_protocol"] == "opcua" for r in rows)
    temps = [r["value"] for r in good if r["sensor_id"] == "temp"]
    assert len(temps) >= 10 and all(20 < t < 70 for t in temps)  # the simulated signal
