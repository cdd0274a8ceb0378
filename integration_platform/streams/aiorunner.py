"""One asyncio loop in its own thread running one collector task per device.

The Modbus, OPC-UA, CoAP and BACnet collectors share this shape: the collector's main thread
calls :meth:`DeviceLoopRunner.sync` with the enabled devices of a (re)loaded registry, and only
devices that were added, removed or changed are restarted, so a registry edit never interrupts
the other devices. The collectors on these loops also share their reconnect backoff
(:class:`Backoff`), a sleep that ends when they are stopped, and how a batch reaches the spool
(:func:`spool_readings`) and the counters every one of them keeps (:class:`DeviceStats`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from integration_platform.streams.devices import DeviceSpec
from integration_platform.streams.readings import Reading
from integration_platform.streams.spool import Spool, SpoolFullError

log = logging.getLogger(__name__)

FIRST_RETRY_S = 1.0  # first delay of a reconnect backoff (doubles up to the device's cap)


class DeviceCollector(Protocol):
    async def run(self, stop: asyncio.Event) -> None: ...


class DeviceLoopRunner:
    """Runs ``make(device)`` collectors on a private event loop (thread ``name``).

    ``online``, when given, is the collectors' online flag per device: a removed device's flag
    is dropped with it.
    """

    def __init__(
        self,
        name: str,
        make: Callable[[DeviceSpec], DeviceCollector],
        stop_timeout: float,
        *,
        online: dict[str, bool] | None = None,
    ) -> None:
        self.name = name
        self._make = make
        self._stop_timeout = stop_timeout
        self._online = online
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name=name, daemon=True)
        self._collectors: dict[str, tuple[DeviceSpec, asyncio.Event, Any]] = {}

    def start(self) -> None:
        self._thread.start()

    def sync(self, devices: Sequence[DeviceSpec]) -> None:
        """Start collectors for new or changed devices, stop those removed or changed."""
        wanted = {d.device_id: d for d in devices}
        for device_id, (spec, stop, future) in list(self._collectors.items()):
            if wanted.get(device_id) != spec:
                self._loop.call_soon_threadsafe(stop.set)
                _wait(future, self._stop_timeout)
                del self._collectors[device_id]
                if self._online is not None:
                    self._online.pop(device_id, None)
        for device_id, spec in wanted.items():
            if device_id not in self._collectors:
                stop = asyncio.Event()  # binds to the loop on first use (3.10+)
                collector = self._make(spec)
                future = asyncio.run_coroutine_threadsafe(
                    _guarded(self.name, device_id, collector.run(stop)), self._loop
                )
                self._collectors[device_id] = (spec, stop, future)

    @property
    def devices(self) -> list[str]:
        return sorted(self._collectors)

    def stop(self, timeout: float | None = None) -> None:
        if self._thread.ident is None:  # never started
            return
        timeout = self._stop_timeout if timeout is None else timeout
        self.sync([])
        self._tidy(timeout)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout)

    def _tidy(self, timeout: float) -> None:
        """Hook: clean up the loop after its collectors stopped, before the loop stops."""


async def _guarded(name: str, device_id: str, run: Coroutine[Any, Any, None]) -> None:
    """Log a collector that ended with an error: it must not vanish without a trace."""
    try:
        await run
    except asyncio.CancelledError:
        raise
    except BaseException:  # bacpypes3 raises BaseException subclasses for protocol errors
        log.exception("%s collector of %s stopped", name, device_id)


def _wait(future: Any, timeout: float) -> None:
    # A failure was already logged by _guarded; a slow stop is not an error.
    deadline = time.monotonic() + timeout
    with contextlib.suppress(Exception):
        future.result(max(0.0, deadline - time.monotonic()))


# -- shared by the collectors ----------------------------------------------------------------


class Backoff:
    """Reconnect delays: 1 s, doubled after every failure up to ``cap``, 1 s again on success."""

    def __init__(self, cap: float) -> None:
        self.cap = cap
        self.delay = FIRST_RETRY_S

    def reset(self) -> None:
        self.delay = FIRST_RETRY_S

    def grow(self) -> None:
        self.delay = min(self.delay * 2, self.cap)


async def sleep_unless_stopped(stop: asyncio.Event, seconds: float) -> None:
    """Sleep ``seconds``, or less when ``stop`` is set meanwhile."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=seconds)


@dataclass
class DeviceStats:
    """Counters the device collectors share; each protocol's stats add their own."""

    readings: int = 0
    duplicates: int = 0
    malformed: int = 0
    gap_readings: int = 0
    outages: int = 0
    dropped_spool_full: int = 0
    online: dict[str, bool] = field(default_factory=dict)


async def spool_readings(
    spool: Spool, readings: list[Reading], stats: DeviceStats, label: str
) -> int:
    """Append ``readings`` off the event loop; how many were new.

    A full spool drops the batch (counted and logged as ``<label>: readings dropped``) and
    collecting goes on: the outage shows in the data as missing readings, not as a crash.
    """
    if not readings:
        return 0
    try:
        result = await asyncio.to_thread(spool.append, readings)
    except SpoolFullError as exc:
        stats.dropped_spool_full += len(readings)
        log.error("%s: readings dropped: %s", label, exc)
        return 0
    stats.duplicates += result.duplicates
    return result.accepted
