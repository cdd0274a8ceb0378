"""One asyncio loop in its own thread running one collector task per device.

The CoAP and BACnet collectors share this shape with the Modbus and OPC-UA runners: the
collector's main thread calls :meth:`DeviceLoopRunner.sync` with the enabled devices of a
(re)loaded registry, and only devices that were added, removed or changed are restarted, so a
registry edit never interrupts the other devices.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, Protocol

from integration_platform.streams.devices import DeviceSpec

log = logging.getLogger(__name__)


class DeviceCollector(Protocol):
    async def run(self, stop: asyncio.Event) -> None: ...


class DeviceLoopRunner:
    """Runs ``make(device)`` collectors on a private event loop (thread ``name``)."""

    def __init__(
        self, name: str, make: Callable[[DeviceSpec], DeviceCollector], stop_timeout: float
    ) -> None:
        self.name = name
        self._make = make
        self._stop_timeout = stop_timeout
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
                self._forget(device_id)
        for device_id, spec in wanted.items():
            if device_id not in self._collectors:
                stop = asyncio.Event()  # binds to the loop on first use (3.10+)
                collector = self._make(spec)
                future = asyncio.run_coroutine_threadsafe(
                    _guarded(self.name, device_id, collector.run(stop)), self._loop
                )
                self._collectors[device_id] = (spec, stop, future)

    def _forget(self, device_id: str) -> None:
        """Hook: drop per-device state (e.g. the online flag) of a removed device."""

    @property
    def devices(self) -> list[str]:
        return sorted(self._collectors)

    def stop(self) -> None:
        if self._thread.ident is None:  # never started
            return
        self.sync([])
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(self._stop_timeout)


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
