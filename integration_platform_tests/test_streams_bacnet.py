"""BACnet/IP: a real bacpypes3 device on loopback, subscribed (COV), polled and restarted."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from integration_platform.streams.bacnet import BacnetCollector, BacnetStats, quality_of
from integration_platform.streams.devices import RegistryError, load_registry, parse_registry
from integration_platform.streams.spool import Spool
from integration_platform.streams.writer import DeltaWriter
from integration_platform_tests.streams_helpers import (
    free_udp_port,
    read_delta_independently,
    running,
    running_collector,
    wait_until,
)

INSTANCE = 1001


def device_yaml(port: int, settings: str = "") -> str:
    return f"""
devices:
  - device_id: ahu-7
    protocol: bacnet
    endpoint: bacnet://127.0.0.1:{port}
    bacnet: {{device_instance: {INSTANCE}, poll_interval_s: 0.1, timeout_s: 0.5, retries: 0,
              local_address: "127.0.0.1:0", reconnect_max_delay_s: 1{settings}}}
    sensors:
      - {{sensor_id: supply_temp, type: temperature, unit: degC, valid_range: [-30, 60],
          object_id: "analog-input,1"}}
      - {{sensor_id: airflow, type: flow, unit: m3/h, object_id: "analog-input,2"}}
"""


class BmsDevice:
    """A bacpypes3 device: analog-input,1 reports COV, analog-input,2 refuses it."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.app: Any = None
        self.temp: Any = None
        self.flow: Any = None

    async def start(self, temp: float, flow: float) -> None:
        from bacpypes3.ipv4.app import NormalApplication
        from bacpypes3.local.analog import AnalogInputObject
        from bacpypes3.local.device import DeviceObject
        from bacpypes3.pdu import IPv4Address

        class NoCovInput(AnalogInputObject):  # a point whose device does not offer COV
            _cov_criteria = None

        device = DeviceObject(
            objectIdentifier=("device", INSTANCE), objectName="ahu-7", vendorIdentifier=999
        )
        self.app = NormalApplication(device, IPv4Address(f"127.0.0.1:{self.port}"))
        self.temp = AnalogInputObject(
            objectIdentifier=("analog-input", 1),
            objectName="supply-temp",
            presentValue=temp,
            statusFlags=[0, 0, 0, 0],
            covIncrement=0.0,
            units="degreesCelsius",
        )
        self.flow = NoCovInput(
            objectIdentifier=("analog-input", 2),
            objectName="airflow",
            presentValue=flow,
            statusFlags=[0, 0, 0, 0],
            covIncrement=0.0,
        )
        self.app.add_object(self.temp)
        self.app.add_object(self.flow)

    def subscribers(self) -> int:
        from bacpypes3.primitivedata import ObjectIdentifier

        detection = self.app._cov_detections.get(ObjectIdentifier("analog-input,1"))
        return len(detection.cov_subscriptions) if detection else 0

    async def stop(self) -> None:
        self.app.close()
        await asyncio.sleep(0.1)  # let the transport close before the port is reused


def rows_of(spool: Spool, sensor: str) -> list[tuple[float | None, str]]:
    return [(r.value, r.quality) for r in spool.pending_readings() if r.sensor_id == sensor]


def values(spool: Spool, sensor: str) -> list[float | None]:
    return [value for value, _quality in rows_of(spool, sensor)]


@pytest.mark.timeout(60)
def test_cov_notifications_and_polling_when_cov_is_refused(tmp_path: Path) -> None:
    port = free_udp_port()
    device = parse_registry(device_yaml(port)).devices[0]
    spool = Spool(tmp_path / "spool.sqlite", "bacnet-cov")
    stats = BacnetStats()
    collector = BacnetCollector(device, spool, stats)
    bms = BmsDevice(port)

    async def scenario() -> None:
        await bms.start(temp=21.5, flow=1200.0)
        async with running(collector):
            await wait_until(lambda: values(spool, "supply_temp") == [21.5], what="initial COV")
            await wait_until(lambda: stats.cov_refused == 1, what="COV refused")
            await wait_until(lambda: 1200.0 in values(spool, "airflow"), what="polled value")
            for value in (22.0, 22.25, 80.0):  # one notification per change, in order
                bms.temp.presentValue = value
                await wait_until(lambda v=value: v in values(spool, "supply_temp"), what=f"{value}")
            bms.temp.statusFlags = [0, 1, 0, 0]  # fault: same value, now bad
            await wait_until(lambda: len(values(spool, "supply_temp")) == 5, what="fault flag")
            bms.temp.statusFlags = [0, 0, 0, 1]  # out of service: uncertain
            bms.temp.presentValue = 19.0
            await wait_until(lambda: 19.0 in values(spool, "supply_temp"), what="out of service")
            bms.flow.presentValue = 1350.5
            await wait_until(lambda: 1350.5 in values(spool, "airflow"), what="next poll")
            assert bms.subscribers() == 1
        assert bms.subscribers() == 0  # the subscription was cancelled on the way out
        await bms.stop()

    asyncio.run(scenario())
    assert stats.subscriptions == 1 and stats.cov_refused == 1
    assert stats.malformed == 0 and stats.read_errors == 0 and stats.outages == 0
    temp = rows_of(spool, "supply_temp")
    assert temp[:4] == [(21.5, "good"), (22.0, "good"), (22.25, "good"), (80.0, "bad")]
    assert temp[4:] == [(80.0, "bad"), (19.0, "uncertain")]  # fault flag, then out of service
    airflow = values(spool, "airflow")
    first_new = airflow.index(1350.5)
    assert set(airflow[:first_new]) == {1200.0} and set(airflow[first_new:]) == {1350.5}
    assert stats.polls >= 2

    writer = DeltaWriter(spool, str(tmp_path / "lake"), flush_rows=10_000)
    assert writer.drain(timeout=30)
    rows = read_delta_independently(tmp_path / "lake" / "telemetry" / "sensor_readings")
    rows = rows.to_pylist()
    landed = [
        r["value"] for r in sorted(rows, key=lambda r: r["ts"]) if r["sensor_id"] == "supply_temp"
    ]
    assert landed == [21.5, 22.0, 22.25, 80.0, 80.0, 19.0]
    assert {(r["device_id"], r["source_protocol"]) for r in rows} == {("ahu-7", "bacnet")}
    spool.close()


@pytest.mark.timeout(60)
def test_subscription_is_renewed_before_it_expires(tmp_path: Path) -> None:
    port = free_udp_port()
    device = parse_registry(device_yaml(port, ", cov_lifetime_s: 2")).devices[0]
    spool = Spool(tmp_path / "spool.sqlite", "bacnet-renew")
    stats = BacnetStats()
    collector = BacnetCollector(device, spool, stats)
    bms = BmsDevice(port)

    async def scenario() -> None:
        await bms.start(temp=10.0, flow=1.0)
        async with running(collector):
            await wait_until(lambda: 10.0 in values(spool, "supply_temp"), what="subscribed")
            await wait_until(lambda: stats.renewals >= 3, what="renewals")  # past two lifetimes
            assert bms.subscribers() == 1
            bms.temp.presentValue = 11.0
            await wait_until(lambda: 11.0 in values(spool, "supply_temp"), what="still notified")
        await bms.stop()

    asyncio.run(scenario())
    assert stats.subscriptions == 1 and stats.outages == 0


@pytest.mark.timeout(60)
def test_device_restart_records_a_gap_and_subscribes_again(tmp_path: Path) -> None:
    port = free_udp_port()
    device = parse_registry(device_yaml(port)).devices[0]
    spool = Spool(tmp_path / "spool.sqlite", "bacnet-restart")
    stats = BacnetStats()
    collector = BacnetCollector(device, spool, stats)

    async def scenario() -> None:
        bms = BmsDevice(port)
        await bms.start(temp=15.0, flow=500.0)
        async with running(collector):
            await wait_until(lambda: 500.0 in values(spool, "airflow"), what="polled")
            await wait_until(lambda: 15.0 in values(spool, "supply_temp"), what="subscribed")
            await bms.stop()  # the device goes away: the next poll gets no answer
            await wait_until(lambda: stats.gap_readings == 2, what="gap recorded")
            bms = BmsDevice(port)  # back, without any subscription
            await bms.start(temp=16.5, flow=550.0)
            await wait_until(lambda: stats.reconnects == 1, what="reconnected")
            await wait_until(lambda: 16.5 in values(spool, "supply_temp"), what="resubscribed")
            bms.temp.presentValue = 17.0
            await wait_until(lambda: 17.0 in values(spool, "supply_temp"), what="notified again")
            await wait_until(lambda: 550.0 in values(spool, "airflow"), what="polled again")
        await bms.stop()

    asyncio.run(scenario())
    assert stats.outages == 1 and stats.subscriptions == 2 and stats.cov_refused == 2
    assert rows_of(spool, "supply_temp") == [
        (15.0, "good"),
        (None, "bad"),
        (16.5, "good"),
        (17.0, "good"),
    ]
    assert stats.online == {"ahu-7": True}
    spool.close()


def test_status_flags_give_the_quality() -> None:
    assert quality_of(None) == "good"
    assert quality_of([1, 0, 0, 0]) == "good"  # in alarm: the value itself is sound
    assert quality_of([0, 1, 0, 0]) == "bad"
    assert quality_of([0, 0, 1, 0]) == "uncertain"
    assert quality_of([0, 0, 0, 1]) == "uncertain"


def test_registry_checks_bacnet_fields(tmp_path: Path) -> None:
    good = parse_registry(device_yaml(47809)).devices[0]
    assert good.host_port == ("127.0.0.1", 47809)
    assert good.bacnet is not None and good.bacnet.device_instance == INSTANCE
    assert good.bacnet.cov and good.bacnet.cov_lifetime_s == 300
    assert good.sensors[0].object_id == "analog-input,1"
    assert good.sensors[0].property_id == "present-value"
    default_port = parse_registry(device_yaml(47809).replace(":47809", "")).devices[0]
    assert default_port.host_port == ("127.0.0.1", 47808)

    bad = tmp_path / "devices.yaml"
    bad.write_text(
        """devices:
  - device_id: ahu-7
    protocol: bacnet
    endpoint: bacnet://127.0.0.1:47808
    bacnet:
      device_instance: 4194303
      cov_lifetime_s: 0
    sensors:
      - {sensor_id: temp, type: temperature, object_id: "analog input 1"}
      - {sensor_id: flow, type: flow, object_id: "analog-input,2", property_id: PresentValue}
  - device_id: ahu-8
    protocol: bacnet
    endpoint: udp://127.0.0.1:47808
    sensors:
      - {sensor_id: temp, type: temperature, object_id: "analog-input,1"}
"""
    )
    with pytest.raises(RegistryError) as caught:
        load_registry(bad)
    text = "\n".join(caught.value.problems)
    assert f"{bad}, line 6: devices[ahu-7].bacnet.device_instance" in text
    assert f"{bad}, line 7: devices[ahu-7].bacnet.cov_lifetime_s" in text
    assert (
        f"{bad}, line 9: devices[ahu-7].sensors[temp].object_id: must be a BACnet object id "
        "'type,instance' (e.g. 'analog-input,1') (got 'analog input 1')" in text
    )
    assert "line 10: devices[ahu-7].sensors[flow].property_id: must be a BACnet property" in text
    assert "devices[ahu-8]: endpoint 'udp://127.0.0.1:47808': a bacnet endpoint starts with" in text

    with pytest.raises(RegistryError, match=r"bacnet devices need bacnet\.device_instance"):
        parse_registry(
            """devices:
  - device_id: ahu-7
    protocol: bacnet
    endpoint: bacnet://127.0.0.1
    sensors:
      - {sensor_id: temp, type: temperature, object_id: "analog-input,1"}
"""
        )
    with pytest.raises(RegistryError, match="bacnet sensors need an object_id: supply_temp"):
        parse_registry(
            device_yaml(47808).replace('object_id: "analog-input,1"', "property_id: present-value")
        )


@pytest.mark.timeout(60)
def test_collector_runs_simulated_coap_and_bacnet_devices_and_reloads(tmp_path: Path) -> None:
    from integration_platform.streams.simulate import run_simulator
    from integration_platform_tests.streams_helpers import wait_for

    coap_port, bacnet_port = free_udp_port(), free_udp_port()
    text = (
        device_yaml(bacnet_port)
        + f"""
  - device_id: boiler-1
    protocol: coap
    endpoint: coap://127.0.0.1:{coap_port}
    coap: {{poll_interval_s: 0.2}}
    sensors:
      - {{sensor_id: water_temp, type: temperature, unit: degC, resource: /boiler/water_temp,
          simulate: {{base: 70, noise: 0.5}}}}
"""
    )
    devices = tmp_path / "devices.yaml"
    devices.write_text(text)
    with running_collector(tmp_path, devices, "coap-bacnet-collector") as collector:
        assert wait_for(lambda: collector.coap.devices == ["boiler-1"], timeout=5)
        assert collector.bacnet.devices == ["ahu-7"]
        stats = asyncio.run(
            run_simulator(parse_registry(text), mqtt_url=None, duration_s=3.0, interval_s=0.1)
        )
        assert stats.coap_servers == {"boiler-1": coap_port}
        assert stats.bacnet_servers == {"ahu-7": bacnet_port}
        assert collector.coap.stats.notifications >= 10
        assert collector.bacnet.stats.notifications >= 10  # COV from the simulated device
        status = collector.status()
        assert status["coap"]["readings"] >= 10 and status["bacnet"]["readings"] >= 10
        devices.write_text(text.replace("protocol: coap", "protocol: coap\n    enabled: false"))
        assert wait_for(lambda: collector.coap.devices == [], timeout=10)  # reload removed it
        assert collector.bacnet.devices == ["ahu-7"]
    rows = read_delta_independently(tmp_path / "lake" / "telemetry" / "sensor_readings")
    rows = rows.to_pylist()
    keys = [(r["device_id"], r["sensor_id"], r["ts"]) for r in rows]
    assert len(keys) == len(set(keys))
    good = {(r["device_id"], r["sensor_id"], r["source_protocol"]) for r in rows if r["value"]}
    assert good == {
        ("boiler-1", "water_temp", "coap"),
        ("ahu-7", "supply_temp", "bacnet"),
        ("ahu-7", "airflow", "bacnet"),
    }
    water = [r["value"] for r in rows if r["sensor_id"] == "water_temp" and r["value"]]
    assert len(water) >= 10 and all(60 < v < 80 for v in water)  # the simulated signal


@pytest.mark.timeout(30)
def test_a_wrong_device_instance_is_reported_and_retried(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    port = free_udp_port()
    text = device_yaml(port).replace(f"device_instance: {INSTANCE}", "device_instance: 2002")
    spool = Spool(tmp_path / "spool.sqlite", "bacnet-instance")
    stats = BacnetStats()
    collector = BacnetCollector(parse_registry(text).devices[0], spool, stats)

    async def scenario() -> None:
        bms = BmsDevice(port)
        await bms.start(temp=1.0, flow=2.0)
        async with running(collector):
            await wait_until(lambda: "check bacnet.device_instance" in caplog.text, what="error")
        await bms.stop()

    with caplog.at_level("WARNING", logger="integration_platform.streams.bacnet"):
        asyncio.run(scenario())
    assert "BACnet ahu-7: device 2002 at 127.0.0.1:" in caplog.text
    assert "device,2002 cannot be read (Error unknown-object)" in caplog.text
    assert stats.online == {"ahu-7": False} and stats.readings == 0 and stats.outages == 0
    spool.close()


def test_the_coap_and_bacnet_example_registry_is_valid() -> None:
    from integration_platform.streams.cli import EXAMPLE_DEVICES

    registry = load_registry(EXAMPLE_DEVICES.parent / "devices-coap-bacnet.yaml")
    assert [(d.protocol, d.host_port[1]) for d in registry.devices] == [
        ("coap", 5683),
        ("bacnet", 47808),
    ]


@pytest.mark.timeout(30)
def test_an_unknown_object_type_parks_one_point_not_the_device(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    port = free_udp_port()
    text = device_yaml(port).replace('"analog-input,1"', '"analog-inpt,1"')
    spool = Spool(tmp_path / "spool.sqlite", "bacnet-names")
    stats = BacnetStats()
    collector = BacnetCollector(parse_registry(text).devices[0], spool, stats)

    async def scenario() -> None:
        bms = BmsDevice(port)
        await bms.start(temp=1.0, flow=2.5)
        async with running(collector):
            await wait_until(lambda: 2.5 in values(spool, "airflow"), what="the other point")
        await bms.stop()

    with caplog.at_level("ERROR", logger="integration_platform.streams.bacnet"):
        asyncio.run(scenario())
    assert (
        "BACnet ahu-7/supply_temp: object_id 'analog-inpt,1': unknown BACnet object type"
        in caplog.text
    )
    assert stats.read_errors == 1 and values(spool, "supply_temp") == []
    spool.close()
