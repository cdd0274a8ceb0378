"""The collector process: every device of a registry -> one spool -> one Delta writer.

Threads: paho's network thread and an ingest thread per MQTT broker, an asyncio loop for the
Modbus pollers, another each for the OPC-UA sessions, CoAP observations and BACnet devices,
the writer's flush loop, and the main thread (registry reloads, progress logs, signals). On
stop the order is: MQTT (spool and acknowledge what arrived, keep the session), Modbus,
OPC-UA, CoAP, BACnet, then the writer drains the spool into the lake, then the spool closes.
"""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from integration_platform.streams.devices import DeviceSpec, Registry, RegistryWatcher
from integration_platform.streams.readings import Reading, ReadingColumns
from integration_platform.streams.spool import DEFAULT_MAX_BYTES, AppendResult, Spool, spool_path

log = logging.getLogger(__name__)

COLLECTED = ("mqtt", "modbus", "opcua", "coap", "bacnet")


@dataclass
class CollectorConfig:
    devices_file: Path
    data_dir: Path
    lake_root: str
    flush_rows: int = 5000
    # Readings are queryable within about this long plus a commit; the compaction schedule
    # merges the small files that frequent commits leave.
    flush_seconds: float = 2.0
    client_id: str | None = None  # default: the registry's, else ip-collector-<host>
    app_id: str | None = None  # default: collector:<client id>
    shared_group: str | None = None
    spool_max_bytes: int = DEFAULT_MAX_BYTES
    progress_seconds: float = 10.0
    reload_seconds: float = 2.0
    drain_timeout: float = 30.0
    # Alerts and device status in the state DB. None: INTEGRATION_PLATFORM_DB_URL, else the
    # embedded SQLite file under data_dir (as everywhere in the platform).
    state_url: str | None = None
    state_enabled: bool = True
    heartbeat_seconds: float = 5.0
    offline_after_seconds: float = 60.0


class ReadingSink:
    """What the protocol runners append to: the spool first (durable, fsynced), then the
    alert evaluation, so an alert is never raised for a reading the platform could lose and
    every runner gets alerts without knowing about them."""

    def __init__(self, spool: Spool, state: Any | None = None) -> None:
        self.spool = spool
        self.state = state  # a StateReporter, or None without the state DB

    def append(self, readings: Sequence[Reading]) -> AppendResult:
        result = self.spool.append(readings)  # raises SpoolFullError: not accepted, not seen
        if self.state is not None and readings:
            self.state.observe(readings)
        return result

    def append_columns(self, columns: ReadingColumns) -> AppendResult:
        """:meth:`append` for readings in columns (the MQTT hot path): no object per reading."""
        result = self.spool.append_columns(columns)
        if self.state is not None and len(columns):
            self.state.observe_columns(columns)
        return result

    def __getattr__(self, name: str) -> Any:
        return getattr(self.spool, name)


class Collector:
    def __init__(self, config: CollectorConfig) -> None:
        self.config = config
        self.watcher = RegistryWatcher(Path(config.devices_file))
        self.registry: Registry = self.watcher.load()  # a broken registry stops the start
        settings = self.registry.collector
        self.client_id = config.client_id or settings.client_id or f"ip-collector-{_host()}"
        self.app_id = config.app_id or f"collector:{self.client_id}"
        self.spool = Spool(
            spool_path(Path(config.data_dir), self.app_id),
            self.app_id,
            max_bytes=config.spool_max_bytes,
        )
        from integration_platform.streams.bacnet import BacnetRunner
        from integration_platform.streams.coap import CoapRunner
        from integration_platform.streams.modbus import ModbusRunner
        from integration_platform.streams.opcua import OpcuaRunner
        from integration_platform.streams.writer import DeltaWriter

        self.writer = DeltaWriter(
            self.spool,
            config.lake_root,
            flush_rows=config.flush_rows,
            flush_seconds=config.flush_seconds,
        )
        self.state = self._state_reporter() if config.state_enabled else None
        self.sink = ReadingSink(self.spool, self.state)
        self.modbus = ModbusRunner(self.sink)  # type: ignore[arg-type]
        self.opcua = OpcuaRunner(self.sink)  # type: ignore[arg-type]
        self.coap = CoapRunner(self.sink)  # type: ignore[arg-type]
        self.bacnet = BacnetRunner(self.sink)  # type: ignore[arg-type]
        self.mqtt: dict[Any, Any] = {}  # BrokerConfig -> MqttCollector
        self._writer_stop = threading.Event()
        self._writer_thread = threading.Thread(
            target=self.writer.run,
            args=(self._writer_stop,),
            kwargs={"drain_timeout": config.drain_timeout},
            name="delta-writer",
            daemon=True,
        )
        self._started = time.monotonic()

    # -- life cycle ---------------------------------------------------------------------

    def start(self) -> None:
        log.info(
            "collector %s: %d devices from %s; spool %s (%d pending); lake %s",
            self.client_id,
            len(self.registry.devices),
            self.config.devices_file,
            self.spool.path,
            self.spool.pending,
            self.config.lake_root,
        )
        if self.state is not None:
            self.state.start()
        self.writer.warm_up()
        self._writer_thread.start()
        self.modbus.start()
        self.opcua.start()
        self.coap.start()
        self.bacnet.start()
        self._apply(self.registry)

    def run(self, stop: threading.Event) -> None:
        """Start, then reload and report until ``stop`` is set; then shut down cleanly."""
        next_progress = time.monotonic() + self.config.progress_seconds
        try:
            self.start()
            while not stop.wait(self.config.reload_seconds):
                registry = self.watcher.check()
                if registry is not None:
                    self._apply(registry)
                    self.registry = registry
                    if self.state is not None:
                        self.state.update_registry(registry)
                if time.monotonic() >= next_progress:
                    self.report()
                    next_progress = time.monotonic() + self.config.progress_seconds
        finally:
            self.shutdown()

    def shutdown(self) -> None:
        log.info("collector stopping: spooling what arrived, then flushing to the lake")
        for collector in self.mqtt.values():
            collector.stop()
        self.modbus.stop()
        self.opcua.stop()
        self.coap.stop()
        self.bacnet.stop()
        self._writer_stop.set()
        if self._writer_thread.ident is not None:  # started
            self._writer_thread.join(self.config.drain_timeout + 10)
        if self.state is not None:
            self.state.stop()
        self.report()
        self.spool.close()
        log.info("collector stopped")

    def wait_ready(self, timeout: float = 10.0) -> bool:
        """True once every MQTT session has its subscriptions confirmed."""
        deadline = time.monotonic() + timeout
        return all(c.ready.wait(max(0.0, deadline - time.monotonic())) for c in self.mqtt.values())

    def _state_reporter(self) -> Any:
        import os

        from integration_platform.settings import DATA_DIR_VAR
        from integration_platform.state.engine import database_url
        from integration_platform.streams.device_state import StateReporter

        url = self.config.state_url or database_url(
            {**os.environ, DATA_DIR_VAR: str(self.config.data_dir)}
        )
        return StateReporter(
            url,
            self.registry,
            reporter_id=self.client_id,
            heartbeat_s=self.config.heartbeat_seconds,
            offline_after_s=self.config.offline_after_seconds,
            collected=COLLECTED,
        )

    # -- registry -----------------------------------------------------------------------

    def _apply(self, registry: Registry) -> None:
        from integration_platform.streams.mqtt import BrokerConfig, MqttCollector

        for device in registry.devices:
            if device.enabled and device.protocol not in COLLECTED:
                log.warning(
                    "device %s: %s collection is not available in this version; skipped",
                    device.device_id,
                    device.protocol,
                )
        groups: dict[BrokerConfig, list[DeviceSpec]] = {}
        for device in registry.enabled("mqtt"):
            groups.setdefault(BrokerConfig.of(device), []).append(device)
        for broker in list(self.mqtt):
            if broker not in groups:
                self.mqtt.pop(broker).stop()
        settings = registry.collector
        for broker, devices in groups.items():
            if broker in self.mqtt:
                self.mqtt[broker].update(registry, devices)
                continue
            collector = MqttCollector(
                broker,
                registry,
                devices,
                self.sink,  # type: ignore[arg-type]
                # Client ids are unique per broker, so every broker gets the same fixed id.
                client_id=self.client_id,
                session_expiry_s=settings.session_expiry_s,
                shared_group=self.config.shared_group or settings.shared_group,
                keepalive_s=settings.keepalive_s,
            )
            collector.start()
            self.mqtt[broker] = collector
        self.modbus.sync(registry.enabled("modbus"))
        self.opcua.sync(registry.enabled("opcua"))
        self.coap.sync(registry.enabled("coap"))
        self.bacnet.sync(registry.enabled("bacnet"))

    # -- progress -----------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        spool = self.spool.stats()
        mqtt: dict[str, Any] = {}
        for broker, collector in self.mqtt.items():
            stats = asdict(collector.stats)
            stats.pop("problems")
            stats["sparkplug"] = asdict(collector.sparkplug.stats)
            mqtt[broker.label()] = stats
        return {
            "client_id": self.client_id,
            "app_id": self.app_id,
            "uptime_s": round(time.monotonic() - self._started, 1),
            "mqtt": mqtt,
            "modbus": asdict(self.modbus.stats),
            "opcua": asdict(self.opcua.stats),
            "coap": asdict(self.coap.stats),
            "bacnet": asdict(self.bacnet.stats),
            "spool": asdict(spool),
            "writer": asdict(self.writer.stats),
            "state": asdict(self.state.stats) if self.state is not None else None,
        }

    def mqtt_stats(self) -> Any:
        """MQTT counters summed over the brokers (``problems``: the latest skipped reasons)."""
        from integration_platform.streams.mqtt import MqttStats

        total = MqttStats()
        for collector in list(self.mqtt.values()):
            for name, value in asdict(collector.stats).items():
                if name == "problems":
                    total.problems.extend(value)
                else:
                    setattr(total, name, getattr(total, name) + value)
        return total

    def report(self) -> None:
        status = self.status()
        mqtt = status["mqtt"].values()
        w, s, m, o = status["writer"], status["spool"], status["modbus"], status["opcua"]
        log.info(
            "progress: mqtt %d msgs %d readings %d dup %d malformed | modbus %d polls %d gaps | "
            "opcua %d readings %d gaps %d backfilled | coap %d readings %d gaps %d malformed | "
            "bacnet %d readings %d gaps %d malformed | "
            "spool %d pending | lake %d rows %d quarantined %d batches %d errors",
            sum(x["messages"] for x in mqtt),
            sum(x["readings"] for x in mqtt),
            sum(x["duplicates"] for x in mqtt),
            sum(x["malformed"] + x["unknown_topic"] for x in mqtt),
            m["polls"],
            m["gap_readings"],
            o["readings"],
            o["gap_readings"],
            o["backfilled"],
            status["coap"]["readings"],
            status["coap"]["gap_readings"],
            status["coap"]["malformed"],
            status["bacnet"]["readings"],
            status["bacnet"]["gap_readings"],
            status["bacnet"]["malformed"],
            s["pending_rows"],
            w["rows_written"],
            w["rows_quarantined"],
            w["batches_written"],
            w["lake_errors"],
        )
        path = self.spool.path.with_suffix(".status.json")
        with contextlib.suppress(OSError):
            path.write_text(json.dumps(status, indent=2, default=str))


def _host() -> str:
    return "".join(c if c.isalnum() or c in "-_" else "-" for c in socket.gethostname())[:40]
