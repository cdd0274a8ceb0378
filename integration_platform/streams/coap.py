"""CoAP (aiocoap): observe each sensor's resource, poll where observe is not offered.

Why the loop per resource looks like this:

- An observation ends *silently* when the server restarts (RELIABILITY.md): the client only
  sees notifications stop. So an observation that stays silent longer than ``reregister_s``
  (default: the last notification's Max-Age + 5 s, RFC 7641's freshness rule) is registered
  again, and so is one that ends with an error or a cancellation by the server.
- A resource that answers without the Observe option cannot be observed: it is polled every
  ``poll_interval_s`` and offered observe again every ``observe_retry_s``.
- Observe reports the latest state, not every change: a server that changes faster than it
  notifies sends only the newest value (RFC 7641, eventual consistency). Notifications are
  taken through a callback, not aiocoap's async iterator, because the iterator keeps only
  the newest unread notification.

Payloads are a plain number (text) or JSON: a number, or an object read with the device's
payload paths. A reading takes the payload's timestamp when it has one, else the arrival time.
A payload that cannot be read is counted and logged with device and resource, never fatal.
Each outage of a resource is recorded once as a gap reading (no value, quality ``bad``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from integration_platform.streams.aiorunner import (
    Backoff,
    DeviceLoopRunner,
    DeviceStats,
    spool_readings,
)
from integration_platform.streams.devices import CoapSettings, DeviceSpec, SensorSpec
from integration_platform.streams.mqtt import MalformedPayload, get_path, parse_timestamp
from integration_platform.streams.readings import Reading
from integration_platform.streams.spool import Spool

log = logging.getLogger(__name__)

DEFAULT_MAX_AGE_S = 60.0  # RFC 7252: a response without Max-Age is fresh for 60 s
SILENCE_MARGIN_S = 5.0


class RequestFailed(RuntimeError):
    """A request got no usable answer (network error, timeout, error code)."""


# -- payloads (pure) -----------------------------------------------------------------------


def _number(raw: Any) -> float | None:
    if raw is None:
        return None  # a gap; the writer accepts it only with quality bad
    if isinstance(raw, bool) or not isinstance(raw, int | float | str):
        raise MalformedPayload(f"value {raw!r} is not a number")
    try:
        return float(raw)
    except ValueError:
        raise MalformedPayload(f"value {raw!r} is not a number") from None


def parse_payload(
    device: DeviceSpec, sensor: SensorSpec, payload: bytes, received_at: datetime
) -> Reading:
    """The reading in one CoAP response; :class:`MalformedPayload` says why there is none."""
    paths = (device.coap or CoapSettings()).payload
    try:
        text = payload.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise MalformedPayload(f"not UTF-8 text: {payload[:60]!r}") from None
    if not text:
        raise MalformedPayload("empty payload")
    try:
        data = json.loads(text)
    except ValueError:
        raise MalformedPayload(f"neither a number nor JSON: {text[:60]!r}") from None
    ts, quality = received_at, "good"
    if isinstance(data, dict):
        try:
            raw = get_path(data, paths.value)
        except KeyError:
            raise MalformedPayload(f"no value at {paths.value!r}") from None
        if paths.ts:
            with contextlib.suppress(KeyError):
                ts = parse_timestamp(get_path(data, paths.ts), paths.ts_unit)
        if paths.quality:
            with contextlib.suppress(KeyError):
                quality = get_path(data, paths.quality)
            if not isinstance(quality, str):
                raise MalformedPayload(f"quality {quality!r} is not text")
    else:
        raw = data
    value = _number(raw)
    if value is not None and math.isfinite(value) and not sensor.in_range(value):
        quality = "bad"
    return Reading.of(
        device,
        sensor,
        ts=ts,
        value=value,
        quality=quality,
        protocol="coap",
        ingested_at=received_at,
        origin=resource_uri(device, sensor),
    )


def resource_uri(device: DeviceSpec, sensor: SensorSpec) -> str:
    host, port = device.host_port
    return f"coap://{host}:{port}{sensor.resource or '/'}"


# -- collecting ----------------------------------------------------------------------------


@dataclass
class CoapStats(DeviceStats):
    notifications: int = 0
    polls: int = 0
    failed_requests: int = 0
    registrations: int = 0
    reregistrations: int = 0
    polled_resources: int = 0  # resources currently polled because observe was not offered


class CoapCollector:
    """Follows every sensor resource of one device; one aiocoap client context per device."""

    def __init__(self, device: DeviceSpec, spool: Spool, stats: CoapStats) -> None:
        self.device = device
        self.spool = spool
        self.stats = stats
        self.settings = device.coap or CoapSettings()
        self._seen: set[str] = set()  # sensors that delivered a value
        self._lost: set[str] = set()  # sensors whose outage is recorded

    async def run(self, stop: asyncio.Event) -> None:
        from aiocoap import Context

        context = await Context.create_client_context()
        log.info(
            "CoAP %s: %s %d resources at %s",
            self.device.device_id,
            "observing" if self.settings.observe else "polling",
            len(self.device.sensors),
            self.device.endpoint,
        )
        tasks = [asyncio.create_task(self._follow(context, s)) for s in self.device.sensors]
        try:
            await stop.wait()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(context.shutdown(), 5)

    async def _follow(self, context: Any, sensor: SensorSpec) -> None:
        """Observe (re-registering as needed) or poll one resource until cancelled."""
        loop = asyncio.get_running_loop()
        settings = self.settings
        backoff = Backoff(settings.reconnect_max_delay_s)
        observe_again_at = 0.0
        polled = False
        while True:
            try:
                if settings.observe and loop.time() >= observe_again_at:
                    outcome = await self._observe(context, sensor)
                    backoff.reset()
                    if outcome == "not observable":
                        observe_again_at = loop.time() + settings.observe_retry_s
                        if not polled:
                            polled = True
                            self.stats.polled_resources += 1
                            log.info(
                                "CoAP %s: %s cannot be observed; polling every %gs",
                                self.device.device_id,
                                resource_uri(self.device, sensor),
                                settings.poll_interval_s,
                            )
                        await asyncio.sleep(settings.poll_interval_s)
                    else:
                        if polled:
                            polled = False
                            self.stats.polled_resources -= 1
                        self.stats.reregistrations += 1
                        log.info(
                            "CoAP %s: observation of %s %s; registering again",
                            self.device.device_id,
                            resource_uri(self.device, sensor),
                            outcome,
                        )
                    continue
                await self._poll(context, sensor)
                backoff.reset()
                await asyncio.sleep(settings.poll_interval_s)
            except RequestFailed as exc:
                self.stats.failed_requests += 1
                await self._mark_lost(sensor, str(exc), backoff.delay)
                await asyncio.sleep(backoff.delay)
                backoff.grow()

    async def _observe(self, context: Any, sensor: SensorSpec) -> str:
        """One observation from registration to its end; returns why it ended."""
        from aiocoap import GET, Message

        items: asyncio.Queue[Any] = asyncio.Queue()
        request = context.request(
            Message(code=GET, uri=resource_uri(self.device, sensor), observe=0)
        )
        observation = request.observation
        # Callbacks see every notification in arrival order; registered before the first
        # answer so none slips between the answer and the registration.
        observation.register_callback(items.put_nowait, _suppress_deprecation=True)
        observation.register_errback(items.put_nowait, _suppress_deprecation=True)
        self.stats.registrations += 1
        try:
            response = await self._answer(request, sensor)
            await self._take(sensor, [response])
            if response.opt.observe is None:
                return "not observable"
            max_age = response.opt.max_age
            while True:
                silence = self.settings.reregister_s or (
                    (max_age if max_age is not None else DEFAULT_MAX_AGE_S) + SILENCE_MARGIN_S
                )
                try:
                    first = await asyncio.wait_for(items.get(), silence)
                except TimeoutError:
                    return f"silent for {silence:g}s"
                batch = [first]
                while not items.empty():
                    batch.append(items.get_nowait())
                messages = [m for m in batch if not isinstance(m, BaseException)]
                self.stats.notifications += len(messages)
                good = [m for m in messages if m.code.is_successful()]
                await self._take(sensor, good)
                if good and good[-1].opt.max_age is not None:
                    max_age = good[-1].opt.max_age
                if len(good) < len(messages):
                    bad = next(m for m in messages if not m.code.is_successful())
                    raise RequestFailed(f"the server ended the observation with {bad.code}")
                errors = [e for e in batch if isinstance(e, BaseException)]
                if errors:
                    return _ending(errors[0])
        finally:
            if not observation.cancelled:
                observation.cancel()
            if not request.response.done():
                request.response.cancel()

    async def _poll(self, context: Any, sensor: SensorSpec) -> None:
        from aiocoap import GET, Message

        self.stats.polls += 1
        request = context.request(Message(code=GET, uri=resource_uri(self.device, sensor)))
        await self._take(sensor, [await self._answer(request, sensor)])

    async def _answer(self, request: Any, sensor: SensorSpec) -> Any:
        """The first response, or :class:`RequestFailed` naming what went wrong."""
        from aiocoap.error import Error

        try:
            response = await asyncio.wait_for(request.response, self.settings.timeout_s)
        except TimeoutError:
            raise RequestFailed(f"no answer within {self.settings.timeout_s:g}s") from None
        except (Error, OSError) as exc:
            raise RequestFailed(_describe(exc)) from None
        if not response.code.is_successful():
            raise RequestFailed(f"the server answered {response.code}")
        return response

    # -- readings ------------------------------------------------------------------------

    async def _take(self, sensor: SensorSpec, messages: list[Any]) -> None:
        """Parse and spool the payloads; malformed ones are counted and logged."""
        now = datetime.now(UTC)
        readings: list[Reading] = []
        for message in messages:
            try:
                readings.append(parse_payload(self.device, sensor, message.payload, now))
            except MalformedPayload as exc:
                self.stats.malformed += 1
                if self.stats.malformed <= 10 or self.stats.malformed % 1000 == 0:
                    log.warning(
                        "CoAP %s/%s: payload from %s skipped: %s",
                        self.device.device_id,
                        sensor.sensor_id,
                        resource_uri(self.device, sensor),
                        exc,
                    )
        if messages:
            self._seen.add(sensor.sensor_id)
            self.stats.online[self.device.device_id] = True
            if sensor.sensor_id in self._lost:
                self._lost.discard(sensor.sensor_id)
                log.info(
                    "CoAP %s: %s answers again",
                    self.device.device_id,
                    resource_uri(self.device, sensor),
                )
        await self._store(readings)

    async def _mark_lost(self, sensor: SensorSpec, reason: str, retry_s: float) -> None:
        """Record an outage of one resource once: a gap reading at the moment of loss."""
        self.stats.online[self.device.device_id] = False
        if sensor.sensor_id in self._lost:
            return
        self._lost.add(sensor.sensor_id)
        log.warning(
            "CoAP %s/%s: %s failed (%s); retrying in %.1fs",
            self.device.device_id,
            sensor.sensor_id,
            resource_uri(self.device, sensor),
            reason,
            retry_s,
        )
        if sensor.sensor_id not in self._seen:
            return  # never had data: nothing to mark yet
        self.stats.outages += 1
        self.stats.gap_readings += 1
        now = datetime.now(UTC)
        gap = Reading.of(
            self.device,
            sensor,
            ts=now,
            value=None,
            quality="bad",
            protocol="coap",
            ingested_at=now,
            origin=resource_uri(self.device, sensor),
        )
        await self._store([gap])

    async def _store(self, readings: list[Reading]) -> None:
        label = f"CoAP {self.device.device_id}"
        accepted = await spool_readings(self.spool, readings, self.stats, label)
        self.stats.readings += accepted  # after the await: other tasks count meanwhile


def _ending(error: BaseException) -> str:
    """Why an observation ended; network failures raise (they start a backoff)."""
    from aiocoap.error import NotObservable, ObservationCancelled

    if isinstance(error, NotObservable | ObservationCancelled):
        return "was ended by the server"
    raise RequestFailed(_describe(error))


def _describe(error: BaseException) -> str:
    """``NetworkError: [Errno 111] Connection refused``: aiocoap's own text names no cause."""
    detail = error.args[0] if error.args else str(error)
    return f"{type(error).__name__}: {detail}"


class CoapRunner(DeviceLoopRunner):
    """Runs one :class:`CoapCollector` per device on an asyncio loop in its own thread."""

    def __init__(self, spool: Spool) -> None:
        self.spool = spool
        self.stats = CoapStats()
        super().__init__(
            "coap",
            lambda device: CoapCollector(device, self.spool, self.stats),
            10.0,
            online=self.stats.online,
        )
