"""Helpers for the stream tests: an independent Delta reader, MQTT helpers, unique names,
numbered readings, and collectors run against in-process protocol peers (free ports, waiting,
start and stop).

The reader replays ``_delta_log`` itself and reads the data files with pyarrow, so a table is
checked without deltalake (the library that wrote it).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

import pyarrow as pa
import pyarrow.parquet as pq

from integration_platform.streams.readings import Reading

if TYPE_CHECKING:
    from integration_platform.streams.collector import Collector

MQTT_HOST = "127.0.0.1"
MQTT_PORT = 1883


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def delta_log_actions(table: Path) -> list[dict]:
    """Every action of every commit, oldest first (checkpoint files are read as well)."""
    log = table / "_delta_log"
    actions: list[dict] = []
    checkpoint_version = -1
    last = log / "_last_checkpoint"
    if last.exists():
        checkpoint_version = json.loads(last.read_text())["version"]
        for part in sorted(log.glob(f"{checkpoint_version:020d}.checkpoint*.parquet")):
            for row in pq.read_table(part).to_pylist():
                actions.extend({k: v} for k, v in row.items() if v is not None)
    for commit in sorted(log.glob("*.json")):
        if int(commit.stem) <= checkpoint_version:
            continue
        for line in commit.read_text().splitlines():
            if line.strip():
                actions.append(json.loads(line))
    return actions


def read_delta_independently(table: Path) -> pa.Table:
    """The table's live rows (adds minus removes), with partition values as columns."""
    live: dict[str, dict] = {}
    for action in delta_log_actions(table):
        if "add" in action:
            live[action["add"]["path"]] = action["add"]
        elif "remove" in action:
            live.pop(action["remove"]["path"], None)
    pieces = []
    for path, add in live.items():
        piece = pq.ParquetFile(table / unquote(path)).read()  # no hive path inference
        for name, text in (add.get("partitionValues") or {}).items():
            value = date.fromisoformat(text) if name == "date" and text else text
            kind = pa.date32() if name == "date" else pa.string()
            piece = piece.append_column(name, pa.array([value] * piece.num_rows, type=kind))
        pieces.append(piece)
    if not pieces:
        return pa.table({})
    return pa.concat_tables(pieces, promote_options="default")


def transaction_versions(table: Path) -> dict[str, int]:
    """``appId -> version`` from the log's txn actions (the last one wins)."""
    versions: dict[str, int] = {}
    for action in delta_log_actions(table):
        if "txn" in action:
            versions[action["txn"]["appId"]] = action["txn"]["version"]
    return versions


def wait_for(predicate: Callable[[], bool], timeout: float, interval: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


def free_port() -> int:
    """A loopback TCP port nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def free_udp_port() -> int:
    """A loopback UDP port nothing is bound to right now (CoAP, BACnet)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def wait_until(
    predicate: Callable[[], Any], timeout: float = 15.0, what: str = "condition"
) -> None:
    """Poll ``predicate`` while the loop runs the other tasks; fail after ``timeout``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"{what} not reached in {timeout}s")
        await asyncio.sleep(0.01)


@contextlib.asynccontextmanager
async def running(collector: Any, stop_timeout: float = 10.0) -> AsyncIterator[None]:
    """``collector.run(stop)`` as a task for the block; stopped and awaited when it ends.

    When the block fails the task is left to ``asyncio.run``, which cancels it, so the
    block's own error is what the test reports.
    """
    stop = asyncio.Event()
    task = asyncio.create_task(collector.run(stop))
    yield
    stop.set()
    await asyncio.wait_for(task, stop_timeout)


@contextlib.contextmanager
def running_collector(tmp_path: Path, devices: Path, client_id: str) -> Iterator[Collector]:
    """The whole collector on a thread (``collect`` in-process), reloading ``devices`` every
    0.2 s; stopped, spooled and flushed to ``tmp_path/lake`` when the block ends."""
    from integration_platform.streams.collector import Collector, CollectorConfig

    config = CollectorConfig(
        devices_file=devices,
        data_dir=tmp_path / "data",
        lake_root=str(tmp_path / "lake"),
        flush_rows=500,
        flush_seconds=0.3,
        client_id=client_id,
        reload_seconds=0.2,
    )
    collector = Collector(config)
    stop = threading.Event()
    thread = threading.Thread(target=collector.run, args=(stop,), daemon=True)
    thread.start()
    try:
        yield collector
    finally:
        stop.set()
        thread.join(30)


def numbered_reading(
    i: int,
    *,
    start: datetime,
    ingested_at: datetime,
    sensor: str = "s1",
    value: float | None = None,
) -> Reading:
    """Reading ``i`` of temperature sensor ``sensor`` on ``dev-1``, received over MQTT: taken
    ``i`` seconds after ``start`` and valued ``i + 0.5`` unless ``value`` is given."""
    return Reading(
        device_id="dev-1",
        sensor_id=sensor,
        sensor_type="temperature",
        ts=start + timedelta(seconds=i),
        value=float(i) + 0.5 if value is None else value,
        unit="degC",
        quality="good",
        source_protocol="mqtt",
        ingested_at=ingested_at,
        origin=f"plant/s1/dev-1/{sensor}",
    )


def row_keys(table: pa.Table) -> list[tuple[str, str, str, float]]:
    """(device, sensor, ts ISO, value) per row, sorted, for exact comparisons."""
    if table.num_rows == 0:
        return []
    rows = table.select(["device_id", "sensor_id", "ts", "value"]).to_pylist()
    return sorted((r["device_id"], r["sensor_id"], r["ts"].isoformat(), r["value"]) for r in rows)


def forget_mqtt_session(client_id: str) -> None:
    """End a persistent session on the broker so tests leave no queues behind."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    client = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5
    )
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = 0
    try:
        client.connect(MQTT_HOST, MQTT_PORT, clean_start=True, properties=props)
        client.loop_start()
        time.sleep(0.2)
        client.disconnect()
        client.loop_stop()
    except OSError:
        pass


class Publisher:
    """A QoS 1 publisher that waits for each PUBACK (so 'published' means the broker has it)."""

    def __init__(self, host: str = MQTT_HOST, port: int = MQTT_PORT) -> None:
        import paho.mqtt.client as mqtt

        self._client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=unique("pub"), protocol=mqtt.MQTTv5
        )
        self._client.connect(host, port)
        self._client.loop_start()

    def publish(self, topic: str, payload: object, *, qos: int = 1) -> None:
        body = payload if isinstance(payload, bytes | str) else json.dumps(payload)
        info = self._client.publish(topic, body, qos=qos)
        info.wait_for_publish(timeout=10)

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()

    def __enter__(self) -> Publisher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
