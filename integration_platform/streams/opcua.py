"""OPC-UA: a subscription-based collector per device (asyncua ``Client``).

Each device gets one session with one subscription: a data-change monitored item per sensor
node, a server-side queue per item (so changes between two publishes are not collapsed) and
the source timestamp of every change as the reading's ``ts``. The status code gives the
quality: Good → ``good``, Uncertain → ``uncertain``, Bad → ``bad``.

Outages: asyncua's ``auto_reconnect`` reactivates a session and fills sequence gaps with
Republish after a network break, but after a *server restart* the session and its queues are
gone and the changes in between are lost. So every loss of an established session is recorded
as a gap (one reading per sensor with no value, quality ``bad``, at the moment of loss, like
Modbus), and once the session is back the window from each sensor's last seen change to now
is read from the server's history (HistoryRead, raw). A server without history for a node
answers ``BadHistoryOperationUnsupported``: the gap stays recorded and is logged. Values the
subscription and the history both deliver are dropped by the spool's (device, sensor, ts)
de-duplication.
"""

from __future__ import annotations

import asyncio
import contextlib
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
from integration_platform.streams.devices import DeviceSpec, OpcuaSettings, SensorSpec
from integration_platform.streams.readings import Reading
from integration_platform.streams.spool import Spool

log = logging.getLogger(__name__)


def quality_of(status: Any) -> str:
    """Our quality code for an OPC-UA StatusCode (``None``: the server omitted it, Good)."""
    if status is None:
        return "good"
    value = int(getattr(status, "value", status))
    severity = value >> 30  # top two bits: 00 good, 01 uncertain, 10/11 bad
    return ("good", "uncertain", "bad", "bad")[severity & 3]


def _utc(ts: datetime | None) -> datetime | None:
    if ts is None:
        return None
    return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)


def _number(value: Any) -> float | None:
    """The variant's value as a float; ``None`` when it is not a scalar number."""
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, int | float):
        return float(value)
    return None


@dataclass
class OpcuaStats(DeviceStats):
    notifications: int = 0
    reconnects: int = 0
    backfilled: int = 0
    history_unsupported: int = 0


class OpcuaCollector:
    """Subscribes to one device's sensor nodes and spools every change as a reading."""

    def __init__(self, device: DeviceSpec, spool: Spool, stats: OpcuaStats) -> None:
        self.device = device
        self.spool = spool
        self.stats = stats
        self.settings = device.opcua or OpcuaSettings()
        self.connected = asyncio.Event()  # set while a session with a subscription is up
        self._by_node: dict[Any, SensorSpec] = {}
        self._last_seen: dict[str, datetime] = {}  # sensor id -> newest source timestamp
        self._lost_at: datetime | None = None
        self._buffer: list[Reading] = []
        self._wake = asyncio.Event()
        self._notified_since_connect = asyncio.Event()

    # -- life cycle ----------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Connect (bounded exponential backoff), subscribe, and collect until ``stop``."""
        writer = asyncio.create_task(self._flush_loop(stop))
        backoff = Backoff(self.settings.reconnect_max_delay_s)
        try:
            while not stop.is_set():
                client = None
                try:
                    client = await self._connect()
                    backoff.reset()
                    await self._session(client, stop)
                except Exception as exc:  # keep trying: a collector must outlive a bad server
                    self._mark_lost(f"{type(exc).__name__}: {exc}")
                    log.warning(
                        "OPC-UA %s: %s unavailable (%s); retrying in %.1fs",
                        self.device.device_id,
                        self.device.endpoint,
                        exc,
                        backoff.delay,
                    )
                    await sleep_unless_stopped(stop, backoff.delay)
                    backoff.grow()
                finally:
                    self.connected.clear()
                    if client is not None:
                        with contextlib.suppress(Exception):
                            await asyncio.wait_for(client.disconnect(), 5)
        finally:
            self._wake.set()
            await writer

    async def _connect(self) -> Any:
        from asyncua import Client, ua
        from asyncua.crypto.security_policies import SecurityPolicyBasic256Sha256

        settings = self.settings
        client = Client(
            self.device.endpoint,
            timeout=settings.timeout_s,
            watchdog_intervall=1.0,
            auto_reconnect=True,
            reconnect_max_delay=settings.reconnect_max_delay_s,
        )
        security = settings.security
        if security.policy == "Basic256Sha256":
            await client.set_security(
                SecurityPolicyBasic256Sha256,
                certificate=security.certificate or "",
                private_key=security.private_key or "",
                server_certificate=security.server_certificate,
                mode=getattr(ua.MessageSecurityMode, security.mode),
            )
        if self.device.credentials is not None:
            user, password = self.device.credentials.resolve()
            if user:
                client.set_user(user)
            if password:
                client.set_password(password)
        await client.connect()
        return client

    async def _session(self, client: Any, stop: asyncio.Event) -> None:
        """Subscribe, then follow the session's state: losses become gaps, returns backfill."""
        from asyncua.client.ua_client import UaClientState

        await self._subscribe(client)
        self.connected.set()
        self.stats.online[self.device.device_id] = True
        log.info(
            "OPC-UA %s: subscribed to %d nodes at %s (publishing every %gms)",
            self.device.device_id,
            len(self._by_node),
            self.device.endpoint,
            self.settings.publishing_interval_ms,
        )
        backfill: asyncio.Task[None] | None = None
        if self._lost_at is not None:
            self.stats.reconnects += 1
            backfill = asyncio.create_task(self._backfill(client))
        try:
            async with client.subscribe_state() as states:
                while not stop.is_set():
                    with contextlib.suppress(TimeoutError):
                        await states.next_change(timeout=0.2)
                    state = client.state
                    if state is UaClientState.CONNECTED:
                        if self._lost_at is not None and (backfill is None or backfill.done()):
                            self.stats.reconnects += 1
                            self.connected.set()
                            self.stats.online[self.device.device_id] = True
                            backfill = asyncio.create_task(self._backfill(client))
                    elif state is UaClientState.DISCONNECTED:
                        raise ConnectionError("session closed and not reconnecting")
                    elif self._lost_at is None:
                        self.connected.clear()
                        self._mark_lost(f"connection state {state.value}")
        finally:
            if backfill is not None and not backfill.done():
                backfill.cancel()
                with contextlib.suppress(BaseException):
                    await backfill

    async def _subscribe(self, client: Any) -> None:
        settings = self.settings
        nodes = []
        self._by_node = {}
        for sensor in self.device.sensors:
            node = client.get_node(await _resolve(client, sensor.node_id or ""))
            self._by_node[node.nodeid] = sensor
            nodes.append(node)
        self._notified_since_connect.clear()
        subscription = await client.create_subscription(settings.publishing_interval_ms, self)
        handles = await subscription.subscribe_data_change(
            nodes,
            queuesize=settings.queue_size,
            sampling_interval=settings.sampling_interval_ms,
        )
        failed = [
            f"{node.nodeid.to_string()}: {handle}"
            for node, handle in zip(nodes, handles, strict=True)  # type: ignore[arg-type]
            if not isinstance(handle, int)
        ]
        if failed:  # a wrong node id is a registry error: say which, keep the others
            log.error("OPC-UA %s: cannot monitor %s", self.device.device_id, "; ".join(failed))

    # -- notifications -------------------------------------------------------------------

    def datachange_notification(self, node: Any, val: Any, data: Any) -> None:
        """asyncua's handler callback: one changed value of one monitored node."""
        sensor = self._by_node.get(node.nodeid)
        if sensor is None:
            return
        self.stats.notifications += 1
        self._notified_since_connect.set()
        reading = self.reading(sensor, data.monitored_item.Value)
        if reading is not None:
            self._queue([reading])

    def status_change_notification(self, status: Any) -> None:
        log.info("OPC-UA %s: subscription status %s", self.device.device_id, status)

    def reading(self, sensor: SensorSpec, datavalue: Any) -> Reading | None:
        """A :class:`Reading` of a DataValue; ``None`` (counted) when it holds no number."""
        now = datetime.now(UTC)
        ts = _utc(datavalue.SourceTimestamp) or _utc(datavalue.ServerTimestamp) or now
        quality = quality_of(datavalue.StatusCode)
        raw = datavalue.Value.Value if datavalue.Value is not None else None
        value = _number(raw)
        if value is None and quality != "bad":
            self.stats.malformed += 1
            if self.stats.malformed <= 10 or self.stats.malformed % 1000 == 0:
                log.warning(
                    "OPC-UA %s/%s: value %r is not a number; skipped",
                    self.device.device_id,
                    sensor.sensor_id,
                    raw,
                )
            return None
        if value is not None and (not math.isfinite(value) or not sensor.in_range(value)):
            quality = "bad"
        previous = self._last_seen.get(sensor.sensor_id)
        if previous is None or ts > previous:
            self._last_seen[sensor.sensor_id] = ts
        return self._make(sensor, ts, value, quality, now)

    def _make(
        self,
        sensor: SensorSpec,
        ts: datetime,
        value: float | None,
        quality: str,
        now: datetime,
    ) -> Reading:
        return Reading.of(
            self.device,
            sensor,
            ts=ts,
            value=value,
            quality=quality,
            protocol="opcua",
            ingested_at=now,
            origin=self.device.endpoint,
        )

    # -- outages -------------------------------------------------------------------------

    def _mark_lost(self, reason: str) -> None:
        """Record an outage once: one gap reading per sensor at the moment of loss."""
        self._notified_since_connect.clear()
        if self._lost_at is not None or not self._last_seen:
            return  # already recorded, or never had data (nothing to mark yet)
        now = datetime.now(UTC)
        self._lost_at = now
        self.stats.outages += 1
        self.stats.online[self.device.device_id] = False
        gaps = [self._make(s, now, None, "bad", now) for s in self.device.sensors]
        self.stats.gap_readings += len(gaps)
        self._queue(gaps)
        log.warning(
            "OPC-UA %s: connection lost (%s); gap recorded, reconnecting",
            self.device.device_id,
            reason,
        )

    async def _backfill(self, client: Any) -> None:
        """Read each sensor's history from its last seen change to now into the spool."""
        from asyncua import ua

        lost_at = self._lost_at
        assert lost_at is not None
        log.info(
            "OPC-UA %s: reconnected after %.1fs",
            self.device.device_id,
            (datetime.now(UTC) - lost_at).total_seconds(),
        )
        if not self.settings.history_backfill:
            self._lost_at = None
            return
        # The restored subscription sends each node's current value first: from then on the
        # subscription covers the present, so the history window can end at that moment.
        wait_s = 4 * self.settings.publishing_interval_ms / 1000 + 5.0
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._notified_since_connect.wait(), wait_s)
        end = datetime.now(UTC)
        found = 0
        unsupported: list[str] = []
        for node_id, sensor in list(self._by_node.items()):
            start = self._last_seen_before(sensor, lost_at)
            try:
                values = await client.get_node(node_id).read_raw_history(
                    start, end, return_bounds=False
                )
            except ua.uaerrors.BadHistoryOperationUnsupported:
                unsupported.append(sensor.sensor_id)
                continue
            except ua.UaStatusCodeError as exc:
                log.warning(
                    "OPC-UA %s/%s: history read failed (%s); the gap stays recorded",
                    self.device.device_id,
                    sensor.sensor_id,
                    exc,
                )
                continue
            readings = [r for dv in values if (r := self.reading(sensor, dv)) is not None]
            readings = [r for r in readings if start <= r.ts <= end]  # bounds, if any
            found += len(readings)
            accepted = await self._store(readings)
            self.stats.backfilled += accepted
        if unsupported:
            self.stats.history_unsupported += len(unsupported)
            log.warning(
                "OPC-UA %s: the server keeps no history for %s (BadHistoryOperationUnsupported);"
                " the gap from %s stays recorded",
                self.device.device_id,
                ", ".join(unsupported),
                lost_at.isoformat(timespec="seconds"),
            )
        log.info(
            "OPC-UA %s: backfilled the outage from history: %d values read",
            self.device.device_id,
            found,
        )
        self._lost_at = None

    def _last_seen_before(self, sensor: SensorSpec, lost_at: datetime) -> datetime:
        seen = self._last_seen.get(sensor.sensor_id)
        return min(seen, lost_at) if seen is not None else lost_at

    # -- spooling ------------------------------------------------------------------------

    def _queue(self, readings: list[Reading]) -> None:
        self._buffer.extend(readings)
        self._wake.set()

    async def _flush_loop(self, stop: asyncio.Event) -> None:
        """Append what the callbacks queued, one spool transaction per wake-up."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            await self._store_buffer()
            if stop.is_set() and not self._buffer:
                return

    async def _store_buffer(self) -> None:
        batch, self._buffer = self._buffer, []
        self.stats.readings += await self._store(batch)

    async def _store(self, readings: list[Reading]) -> int:
        label = f"OPC-UA {self.device.device_id}"
        return await spool_readings(self.spool, readings, self.stats, label)


async def _resolve(client: Any, text: str) -> Any:
    """A NodeId with a namespace index: ``nsu=<uri>;`` ids are looked up on the server."""
    from asyncua import ua

    node_id = ua.NodeId.from_string(text)
    uri = getattr(node_id, "NamespaceUri", None)
    if not uri:
        return node_id
    index = await client.get_namespace_index(uri)
    return ua.NodeId(node_id.Identifier, index, node_id.NodeIdType)


class OpcuaRunner(DeviceLoopRunner):
    """Runs one :class:`OpcuaCollector` per device on an asyncio loop in its own thread."""

    def __init__(self, spool: Spool) -> None:
        self.spool = spool
        self.stats = OpcuaStats()
        super().__init__(
            "opcua",
            lambda device: OpcuaCollector(device, self.spool, self.stats),
            10.0,
            online=self.stats.online,
        )

    def _tidy(self, timeout: float) -> None:
        # asyncua leaves helper tasks (publish loop) behind a session that ended in an outage.
        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(_cancel_leftovers(), self._loop).result(timeout)


async def _cancel_leftovers() -> None:
    tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
