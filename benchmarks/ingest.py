"""Ingest benchmark: MQTT over loopback -> collector -> spool -> Delta, beside a bare subscriber.

Everything runs against a private Mosquitto started here on a free loopback port (never the
shared broker on 1883), with ``max_inflight_messages`` and ``max_queued_messages`` raised for
the load. The collector is the real one, ``integration-platform collect`` in its own process.

Phases:

1. preload: the same ``--messages`` QoS 1 messages (one reading each, ~50 bytes of JSON) are
   queued by the broker for three offline persistent sessions, two bare subscribers' and the
   collector's; ``--batched`` readings, 100 per message (a JSON array), are queued for a second
   collector session. Throughput is measured by draining these queues, so the figures do not
   depend on how fast this script can publish.
2. ceiling C: a bare paho subscriber (MQTT v5, QoS 1, automatic PUBACK, TCP_NODELAY) drains
   its queue; C = messages / (last received - first received). Measured before and after
   phase 3 and averaged, because the machine is shared and single figures drift.
3. N, one reading per message: the collector drains the same messages into Delta;
   N = readings / (time the table showed the last one - the first one's receipt). Receipt
   times come from the table itself (``ingested_at``); visibility from watching
   ``_delta_log`` every 20 ms.
4. the same with 100 readings per message.
5. live: ``--rate`` messages/s for ``--seconds`` s, one reading each, ``ts`` = the publish wall
   clock. Queryable latency = when the commit holding the reading appeared - ts. One vibration
   sensor per device has thresholds; every 20th value of it is above critical, so alerts are
   raised all along: alert latency = ``sensor_alerts.raised_at - reading_ts`` (state DB).

Checks: every phase compares the published (device, sensor, ts) keys with the table's, read
by an independent reader (``_delta_log`` replayed, Parquet read with pyarrow): ``lost`` =
published keys missing, ``duplicated`` = rows beyond one per key.

Usage: ``python benchmarks/ingest.py [--quick] [--profile DIR]``. The last line is
``ingest_readings_per_s=<N> broker_ceiling_msgs_per_s=<C> alert_p99_ms=<A> queryable_p95_s=<Q>
lost=<X> duplicated=<D>`` (N: one reading per message).

``--stages`` instead times each step of the 100-readings-per-message path in this process,
one after the other (no broker): the ingest thread's parse, spool append and alert/status
evaluation, then the writer's claim, validation, Delta append and spool commit, in wall and
CPU microseconds per reading. The last line is then ``stages_us_per_reading=<wall total>``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

BASE_MS = int(datetime(2026, 11, 2, 8, 0, tzinfo=UTC).timestamp() * 1000)
SENSORS = (("temp", "temperature", "degC"), ("vib", "vibration", "mm/s"))
SENSORS += (("press", "pressure", "bar"), ("flow", "flow", "m3/h"))
DEVICES = 50
PER_BATCH = 100
CRITICAL = 11.2
SPIKE_EVERY = 20


# -- registry and messages ---------------------------------------------------------------


def registry_yaml(site: str, client_id: str, *, thresholds: bool = False) -> str:
    limits = ""
    if thresholds:
        from integration_platform.streams.devices import Thresholds

        cooldown = ", cooldown_s: 0" if "cooldown_s" in Thresholds.model_fields else ""
        limits = f", thresholds: {{warning: 7.1, critical: {CRITICAL}, hysteresis: 1.0{cooldown}}}"
    lines = [
        "version: 1",
        f"site: {site}",
        f"collector: {{client_id: {client_id}, session_expiry_s: 3600}}",
        "devices:",
    ]
    for d in range(DEVICES):
        lines += [
            f"  - device_id: dev-{d:03d}",
            "    protocol: mqtt",
            "    endpoint: mqtt://127.0.0.1:{port}",
            "    sensors:",
        ]
        for sensor_id, kind, unit in SENSORS:
            extra = limits if sensor_id == "vib" else ""
            lines.append(f"      - {{sensor_id: {sensor_id}, type: {kind}, unit: {unit}{extra}}}")
    return "\n".join(lines) + "\n"


def pair(i: int) -> tuple[str, str]:
    return f"dev-{i % DEVICES:03d}", SENSORS[(i // DEVICES) % len(SENSORS)][0]


def single_messages(site: str, count: int) -> Iterator[tuple[str, bytes, tuple]]:
    """One reading per message; ts unique per message (BASE + i ms)."""
    for i in range(count):
        device, sensor = pair(i)
        ts = BASE_MS + i
        body = b'{"ts":%d,"value":%.2f,"quality":"good"}' % (ts, 20 + (i % 997) * 0.01)
        yield f"plant/{site}/{device}/{sensor}", body, (device, sensor, ts)


def batch_messages(site: str, count: int) -> Iterator[tuple[str, bytes, list[tuple]]]:
    """``PER_BATCH`` readings of one sensor per message (a top-level JSON array)."""
    for j in range(count):
        device, sensor = pair(j)
        first = BASE_MS + j * PER_BATCH
        items = [
            b'{"ts":%d,"value":%.2f,"quality":"good"}' % (first + k, 20 + (k % 97) * 0.01)
            for k in range(PER_BATCH)
        ]
        keys = [(device, sensor, first + k) for k in range(PER_BATCH)]
        yield f"plant/{site}/{device}/{sensor}", b"[" + b",".join(items) + b"]", keys


# -- MQTT sessions ---------------------------------------------------------------------------


def _paho(client_id: str) -> Any:
    import paho.mqtt.client as mqtt

    client = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5
    )
    client.on_socket_open = lambda c, u, sock: sock.setsockopt(
        socket.IPPROTO_TCP, socket.TCP_NODELAY, 1
    )
    return client


def _session_props() -> Any:
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = 3600
    return props


def create_session(port: int, client_id: str, filters: list[str]) -> None:
    """Subscribe once and leave: the broker now queues QoS 1 messages for ``client_id``."""
    client = _paho(client_id)
    done = threading.Event()
    client.on_subscribe = lambda *a: done.set()
    client.connect("127.0.0.1", port, clean_start=False, properties=_session_props())
    client.loop_start()
    client.subscribe([(f, 1) for f in filters])
    if not done.wait(10):
        raise RuntimeError(f"no SUBACK for {client_id}")
    client.disconnect()
    client.loop_stop()


def collector_filters(registry_text: str) -> list[str]:
    from integration_platform.streams.devices import parse_registry
    from integration_platform.streams.mqtt import Router

    registry = parse_registry(registry_text)
    return Router(registry, registry.enabled("mqtt")).filters()


def drain_bare_subscriber(port: int, client_id: str, count: int, timeout: float) -> float:
    """C: messages/s a bare paho subscriber receives draining its queued session."""
    client = _paho(client_id)
    received = 0
    first = last = 0.0
    done = threading.Event()

    def on_message(c: Any, u: Any, message: Any) -> None:
        nonlocal received, first, last
        last = time.perf_counter()
        if received == 0:
            first = last
        received += 1
        if received == count:
            done.set()

    client.on_message = on_message
    client.connect("127.0.0.1", port, clean_start=False, properties=_session_props())
    client.loop_start()
    done.wait(timeout)
    client.disconnect()
    client.loop_stop()
    if received < count:
        raise RuntimeError(f"bare subscriber received {received} of {count} in {timeout} s")
    return count / (last - first)


# -- the Delta log, watched ------------------------------------------------------------------


class LogWatcher:
    """Polls ``_delta_log``: when each commit first appeared (wall clock) and the rows added."""

    def __init__(self, table: Path, interval: float = 0.02) -> None:
        self.log = table / "_delta_log"
        self.interval = interval
        self.seen: dict[int, float] = {}
        self.files: dict[int, list[str]] = {}
        self.rows = 0
        self._reached: list[tuple[int, threading.Event, list[float]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="log-watcher", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            now = time.time()
            try:
                names = os.listdir(self.log)
            except FileNotFoundError:
                continue
            for name in names:
                if not name.endswith(".json") or name.startswith("."):
                    continue
                version = int(name[:-5])
                if version in self.seen:
                    continue
                try:
                    text = (self.log / name).read_text()
                except FileNotFoundError:
                    continue
                self.seen[version] = now
                adds = [json.loads(x)["add"] for x in text.splitlines() if '"add"' in x[:8]]
                self.files[version] = [a["path"] for a in adds]
                self.rows += sum(
                    json.loads(a.get("stats") or "{}").get("numRecords", 0) for a in adds
                )
            for target, event, when in self._reached:
                if self.rows >= target and not event.is_set():
                    when.append(now)
                    event.set()

    def wait_rows(self, target: int, timeout: float) -> float | None:
        """Wall-clock time at which the table first showed ``target`` rows, or None."""
        event, when = threading.Event(), []
        self._reached.append((target, event, when))
        return when[0] if event.wait(timeout) else None

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)


def table_keys(table: Path) -> tuple[list[tuple], Any]:
    """(device, sensor, ts ms) of every live row, and the table itself (independent reader)."""
    from integration_platform_tests.streams_helpers import read_delta_independently

    data = read_delta_independently(table)
    if data.num_rows == 0:
        return [], data
    cols = data.select(["device_id", "sensor_id", "ts"]).to_pydict()
    keys = [
        (d, s, round(ts.timestamp() * 1000))
        for d, s, ts in zip(cols["device_id"], cols["sensor_id"], cols["ts"], strict=True)
    ]
    return keys, data


def compare(published: list[tuple], stored: list[tuple]) -> tuple[int, int]:
    """(lost, duplicated): published keys not stored; stored rows beyond one per key
    (rows whose key was never published count as duplicated too: they should not exist)."""
    want = set(published)
    have: dict[tuple, int] = {}
    for key in stored:
        have[key] = have.get(key, 0) + 1
    lost = len(want - have.keys())
    duplicated = sum(n - 1 for n in have.values()) + sum(1 for k in have if k not in want)
    return lost, duplicated


# -- the collector process -------------------------------------------------------------------


@dataclass
class CollectorRun:
    folder: Path
    registry_text: str
    port: int
    flush_rows: int
    flush_seconds: float
    profile_dir: Path | None = None
    process: subprocess.Popen | None = None
    log_file: Any = None
    status: dict[str, Any] = field(default_factory=dict)

    @property
    def data_dir(self) -> Path:
        return self.folder / "data"

    @property
    def table(self) -> Path:
        return self.folder / "lake" / "telemetry" / "sensor_readings"

    def start(self) -> None:
        devices = self.folder / "devices.yaml"
        self.folder.mkdir(parents=True, exist_ok=True)
        devices.write_text(self.registry_text.replace("{port}", str(self.port)))
        args = [
            "collect",
            "--devices",
            str(devices),
            "--data-dir",
            str(self.data_dir),
            "--lake-uri",
            str(self.folder / "lake"),
            "--flush-rows",
            str(self.flush_rows),
            "--flush-seconds",
            str(self.flush_seconds),
            "--progress-seconds",
            "2",
        ]
        if self.profile_dir is not None:
            out = self.profile_dir / f"{self.folder.name}.pstats"
            command = [sys.executable, __file__, "--profiled-collector", str(out), "--", *args]
        else:
            command = [sys.executable, "-m", "integration_platform.cli", *args]
        env = {k: v for k, v in os.environ.items() if k != "INTEGRATION_PLATFORM_DB_URL"}
        env.update(INTEGRATION_PLATFORM_DATA_DIR=str(self.data_dir), PYTHONUNBUFFERED="1")
        self.log_file = (self.folder / "collector.log").open("w")
        self.process = subprocess.Popen(
            command, stdout=self.log_file, stderr=subprocess.STDOUT, env=env, cwd=ROOT
        )

    def stop(self) -> int:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(90)
        except subprocess.TimeoutExpired:
            self.process.kill()
            code = self.process.wait(10)
        self.log_file.close()
        for path in (self.data_dir / "spool").glob("*.status.json"):
            self.status = json.loads(path.read_text())
        return code

    def log_tail(self, chars: int = 2000) -> str:
        return (self.folder / "collector.log").read_text(errors="replace")[-chars:]


def drain_collector(run: CollectorRun, published: list[tuple], timeout: float) -> dict[str, Any]:
    """Start the collector on its queued session; N = readings / (visible - first receipt)."""
    watcher = LogWatcher(run.table)
    run.start()
    try:
        done_at = watcher.wait_rows(len(published), timeout)
        if done_at is None:
            raise RuntimeError(
                f"{watcher.rows} of {len(published)} rows in {timeout} s\n{run.log_tail()}"
            )
    finally:
        watcher.stop()
        code = run.stop()
    if code != 0:
        print(f"warning: collector {run.folder.name} exited with {code}:\n{run.log_tail(800)}")
    keys, data = table_keys(run.table)
    ingested = data.column("ingested_at").to_pylist()
    first, last = min(ingested).timestamp(), max(ingested).timestamp()
    lost, duplicated = compare(published, keys)
    writer = run.status.get("writer", {})
    return {
        "readings": len(published),
        "seconds": done_at - first,
        "per_s": len(published) / (done_at - first),
        "receive_per_s": len(published) / max(last - first, 1e-9),
        "commits": writer.get("batches_written", len(watcher.seen)),
        "lost": lost,
        "duplicated": duplicated,
        "exit": code,
    }


# -- live phase ----------------------------------------------------------------------------


def live_phase(
    run: CollectorRun, site: str, rate: float, seconds: float, timeout: float, inflight: int
) -> dict[str, Any]:
    from integration_platform_tests.mqtt_rig import RigPublisher

    watcher = LogWatcher(run.table)
    run.start()
    published: dict[tuple, float] = {}
    spikes: list[tuple] = []
    try:
        with RigPublisher(run.port, inflight=min(1000, inflight)) as publisher:
            # Warm-up: one reading, visible in the table, so the table and session exist.
            warm = (pair(0)[0], "temp", BASE_MS)
            publisher.publish(f"plant/{site}/{warm[0]}/temp", {"ts": BASE_MS, "value": 1.0})
            published[warm] = BASE_MS / 1000
            if watcher.wait_rows(1, 60) is None:
                raise RuntimeError(f"warm-up reading not in the table\n{run.log_tail()}")
            client = publisher._client
            last_ts: dict[tuple[str, str], int] = {}
            counts: dict[tuple[str, str], int] = {}
            start = time.time()
            sent = 0
            while (now := time.time()) < start + seconds:
                due = int((now - start) * rate)
                while sent < due:
                    device, sensor = pair(sent)
                    ts = max(int(time.time() * 1000), last_ts.get((device, sensor), 0) + 1)
                    last_ts[(device, sensor)] = ts
                    n = counts[(device, sensor)] = counts.get((device, sensor), 0) + 1
                    value = 2.5 + (sent % 7) * 0.1
                    if sensor == "vib" and n % SPIKE_EVERY == 0:
                        value = CRITICAL + 6.0
                        spikes.append((device, sensor, ts))
                    body = b'{"ts":%d,"value":%.2f,"quality":"good"}' % (ts, value)
                    client.publish(f"plant/{site}/{device}/{sensor}", body, qos=1)
                    published[(device, sensor, ts)] = ts / 1000
                    sent += 1
                time.sleep(0.002)
            publish_seconds = time.time() - start
        if watcher.wait_rows(len(published), timeout) is None:
            raise RuntimeError(f"{watcher.rows} of {len(published)} rows\n{run.log_tail()}")
    finally:
        watcher.stop()
        code = run.stop()
    import pyarrow.parquet as pq

    latencies = []
    for version, paths in watcher.files.items():
        for path in paths:
            piece = pq.read_table(run.table / path, columns=["device_id", "sensor_id", "ts"])
            cols = piece.to_pydict()
            for d, s, ts in zip(cols["device_id"], cols["sensor_id"], cols["ts"], strict=True):
                key = (d, s, round(ts.timestamp() * 1000))
                if key != warm and key in published:
                    latencies.append(watcher.seen[version] - published[key])
    keys, _ = table_keys(run.table)
    lost, duplicated = compare(list(published), keys)
    alerts = alert_latencies(run, spikes)
    return {
        "messages": len(published) - 1,
        "rate": (len(published) - 1) / publish_seconds,
        "queryable": latencies,
        "commits": len(watcher.seen),
        "spikes": len(spikes),
        "alerts": alerts,
        "lost": lost,
        "duplicated": duplicated,
        "exit": code,
    }


def alert_latencies(run: CollectorRun, spikes: list[tuple]) -> dict[str, Any]:
    """``raised_at - reading_ts`` of the critical alerts, from the collector's state DB."""
    try:
        import sqlalchemy as sa

        from integration_platform.settings import DATA_DIR_VAR
        from integration_platform.state.engine import database_url
    except ImportError as exc:
        return {"error": f"state DB not available: {exc}", "latencies_ms": []}
    url = database_url({DATA_DIR_VAR: str(run.data_dir)})
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            if not sa.inspect(conn).has_table("sensor_alerts"):
                return {"error": "no sensor_alerts table in the state DB", "latencies_ms": []}
            rows = conn.execute(
                sa.text("SELECT device_id, sensor_id, reading_ts, raised_at FROM sensor_alerts")
            ).all()
    finally:
        engine.dispose()

    def utc(value: Any) -> datetime:
        moment = datetime.fromisoformat(value) if isinstance(value, str) else value
        return moment if moment.tzinfo else moment.replace(tzinfo=UTC)

    spike_keys = set(spikes)
    latencies, unmatched = [], 0
    for device, sensor, reading_ts, raised_at in rows:
        reading, raised = utc(reading_ts), utc(raised_at)
        if (device, sensor, round(reading.timestamp() * 1000)) not in spike_keys:
            unmatched += 1
        latencies.append((raised - reading).total_seconds() * 1000)
    return {"latencies_ms": latencies, "rows": len(rows), "unmatched": unmatched}


# -- stages, in process ----------------------------------------------------------------------


@dataclass
class _Message:
    """What the MQTT ingest thread keeps of a received message."""

    topic: str
    payload: bytes
    received_us: int


def stage_timings(messages: int, work: Path) -> dict[str, list[float]]:
    """[wall, CPU] seconds per step for ``messages`` messages of 100 readings, the steps run
    one after the other in this thread (so no step waits for another, as in the collector)."""
    from integration_platform.streams.device_state import StateReporter
    from integration_platform.streams.devices import parse_registry
    from integration_platform.streams.mqtt import INGEST_GROUP, Router, parse_group, warm_up
    from integration_platform.streams.spool import Spool
    from integration_platform.streams.writer import DeltaWriter, split_columns

    registry = parse_registry(registry_yaml("s100", "stages").replace("{port}", "1883"))
    router = Router(registry, registry.enabled("mqtt"))
    received = BASE_MS * 1000
    inbox = [
        _Message(topic, body, received + i)
        for i, (topic, body, _) in enumerate(batch_messages("s100", messages))
    ]
    spool = Spool(work / "spool.sqlite", "stages")
    state = StateReporter(
        f"sqlite:///{work / 'state.db'}", registry, reporter_id="stages", collected=("mqtt",)
    )
    writer = DeltaWriter(spool, str(work / "lake"))
    warm_up()
    writer.warm_up()
    times: dict[str, list[float]] = {}

    def timed(stage: str, call: Any) -> Any:
        wall, cpu = time.perf_counter(), time.thread_time()
        out = call()
        entry = times.setdefault(stage, [0.0, 0.0])
        entry[0] += time.perf_counter() - wall
        entry[1] += time.thread_time() - cpu
        return out

    for start in range(0, len(inbox), INGEST_GROUP):
        group = inbox[start : start + INGEST_GROUP]
        columns = timed("parse", lambda group=group: parse_group(router, group).columns)
        timed("spool append", lambda columns=columns: spool.append_columns(columns))
        timed("alerts and status", lambda columns=columns: state.observe_columns(columns))
    while (batch := timed("claim", lambda: spool.claim(writer.max_batch_rows))) is not None:
        split = timed("validate", lambda batch=batch: split_columns(batch.columns))
        timed(
            "Delta append",
            lambda batch=batch, split=split: writer._append(  # the step on its own
                writer.table_uri, split.table, batch.seq, "date"
            ),
        )
        timed("spool commit", lambda batch=batch: spool.commit(batch.batch_id))
    spool.close()
    return times


def print_stages(messages: int) -> None:
    work = Path(tempfile.mkdtemp(prefix="ingest-stages-"))
    try:
        times = stage_timings(messages, work)
    finally:
        import shutil

        shutil.rmtree(work, ignore_errors=True)
    readings = messages * PER_BATCH
    print(
        f"stages  : {readings:,} readings, {PER_BATCH} per message, each step on its own in "
        "this process; us per reading, wall / CPU of this thread:"
    )
    for stage, (wall, cpu) in times.items():
        print(f"          {stage:18s} {wall / readings * 1e6:5.2f} / {cpu / readings * 1e6:5.2f}")
    wall = sum(w for w, _ in times.values())
    cpu = sum(c for _, c in times.values())
    print(
        f"          {'total':18s} {wall / readings * 1e6:5.2f} / {cpu / readings * 1e6:5.2f}: "
        f"{readings / wall:,.0f} readings/s one step after the other"
    )
    print(f"stages_us_per_reading={wall / readings * 1e6:.2f}")


# -- helpers ---------------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q / 100 * len(ordered)) - 1))]


def profiled_collector(out: str, argv: list[str]) -> int:
    """Run ``collect`` with every thread under cProfile; merged stats written to ``out``."""
    import cProfile
    import pstats

    profiles: list[cProfile.Profile] = []
    original = threading.Thread.run

    def run(self: threading.Thread) -> None:
        profile = cProfile.Profile()
        profiles.append(profile)
        profile.runcall(original, self)

    threading.Thread.run = run  # type: ignore[method-assign]
    from integration_platform.cli import main

    main_profile = cProfile.Profile()
    profiles.append(main_profile)
    code = main_profile.runcall(main, argv)
    stats = pstats.Stats(profiles[0])
    for profile in profiles[1:]:
        with contextlib.suppress(TypeError):  # a thread still running has no stats yet
            stats.add(profile)
    stats.dump_stats(out)
    return int(code)


# -- main ------------------------------------------------------------------------------------


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "--profiled-collector":
        sys.exit(profiled_collector(sys.argv[2], sys.argv[4:]))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="10,000 messages, 40,000 batched readings, 8 s live"
    )
    parser.add_argument("--messages", type=int, help="one-reading messages (default 100,000)")
    parser.add_argument(
        "--batched", type=int, help="readings sent 100 per message (default 200,000)"
    )
    parser.add_argument(
        "--phases", default="single,batch,live", help="collector phases to run (default all)"
    )
    parser.add_argument("--rate", type=float, default=1000.0, help="live messages/s (1000)")
    parser.add_argument("--seconds", type=float, help="live phase length (default 30)")
    parser.add_argument("--flush-rows", type=int, default=20_000, help="collector --flush-rows")
    parser.add_argument(
        "--flush-seconds", type=float, default=1.0, help="collector --flush-seconds"
    )
    parser.add_argument("--inflight", type=int, default=1000, help="broker max_inflight_messages")
    parser.add_argument("--profile", metavar="DIR", help="cProfile the collectors into DIR")
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    parser.add_argument(
        "--stages",
        action="store_true",
        help="time each step of the 100-readings-per-message path in this process instead",
    )
    args = parser.parse_args()
    if args.stages:
        print_stages(max(1, (args.batched or (40_000 if args.quick else 200_000)) // PER_BATCH))
        return
    messages = args.messages or (10_000 if args.quick else 100_000)
    seconds = args.seconds or (8.0 if args.quick else 30.0)
    batches = max(1, (args.batched or (40_000 if args.quick else 200_000)) // PER_BATCH)
    phases = set(args.phases.split(","))
    profile_dir = Path(args.profile).resolve() if args.profile else None
    if profile_dir:
        profile_dir.mkdir(parents=True, exist_ok=True)

    from integration_platform_tests.mqtt_rig import Mosquitto, RigPublisher

    work = Path(tempfile.mkdtemp(prefix="ingest-bench-"))
    broker = Mosquitto(
        work / "broker",
        max_queued_messages=messages * 3 + batches,
        max_inflight_messages=args.inflight,
        persistence=False,
    )
    broker.start()
    print(
        f"broker: private mosquitto on 127.0.0.1:{broker.port}, max_inflight_messages "
        f"{args.inflight}; collector --flush-rows {args.flush_rows} --flush-seconds "
        f"{args.flush_seconds}; work folder {work}"
    )
    try:
        runs = {
            name: CollectorRun(
                work / name,
                registry_yaml(site, f"bench-{name}", thresholds=name == "live"),
                broker.port,
                args.flush_rows,
                args.flush_seconds,
                profile_dir,
            )
            for name, site in (("single", "s1"), ("batch", "s100"), ("live", "live"))
        }
        # 1. preload
        for name in ("bench-ceiling", "bench-ceiling-2"):
            create_session(broker.port, name, ["plant/s1/+/+"])
        for name in ("single", "batch", "live"):
            filters = collector_filters(runs[name].registry_text.replace("{port}", "1883"))
            create_session(broker.port, f"bench-{name}", filters)
        started = time.perf_counter()
        single_keys: list[tuple] = []
        batch_keys: list[tuple] = []
        with RigPublisher(broker.port, inflight=min(1000, args.inflight)) as publisher:

            def singles() -> Iterator[tuple[str, bytes]]:
                for topic, body, key in single_messages("s1", messages):
                    single_keys.append(key)
                    yield topic, body

            def batched() -> Iterator[tuple[str, bytes]]:
                for topic, body, keys in batch_messages("s100", batches):
                    batch_keys.extend(keys)
                    yield topic, body

            publisher.publish_many(singles())
            publisher.publish_many(batched())
        print(
            f"preload: {messages:,} one-reading messages (queued 3 times) and {batches:,} "
            f"messages of {PER_BATCH} readings, {time.perf_counter() - started:.1f} s"
        )

        # 2. ceiling (measured again after the one-reading phase: the machine is shared)
        first_ceiling = drain_bare_subscriber(broker.port, "bench-ceiling", messages, 300)
        print(f"ceiling : bare paho subscriber, QoS 1: {first_ceiling:,.0f} messages/s")

        # 3-4. collector drains
        nan = math.nan
        single = batch = {"per_s": nan, "lost": 0, "duplicated": 0}
        if "single" in phases:
            single = drain_collector(runs["single"], single_keys, timeout=600)
            print(
                f"single  : {single['readings']:,} readings (1 per message) into Delta in "
                f"{single['seconds']:.2f} s: {single['per_s']:,.0f} readings/s "
                f"(received by paho at {single['receive_per_s']:,.0f}/s; "
                f"{single['commits']} commits); "
                f"lost {single['lost']} duplicated {single['duplicated']}"
            )
        second_ceiling = drain_bare_subscriber(broker.port, "bench-ceiling-2", messages, 300)
        ceiling = (first_ceiling + second_ceiling) / 2
        print(
            f"ceiling : again: {second_ceiling:,.0f} messages/s; mean C = {ceiling:,.0f}/s"
            + (f"; N / C = {single['per_s'] / ceiling:.2f}" if "single" in phases else "")
        )
        if "batch" in phases:
            batch = drain_collector(runs["batch"], batch_keys, timeout=600)
            print(
                f"batch   : {batch['readings']:,} readings ({PER_BATCH} per message) into Delta "
                f"in {batch['seconds']:.2f} s: {batch['per_s']:,.0f} readings/s "
                f"(received by paho at {batch['receive_per_s']:,.0f}/s; "
                f"{batch['commits']} commits); lost {batch['lost']} duplicated "
                f"{batch['duplicated']}"
            )

        # 5. live
        live: dict[str, Any] = {"queryable": [], "lost": 0, "duplicated": 0, "spikes": 0}
        live["alerts"] = {"latencies_ms": [], "error": "live phase not run"}
        if "live" in phases:
            live = live_phase(runs["live"], "live", args.rate, seconds, 120, args.inflight)
            queryable = live["queryable"]
            print(
                f"live    : {live['messages']:,} messages at {live['rate']:,.0f}/s, "
                f"{live['commits']} commits; queryable p50 {percentile(queryable, 50):.2f} s, "
                f"p95 {percentile(queryable, 95):.2f} s, max {max(queryable):.2f} s; "
                f"lost {live['lost']} duplicated {live['duplicated']}"
            )
        alerts = live["alerts"]
        alert_ms = alerts["latencies_ms"]
        alert_p99 = percentile(alert_ms, 99)
        if alerts.get("error"):
            print(f"alerts  : {alerts['error']}: alert_p99_ms=nan")
        else:
            print(
                f"alerts  : {live['spikes']} values above critical published, "
                f"{alerts['rows']} alerts raised ({alerts['unmatched']} not from a spike); "
                f"raised_at - reading_ts p50 {percentile(alert_ms, 50):.1f} ms, "
                f"p99 {alert_p99:.1f} ms, max {max(alert_ms, default=nan):.1f} ms"
            )
        lost = single["lost"] + batch["lost"] + live["lost"]
        duplicated = single["duplicated"] + batch["duplicated"] + live["duplicated"]
        queryable_p95 = percentile(live["queryable"], 95)

        def verdict(ok: bool) -> str:
            return "met" if ok else "MISSED"

        print(
            "targets : "
            f"N >= 0.6 x C: {single['per_s']:,.0f} vs {0.6 * ceiling:,.0f} "
            f"{verdict(single['per_s'] >= 0.6 * ceiling)}; "
            f"100/message >= 200,000: {batch['per_s']:,.0f} {verdict(batch['per_s'] >= 200_000)}; "
            f"alert p99 < 1000 ms: {alert_p99:.1f} {verdict(alert_p99 < 1000)}; "
            f"queryable p95 < 5 s: {queryable_p95:.2f} {verdict(queryable_p95 < 5)}; "
            f"lost = duplicated = 0: {verdict(lost == duplicated == 0)}"
        )
        if profile_dir:
            print(f"profiles: {', '.join(str(p) for p in sorted(profile_dir.glob('*.pstats')))}")
        print(
            f"ingest_readings_per_s={single['per_s']:.0f} broker_ceiling_msgs_per_s={ceiling:.0f} "
            f"alert_p99_ms={alert_p99:.1f} queryable_p95_s={queryable_p95:.2f} "
            f"lost={lost} duplicated={duplicated}"
        )
    finally:
        broker.stop()
        if not args.keep:
            import shutil

            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
