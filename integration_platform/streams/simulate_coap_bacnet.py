"""Simulated CoAP and BACnet/IP peers for ``integration-platform simulate``.

Each CoAP device becomes an aiocoap server with one observable resource per sensor (payloads
shaped by the device's payload paths), each BACnet device a bacpypes3 device with one analog
object per sensor whose present value changes trigger COV notifications. Both listen on
127.0.0.1 only; a port of 0 picks a free one.
"""

from __future__ import annotations

import json
import logging
import socket
from collections.abc import Callable
from datetime import datetime
from typing import Any

from integration_platform.streams.devices import CoapSettings, DeviceSpec, Registry

log = logging.getLogger(__name__)

VENDOR_ID = 999  # bacpypes3's vendor id for sample and test devices


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def coap_payload(device: DeviceSpec, value: float, now: datetime) -> bytes:
    """A payload the device's own payload paths read back (JSON, or a bare number)."""
    paths = (device.coap or CoapSettings()).payload
    if paths.ts is None and paths.quality is None and paths.value == "value":
        return f"{value:.4f}".encode()
    body: dict[str, Any] = {}
    epoch_ms = int(now.timestamp() * 1000)
    if paths.ts:
        _set(body, paths.ts, epoch_ms if paths.ts_unit == "ms" else epoch_ms / 1000.0)
    _set(body, paths.value, round(value, 4))
    if paths.quality:
        _set(body, paths.quality, "good")
    return json.dumps(body).encode()


def _set(target: dict[str, Any], path: str, value: Any) -> None:
    *parents, last = path.split(".")
    for part in parents:
        target = target.setdefault(part, {})
    target[last] = value


class CoapSimServer:
    """An aiocoap server: one observable resource per sensor of a CoAP device."""

    def __init__(self, device: DeviceSpec, port: int) -> None:
        self.device = device
        self.port = port or free_udp_port()
        self.resources: dict[str, Any] = {}  # sensor id -> resource
        self._context: Any = None

    async def start(self, values: dict[str, float], now: datetime) -> int:
        from aiocoap import Context, Message, resource

        class Point(resource.ObservableResource):
            payload = b""

            async def render_get(self, request: Any) -> Any:
                return Message(payload=self.payload, content_format=50)

        site = resource.Site()
        for sensor in self.device.sensors:
            point = Point()
            point.payload = coap_payload(self.device, values.get(sensor.sensor_id, 0.0), now)
            path = [part for part in (sensor.resource or "/").split("/") if part]
            site.add_resource(path, point)
            self.resources[sensor.sensor_id] = point
        # UDP only: aiocoap's default server transports also listen on TCP and WebSocket ports.
        self._context = await Context.create_server_context(
            site, bind=("127.0.0.1", self.port), transports=["udp6"]
        )
        return self.port

    def set_values(self, values: dict[str, float], now: datetime) -> None:
        for sensor_id, value in values.items():
            point = self.resources.get(sensor_id)
            if point is not None:
                point.payload = coap_payload(self.device, value, now)
                point.updated_state()  # notifies the observers

    async def stop(self) -> None:
        if self._context is not None:
            await self._context.shutdown()
            self._context = None


class BacnetSimServer:
    """A bacpypes3 device with one analog-input or analog-value object per sensor (COV)."""

    def __init__(self, device: DeviceSpec, port: int) -> None:
        self.device = device
        self.port = port or free_udp_port()
        self.objects: dict[str, Any] = {}  # sensor id -> local object
        self._app: Any = None

    async def start(self, values: dict[str, float]) -> int:
        from bacpypes3.ipv4.app import NormalApplication
        from bacpypes3.local.analog import AnalogInputObject, AnalogValueObject
        from bacpypes3.local.device import DeviceObject
        from bacpypes3.pdu import IPv4Address

        classes = {"analog-input": AnalogInputObject, "analog-value": AnalogValueObject}
        instance = self.device.bacnet.device_instance if self.device.bacnet else 1
        me = DeviceObject(
            objectIdentifier=("device", instance),
            objectName=self.device.name or self.device.device_id,
            vendorIdentifier=VENDOR_ID,
        )
        self._app = NormalApplication(me, IPv4Address(f"127.0.0.1:{self.port}"))
        for sensor in self.device.sensors:
            kind, number = (sensor.object_id or "").split(",")
            if kind not in classes:
                log.warning(
                    "BACnet simulator %s/%s: object type %s is not simulated (use %s)",
                    self.device.device_id,
                    sensor.sensor_id,
                    kind,
                    " or ".join(classes),
                )
                continue
            point = classes[kind](
                objectIdentifier=(kind, int(number)),
                objectName=sensor.sensor_id,
                presentValue=values.get(sensor.sensor_id, 0.0),
                statusFlags=[0, 0, 0, 0],
                covIncrement=0.0,  # every change is a COV notification
            )
            self._app.add_object(point)
            self.objects[sensor.sensor_id] = point
        return self.port

    def set_values(self, values: dict[str, float]) -> None:
        for sensor_id, value in values.items():
            point = self.objects.get(sensor_id)
            if point is not None:
                point.presentValue = float(value)

    async def stop(self) -> None:
        if self._app is not None:
            self._app.close()
            self._app = None


class CoapBacnetPlant:
    """The simulator's CoAP and BACnet peers, started, updated and stopped together."""

    def __init__(self) -> None:
        self.coap: dict[str, CoapSimServer] = {}
        self.bacnet: dict[str, BacnetSimServer] = {}

    async def start(
        self,
        registry: Registry,
        initial: Callable[[DeviceSpec], dict[str, float]],
        now: datetime,
        *,
        coap_port: int | None = None,
        bacnet_port: int | None = None,
    ) -> tuple[dict[str, int], dict[str, int]]:
        """Serve every enabled device; ``*_port`` overrides the first device's port."""
        for device in registry.enabled("coap"):
            port = device.host_port[1] if coap_port is None else (0 if self.coap else coap_port)
            server = CoapSimServer(device, port)
            await server.start(initial(device), now)
            self.coap[device.device_id] = server
            print(f"CoAP simulator for {device.device_id} on coap://127.0.0.1:{server.port}")
        for device in registry.enabled("bacnet"):
            port = (
                device.host_port[1] if bacnet_port is None else (0 if self.bacnet else bacnet_port)
            )
            bms = BacnetSimServer(device, port)
            await bms.start(initial(device))
            self.bacnet[device.device_id] = bms
            print(f"BACnet simulator for {device.device_id} on 127.0.0.1:{bms.port}", flush=True)
        return (
            {device_id: s.port for device_id, s in self.coap.items()},
            {device_id: s.port for device_id, s in self.bacnet.items()},
        )

    def set_values(self, device: DeviceSpec, values: dict[str, float], now: datetime) -> None:
        if device.device_id in self.coap:
            self.coap[device.device_id].set_values(values, now)
        elif device.device_id in self.bacnet:
            self.bacnet[device.device_id].set_values(values)

    async def stop(self) -> None:
        for server in self.coap.values():
            await server.stop()
        for bms in self.bacnet.values():
            await bms.stop()
