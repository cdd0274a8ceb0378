"""CoAP: a real aiocoap server on loopback, observed, polled and restarted under a collector."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from integration_platform.streams.coap import CoapCollector, CoapStats, parse_payload
from integration_platform.streams.devices import RegistryError, load_registry, parse_registry
from integration_platform.streams.mqtt import MalformedPayload
from integration_platform.streams.spool import Spool
from integration_platform.streams.writer import DeltaWriter
from integration_platform_tests.streams_helpers import (
    free_udp_port,
    read_delta_independently,
    running,
    wait_until,
)

T0 = datetime(2026, 3, 2, 9, 30, 0, 250000, tzinfo=UTC)


def device_yaml(port: int, settings: str = "") -> str:
    return f"""
devices:
  - device_id: boiler-1
    protocol: coap
    endpoint: coap://127.0.0.1:{port}
    coap: {{poll_interval_s: 0.1, timeout_s: 2, reconnect_max_delay_s: 1{settings}}}
    sensors:
      - {{sensor_id: temp, type: temperature, unit: degC, resource: /sensors/temp}}
      - {{sensor_id: hum, type: humidity, unit: "%RH", valid_range: [0, 100],
          resource: /sensors/hum}}
"""


class Point:
    """A resource whose payload the test sets; observable unless told otherwise."""

    def __init__(self, payload: bytes, observable: bool = True) -> None:
        from aiocoap import resource

        outer = self
        self.payload = payload
        self.gets = 0
        base = resource.ObservableResource if observable else resource.Resource

        class _Resource(base):  # type: ignore[misc, valid-type]
            async def render_get(self, request: Any) -> Any:
                from aiocoap import Message

                outer.gets += 1
                return Message(payload=outer.payload, content_format=0)

        self.resource = _Resource()

    def set(self, payload: bytes) -> None:
        self.payload = payload
        if hasattr(self.resource, "updated_state"):
            self.resource.updated_state()


class Plant:
    """An aiocoap server with /sensors/temp and /sensors/hum; restartable on one port."""

    def __init__(self, port: int, temp: Point, hum: Point) -> None:
        self.port, self.temp, self.hum = port, temp, hum
        self.context: Any = None

    async def start(self) -> None:
        from aiocoap import Context, resource

        site = resource.Site()
        site.add_resource(["sensors", "temp"], self.temp.resource)
        site.add_resource(["sensors", "hum"], self.hum.resource)
        self.context = await Context.create_server_context(
            site,
            bind=("127.0.0.1", self.port),
            transports=["udp6"],  # UDP only: no extra ports
        )

    async def stop(self) -> None:
        await self.context.shutdown()


def reading_json(ts: datetime, value: float) -> bytes:
    return json.dumps({"ts": int(ts.timestamp() * 1000), "value": value}).encode()


def values(spool: Spool, sensor: str) -> list[float | None]:
    return [r.value for r in spool.pending_readings() if r.sensor_id == sensor]


@pytest.mark.timeout(60)
def test_observe_delivers_every_value_in_order_into_the_lake(tmp_path: Path) -> None:
    port = free_udp_port()
    device = parse_registry(device_yaml(port)).devices[0]
    spool = Spool(tmp_path / "spool.sqlite", "coap-observe")
    stats = CoapStats()
    collector = CoapCollector(device, spool, stats)
    temp = Point(reading_json(T0, 20.0))
    hum = Point(b"41.5")
    sent = [(T0, 20.0)]

    async def scenario() -> None:
        plant = Plant(port, temp, hum)
        await plant.start()
        async with running(collector):
            await wait_until(lambda: stats.readings >= 2, what="first answers")
            for step in range(1, 9):  # one change per notification: observe sends the latest state
                ts = T0 + timedelta(seconds=step, milliseconds=step)
                sent.append((ts, 20.0 + step / 4))
                temp.set(reading_json(*sent[-1]))
                await wait_until(
                    lambda step=step: stats.readings >= 2 + step, what=f"notification {step}"
                )
            hum.set(b" 43.25\n")  # plain text numbers are values too
            await wait_until(lambda: 43.25 in values(spool, "hum"), what="plain notification")
            hum.set(b"250")  # outside valid_range: kept with quality bad
            await wait_until(lambda: 250.0 in values(spool, "hum"), what="out of range")
        await plant.stop()

    asyncio.run(scenario())
    assert stats.registrations == 2 and stats.polls == 0 and stats.reregistrations == 0
    assert stats.malformed == 0 and stats.gap_readings == 0
    pending = spool.pending_readings()
    assert [(r.ts, r.value) for r in pending if r.sensor_id == "temp"] == sent  # arrival order
    hum_rows = [r for r in pending if r.sensor_id == "hum"]
    assert [(r.value, r.quality) for r in hum_rows] == [
        (41.5, "good"),
        (43.25, "good"),
        (250.0, "bad"),
    ]
    assert all(r.origin == f"coap://127.0.0.1:{port}/sensors/hum" for r in hum_rows)

    writer = DeltaWriter(spool, str(tmp_path / "lake"), flush_rows=1000)
    assert writer.drain(timeout=30)
    rows = read_delta_independently(tmp_path / "lake" / "telemetry" / "sensor_readings")
    rows = rows.to_pylist()
    landed = sorted((r["ts"], r["value"]) for r in rows if r["sensor_id"] == "temp")
    assert landed == sent  # exact timestamps from the payload, exact values, each once
    assert {
        (r["device_id"], r["source_protocol"], r["unit"]) for r in rows if r["sensor_id"] == "hum"
    } == {("boiler-1", "coap", "%RH")}
    spool.close()


@pytest.mark.timeout(60)
def test_polls_a_resource_that_cannot_be_observed(tmp_path: Path) -> None:
    port = free_udp_port()
    device = parse_registry(device_yaml(port)).devices[0]
    spool = Spool(tmp_path / "spool.sqlite", "coap-poll")
    stats = CoapStats()
    collector = CoapCollector(device, spool, stats)
    temp = Point(reading_json(T0, 5.0), observable=False)
    hum = Point(b"50")

    async def scenario() -> None:
        plant = Plant(port, temp, hum)
        await plant.start()
        async with running(collector):
            await wait_until(lambda: stats.polled_resources == 1, what="polling fallback")
            for step in range(1, 4):  # each value is picked up by a later poll
                temp.set(reading_json(T0 + timedelta(seconds=step), 5.0 + step))
                await wait_until(
                    lambda step=step: 5.0 + step in values(spool, "temp"), what=f"poll {step}"
                )
            hum.set(b"51")  # the observable resource is still observed, not polled
            await wait_until(lambda: 51.0 in values(spool, "hum"), what="observed hum")
        await plant.stop()

    asyncio.run(scenario())
    assert stats.polls >= 3 and temp.gets >= 4  # registration answer + polls
    # A poll that repeats a payload repeats its timestamp: a duplicate, not a second row.
    assert values(spool, "temp") == [5.0, 6.0, 7.0, 8.0]
    assert values(spool, "hum") == [50.0, 51.0]
    spool.close()


@pytest.mark.timeout(60)
def test_observation_comes_back_after_a_server_restart(tmp_path: Path) -> None:
    port = free_udp_port()
    device = parse_registry(device_yaml(port, ", reregister_s: 0.5")).devices[0]
    spool = Spool(tmp_path / "spool.sqlite", "coap-restart")
    stats = CoapStats()
    collector = CoapCollector(device, spool, stats)
    temp = Point(reading_json(T0, 1.0))
    hum = Point(reading_json(T0, 30.0))

    async def scenario() -> None:
        plant = Plant(port, temp, hum)
        await plant.start()
        async with running(collector):
            await wait_until(lambda: stats.readings >= 2, what="first answers")
            temp.set(reading_json(T0 + timedelta(seconds=1), 2.0))
            await wait_until(lambda: 2.0 in values(spool, "temp"), what="live value")

            await plant.stop()  # the observation ends silently; re-registering fails meanwhile
            await wait_until(lambda: stats.gap_readings >= 2, what="gaps recorded")
            temp.set(reading_json(T0 + timedelta(seconds=2), 3.0))  # changed while down
            plant = Plant(port, temp, hum)
            await plant.start()
            await wait_until(lambda: 3.0 in values(spool, "temp"), what="value after restart")
            temp.set(reading_json(T0 + timedelta(seconds=3), 4.0))
            await wait_until(
                lambda: 4.0 in values(spool, "temp"), what="notification after restart"
            )
        await plant.stop()

    asyncio.run(scenario())
    assert stats.reregistrations >= 1 and stats.failed_requests >= 1
    assert stats.outages == 2  # one per resource, however many retries failed
    temp_rows = [(r.value, r.quality) for r in spool.pending_readings() if r.sensor_id == "temp"]
    assert temp_rows == [(1.0, "good"), (2.0, "good"), (None, "bad"), (3.0, "good"), (4.0, "good")]
    assert stats.online == {"boiler-1": True}
    spool.close()


@pytest.mark.timeout(60)
def test_malformed_payloads_are_counted_and_skipped(tmp_path: Path) -> None:
    port = free_udp_port()
    device = parse_registry(device_yaml(port)).devices[0]
    spool = Spool(tmp_path / "spool.sqlite", "coap-malformed")
    stats = CoapStats()
    collector = CoapCollector(device, spool, stats)
    temp = Point(b"not a number")
    hum = Point(b"40")

    async def scenario() -> None:
        plant = Plant(port, temp, hum)
        await plant.start()
        async with running(collector):
            await wait_until(lambda: stats.malformed == 1, what="first malformed")
            for number, payload in enumerate([b'{"value": "warm"}', b"\xff\xfe", b'{"v": 1}'], 2):
                temp.set(payload)
                await wait_until(
                    lambda number=number: stats.malformed == number, what=f"malformed {number}"
                )
            temp.set(b'{"value": 21.5, "quality": "uncertain"}')
            await wait_until(lambda: 21.5 in values(spool, "temp"), what="valid after malformed")
        await plant.stop()

    asyncio.run(scenario())
    assert stats.malformed == 4 and stats.gap_readings == 0
    [reading] = [r for r in spool.pending_readings() if r.sensor_id == "temp"]
    assert (reading.value, reading.quality) == (21.5, "uncertain")
    spool.close()


def test_parse_payload_shapes() -> None:
    device = parse_registry(
        device_yaml(5683, ", payload: {value: data.v, ts: data.t, ts_unit: s, quality: null}")
    ).devices[0]
    sensor = device.sensors[0]
    now = datetime(2026, 1, 1, tzinfo=UTC)
    reading = parse_payload(device, sensor, b'{"data": {"v": 3, "t": 1767225600.5}}', now)
    assert (reading.value, reading.ts, reading.quality) == (
        3.0,
        now + timedelta(seconds=0.5),
        "good",
    )
    assert parse_payload(device, sensor, b'{"data": {"v": 4}}', now).ts == now  # arrival time
    assert parse_payload(device, sensor, b"-7.25", now).value == -7.25
    with pytest.raises(MalformedPayload, match="not a number"):
        parse_payload(device, sensor, b"true", now)
    with pytest.raises(MalformedPayload, match="no time zone"):
        parse_payload(device, sensor, b'{"data": {"v": 1, "t": "2026-01-01T00:00:00"}}', now)
    with pytest.raises(MalformedPayload, match="empty payload"):
        parse_payload(device, sensor, b"  ", now)


def test_registry_checks_coap_fields(tmp_path: Path) -> None:
    good = parse_registry(device_yaml(5684)).devices[0]
    assert good.host_port == ("127.0.0.1", 5684)
    assert good.coap is not None and good.coap.observe is True
    assert good.sensors[0].resource == "/sensors/temp"

    bad = tmp_path / "devices.yaml"
    bad.write_text(
        """devices:
  - device_id: boiler-1
    protocol: coap
    endpoint: coap://127.0.0.1
    coap:
      poll_interval_s: 0
    sensors:
      - {sensor_id: temp, type: temperature, resource: sensors/temp}
      - {sensor_id: hum, type: humidity}
  - device_id: boiler-2
    protocol: coap
    endpoint: coaps://127.0.0.1:5684
    sensors:
      - {sensor_id: temp, type: temperature, resource: /t}
"""
    )
    with pytest.raises(RegistryError) as caught:
        load_registry(bad)
    text = "\n".join(caught.value.problems)
    assert f"{bad}, line 6: devices[boiler-1].coap.poll_interval_s" in text
    assert (
        f"{bad}, line 8: devices[boiler-1].sensors[temp].resource: must be a CoAP resource "
        "path starting with '/'" in text
    )
    assert (
        "devices[boiler-2]: endpoint 'coaps://127.0.0.1:5684': a coap endpoint starts with coap://"
        in text
    )

    with pytest.raises(RegistryError, match="coap sensors need a resource: hum"):
        parse_registry(
            """devices:
  - device_id: boiler-1
    protocol: coap
    endpoint: coap://127.0.0.1
    sensors:
      - {sensor_id: hum, type: humidity}
"""
        )
