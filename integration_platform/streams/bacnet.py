"""BACnet/IP (bacpypes3): COV subscriptions per point, ReadProperty polling where COV is refused.

Each device gets its own bacpypes3 application (one UDP socket, ``bacnet.local_address``) that
talks to the device by unicast, so no broadcast, BBMD or Who-Is is involved. On connect the
device object (``device,<device_instance>``) is read: that checks both that something answers
and that it is the configured device.

- **COV.** Each sensor whose property is ``present-value`` is subscribed with SubscribeCOV
  (``cov_lifetime_s``) and renewed at half its lifetime, early enough that a renewal which
  needs all its APDU retries still lands before the device drops the subscription. A
  notification carries the present value and the status flags: ``fault`` → ``bad``,
  ``overridden`` or ``out-of-service`` → ``uncertain``; the reading's ``ts`` is the arrival
  time (COV notifications carry no timestamp). A device that refuses the subscription (an
  Error or Reject, e.g. ``cov-subscription-failed``) gets that point polled instead.
- **Polling.** ReadProperty of the sensor's property every ``poll_interval_s`` (present-value
  by default; other properties are always polled, COV reports present-value only).
- **Outages.** A request that gets no answer (bacpypes3 aborts it after ``timeout_s`` times
  (``retries`` + 1)) marks the device lost: one gap reading per sensor (no value, quality
  ``bad``), then reconnect with a backoff from 1 s doubling to ``reconnect_max_delay_s``, and
  subscribe again. A device that restarted has forgotten its subscriptions; the resubscription
  sends the current value at once.

bacpypes3 raises protocol errors as ``ErrorRejectAbortNack``, a ``BaseException`` subclass, so
they are caught by name here.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from integration_platform.streams.aiorunner import (
    Backoff,
    DeviceLoopRunner,
    DeviceStats,
    sleep_unless_stopped,
    spool_readings,
)
from integration_platform.streams.devices import BacnetSettings, DeviceSpec, SensorSpec
from integration_platform.streams.readings import Reading
from integration_platform.streams.spool import Spool

log = logging.getLogger(__name__)

CLIENT_INSTANCE = 4194301  # this collector's own device object; never announced (no Who-Is)
PRESENT_VALUE = "present-value"


class DeviceLost(RuntimeError):
    """The device did not answer a request: record the outage and reconnect."""


class Refused(RuntimeError):
    """The device answered a request with an Error or Reject (the text says which)."""


# -- values (pure) -------------------------------------------------------------------------


def number(value: Any) -> float | None:
    """A BACnet primitive as a float (Real, Unsigned, Enumerated, Boolean); else ``None``."""
    if isinstance(value, bool | int | float):
        return float(value)
    return None


def quality_of(flags: Any) -> str:
    """Our quality code for BACnet status flags (in-alarm, fault, overridden, out-of-service)."""
    if flags is None:
        return "good"
    bits = [int(bit) for bit in flags] + [0, 0, 0, 0]
    if bits[1]:
        return "bad"
    if bits[2] or bits[3]:
        return "uncertain"
    return "good"


def _cast(object_id: Any, property_value: Any) -> tuple[str, Any]:
    """(property name, decoded value) of one PropertyValue of a COV notification."""
    from bacpypes3.vendor import get_vendor_info

    name = str(property_value.propertyIdentifier)
    object_class = get_vendor_info(0).get_object_class(object_id[0])
    kind = (
        object_class.get_property_type(property_value.propertyIdentifier) if object_class else None
    )
    if kind is None:
        return name, None
    return name, property_value.value.cast_out(kind)


def _error_text(error: BaseException) -> str:
    code = getattr(error, "errorCode", None) or getattr(error, "apduAbortRejectReason", None)
    return f"{type(error).__name__.split('(')[0]} {code}" if code is not None else repr(error)


# -- collecting ----------------------------------------------------------------------------


@dataclass
class BacnetStats(DeviceStats):
    notifications: int = 0
    polls: int = 0
    read_errors: int = 0
    subscriptions: int = 0
    renewals: int = 0
    cov_refused: int = 0
    reconnects: int = 0


class BacnetCollector:
    """Collects one BACnet device's points by COV or polling, reconnecting after outages."""

    def __init__(self, device: DeviceSpec, spool: Spool, stats: BacnetStats) -> None:
        assert device.bacnet is not None, "the registry requires bacnet settings"
        self.device = device
        self.spool = spool
        self.stats = stats
        self.settings: BacnetSettings = device.bacnet
        host, port = device.host_port
        self.address = f"{host}:{port}"
        self.connected = asyncio.Event()
        self._seen: set[str] = set()
        self._lost = False
        self._ever_connected = False
        self._stopping = False  # cancelled subscriptions are cancelled on the device too

    @property
    def answer_timeout_s(self) -> float:
        """How long one request may take with all its APDU retries (plus a margin)."""
        return self.settings.timeout_s * (self.settings.retries + 1) + 2.0

    async def run(self, stop: asyncio.Event) -> None:
        app = self._application()
        backoff = Backoff(self.settings.reconnect_max_delay_s)
        try:
            while not stop.is_set():
                try:
                    await self._connect(app)
                    backoff.reset()
                    await self._collect(app, stop)
                except (DeviceLost, Refused) as exc:
                    self.connected.clear()
                    await self._mark_lost(str(exc), backoff.delay)
                    await sleep_unless_stopped(stop, backoff.delay)
                    backoff.grow()
        finally:
            self.connected.clear()
            app.close()

    def _application(self) -> Any:
        from bacpypes3.ipv4.app import NormalApplication
        from bacpypes3.local.device import DeviceObject
        from bacpypes3.pdu import IPv4Address

        me = DeviceObject(
            objectIdentifier=("device", CLIENT_INSTANCE),
            objectName=f"integration-platform collector for {self.device.device_id}",
            apduTimeout=int(self.settings.timeout_s * 1000),
            numberOfApduRetries=self.settings.retries,
        )
        return NormalApplication(me, IPv4Address(self.settings.local_address))

    async def _connect(self, app: Any) -> None:
        """Read the device object: something answers, and it is the configured device."""
        instance = self.settings.device_instance
        try:
            await self._request(
                app.read_property(self.address, f"device,{instance}", "object-name")
            )
        except Refused as exc:
            raise Refused(
                f"device,{instance} cannot be read ({exc}); check bacnet.device_instance"
            ) from None
        self.connected.set()
        self.stats.online[self.device.device_id] = True
        if self._lost:
            self._lost = False
            self.stats.reconnects += 1
            log.info("BACnet %s: device %d answers again", self.device.device_id, instance)
        elif not self._ever_connected:
            log.info(
                "BACnet %s: connected to device %d at %s",
                self.device.device_id,
                instance,
                self.address,
            )
        self._ever_connected = True

    async def _collect(self, app: Any, stop: asyncio.Event) -> None:
        """Run one task per sensor until ``stop`` or until one of them loses the device."""
        tasks = [
            asyncio.create_task(self._follow(app, sensor, number + 1))
            for number, sensor in enumerate(self.device.sensors)
        ]
        stopping = asyncio.create_task(stop.wait())
        try:
            done, _ = await asyncio.wait([*tasks, stopping], return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                if task is not stopping and task.exception() is not None:
                    raise task.exception()  # type: ignore[misc]
        finally:
            self._stopping = stop.is_set()
            for task in [*tasks, stopping]:
                task.cancel()
            await asyncio.gather(*tasks, stopping, return_exceptions=True)

    async def _follow(self, app: Any, sensor: SensorSpec, process_id: int) -> None:
        """COV or polling for one point; a point bacpypes3 cannot name is parked, not fatal."""
        try:
            _check_names(sensor)
        except ValueError as exc:
            self.stats.read_errors += 1
            log.error(
                "BACnet %s/%s: %s; this sensor is not collected (fix the registry)",
                self.device.device_id,
                sensor.sensor_id,
                exc,
            )
            await asyncio.Event().wait()  # the other points go on; a registry edit restarts
        if self.settings.cov and sensor.property_id == PRESENT_VALUE:
            try:
                await self._subscribed(app, sensor, process_id)
            except Refused as exc:
                self.stats.cov_refused += 1
                log.info(
                    "BACnet %s/%s: COV refused for %s (%s); polling every %gs",
                    self.device.device_id,
                    sensor.sensor_id,
                    sensor.object_id,
                    exc,
                    self.settings.poll_interval_s,
                )
        await self._polled(app, sensor)

    # -- COV -----------------------------------------------------------------------------

    async def _subscribed(self, app: Any, sensor: SensorSpec, process_id: int) -> None:
        """Subscribe, take notifications, renew at half the lifetime; returns never."""
        from bacpypes3.primitivedata import ObjectIdentifier

        loop = asyncio.get_running_loop()
        lifetime = self.settings.cov_lifetime_s
        object_id = ObjectIdentifier(sensor.object_id)
        subscription = _subscription_class()(
            app,
            _address(self.address),
            object_id,
            process_id,
            self.settings.cov_confirmed,
            lifetime,
        )
        await self._request(subscription.__aenter__())  # SubscribeCOV; registers the context
        self.stats.subscriptions += 1
        polite = False
        try:
            renew_at = loop.time() + lifetime / 2
            while True:
                try:
                    first = await asyncio.wait_for(
                        subscription.get(), max(0.0, renew_at - loop.time())
                    )
                except TimeoutError:
                    await self._request(subscription.refresh_subscription())
                    self.stats.renewals += 1
                    renew_at = loop.time() + lifetime / 2
                    continue
                batch = [first]
                while not subscription.queue.empty():
                    batch.append(subscription.queue.get_nowait())
                await self._take_notification(sensor, object_id, batch)
        except asyncio.CancelledError:
            polite = self._stopping  # stopping, not lost: tell the device to drop it
            raise
        finally:
            await _leave(subscription, polite)

    async def _take_notification(self, sensor: SensorSpec, object_id: Any, batch: list) -> None:
        """Readings from COV property values: each present value with the status flags after it."""
        now = datetime.now(UTC)
        readings: list[Reading] = []
        held: list[Any] = []

        def emit(flags: Any) -> None:
            for raw in held:
                reading = self._reading(sensor, raw, quality_of(flags), now)
                if reading is not None:
                    readings.append(reading)
            held.clear()

        for property_value in batch:
            try:
                name, value = _cast(object_id, property_value)
            except Exception as exc:  # an undecodable value must not end the subscription
                self._malformed(sensor, f"undecodable property value: {exc}")
                continue
            if name == PRESENT_VALUE:
                self.stats.notifications += 1
                emit(None)
                held.append(value)
            elif name == "status-flags":
                emit(value)
        emit(None)
        await self._store(readings)

    # -- polling -------------------------------------------------------------------------

    async def _polled(self, app: Any, sensor: SensorSpec) -> None:
        """ReadProperty every ``poll_interval_s``; a read error is logged, the device kept."""
        loop = asyncio.get_running_loop()
        next_poll = loop.time()
        while True:
            self.stats.polls += 1
            now = datetime.now(UTC)
            try:
                raw = await self._request(
                    app.read_property(self.address, sensor.object_id, sensor.property_id)
                )
            except Refused as exc:
                self.stats.read_errors += 1
                if self.stats.read_errors <= 10 or self.stats.read_errors % 1000 == 0:
                    log.error(
                        "BACnet %s/%s: cannot read %s %s: %s",
                        self.device.device_id,
                        sensor.sensor_id,
                        sensor.object_id,
                        sensor.property_id,
                        exc,
                    )
            else:
                reading = self._reading(sensor, raw, "good", now)
                await self._store([reading] if reading is not None else [])
            next_poll += self.settings.poll_interval_s
            delay = next_poll - loop.time()
            if delay < 0:  # fell behind (slow device): keep the rate, skip missed ticks
                next_poll, delay = loop.time(), 0.0
            await asyncio.sleep(delay)

    # -- shared --------------------------------------------------------------------------

    async def _request(self, call: Any) -> Any:
        """Await a bacpypes3 request: no answer → :class:`DeviceLost`; Error/Reject → Refused."""
        from bacpypes3.apdu import AbortPDU, ErrorRejectAbortNack

        try:
            return await asyncio.wait_for(call, self.answer_timeout_s)
        except TimeoutError:
            raise DeviceLost(f"no answer within {self.answer_timeout_s:g}s") from None
        except AbortPDU as exc:
            raise DeviceLost(f"request aborted ({_error_text(exc)})") from None
        except ErrorRejectAbortNack as exc:
            raise Refused(_error_text(exc)) from None
        except OSError as exc:
            raise DeviceLost(f"{type(exc).__name__}: {exc}") from None

    def _reading(self, sensor: SensorSpec, raw: Any, quality: str, now: datetime) -> Reading | None:
        value = number(raw)
        if value is None:
            self._malformed(sensor, f"value {raw!r} is not a number")
            return None
        if not math.isfinite(value) or not sensor.in_range(value):
            quality = "bad"
        self._seen.add(sensor.sensor_id)
        return self._make(sensor, now, value, quality)

    def _make(self, sensor: SensorSpec, ts: datetime, value: float | None, quality: str) -> Reading:
        return Reading.of(
            self.device,
            sensor,
            ts=ts,
            value=value,
            quality=quality,
            protocol="bacnet",
            ingested_at=ts,
            origin=f"bacnet://{self.address}/{sensor.object_id}/{sensor.property_id}",
        )

    def _malformed(self, sensor: SensorSpec, reason: str) -> None:
        self.stats.malformed += 1
        if self.stats.malformed <= 10 or self.stats.malformed % 1000 == 0:
            log.warning(
                "BACnet %s/%s (%s): %s; skipped",
                self.device.device_id,
                sensor.sensor_id,
                sensor.object_id,
                reason,
            )

    async def _mark_lost(self, reason: str, retry_s: float) -> None:
        """Record an outage once: one gap reading per sensor that had data."""
        self.stats.online[self.device.device_id] = False
        if self._lost:
            return
        log.warning(
            "BACnet %s: device %d at %s unavailable (%s); retrying in %.1fs",
            self.device.device_id,
            self.settings.device_instance,
            self.address,
            reason,
            retry_s,
        )
        if not self._ever_connected:
            self._lost = True
            return
        self._lost = True
        self.stats.outages += 1
        now = datetime.now(UTC)
        gaps = [self._make(s, now, None, "bad") for s in self.device.sensors]
        self.stats.gap_readings += len(gaps)
        await self._store(gaps)

    async def _store(self, readings: list[Reading]) -> None:
        label = f"BACnet {self.device.device_id}"
        accepted = await spool_readings(self.spool, readings, self.stats, label)
        self.stats.readings += accepted  # after the await: other tasks count meanwhile


def _check_names(sensor: SensorSpec) -> None:
    """ValueError naming the object type or property bacpypes3 does not know."""
    from bacpypes3.basetypes import PropertyIdentifier
    from bacpypes3.primitivedata import ObjectIdentifier

    try:
        ObjectIdentifier(sensor.object_id)
    except ValueError:
        raise ValueError(f"object_id {sensor.object_id!r}: unknown BACnet object type") from None
    try:
        PropertyIdentifier(sensor.property_id)
    except ValueError:
        raise ValueError(f"property_id {sensor.property_id!r}: unknown BACnet property") from None


def _address(text: str) -> Any:
    from bacpypes3.pdu import Address

    return Address(text)


@functools.cache
def _subscription_class() -> type:
    """bacpypes3's subscription context without its own renewal timer (we renew ourselves)."""
    from bacpypes3.service.cov import SubscriptionContextManager

    class Subscription(SubscriptionContextManager):
        async def refresh_subscription(self) -> None:
            await super().refresh_subscription()
            if self.refresh_subscription_handle is not None:
                self.refresh_subscription_handle.cancel()
                self.refresh_subscription_handle = None

    return Subscription


async def _leave(subscription: Any, polite: bool) -> None:
    """Forget the subscription; when stopping, also cancel it on the device (bounded)."""
    from bacpypes3.apdu import ErrorRejectAbortNack

    if not polite:
        with contextlib.suppress(Exception):
            await subscription.__aexit__(DeviceLost, DeviceLost("lost"), None)
        return
    with contextlib.suppress(Exception, ErrorRejectAbortNack):
        await asyncio.wait_for(subscription.__aexit__(None, None, None), 2.0)


class BacnetRunner(DeviceLoopRunner):
    """Runs one :class:`BacnetCollector` per device on an asyncio loop in its own thread."""

    def __init__(self, spool: Spool) -> None:
        self.spool = spool
        self.stats = BacnetStats()
        super().__init__(
            "bacnet",
            lambda device: BacnetCollector(device, self.spool, self.stats),
            10.0,
            online=self.stats.online,
        )
