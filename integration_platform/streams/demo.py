"""The streams part of ``make demo``: a simulated plant, the collector, rollups, an alert and
the work order it opens.

The shipped example plant (``streams/examples/devices.yaml``: two MQTT gateways, a Modbus PLC,
an OPC-UA controller) is simulated on loopback for a few seconds, with a bearing fault injected
on ``pump-101/bearing_vibration`` right at the start. The collector runs in this process as it
runs in production (spool, Delta writer, alert evaluation on the ingest path, device status in
the state DB); then ``telemetry_rollups_job`` computes today's rollups and one tick of
``cbm_work_orders_critical_alert_sensor`` turns the critical alert into a work order (the
state DB's outbox when no CMMS is configured).

What differs from the example registry, so a short run shows the whole loop: a site and
collector client id of its own per data dir (concurrent demos and tests do not share topics or
MQTT sessions), free loopback ports for the Modbus and OPC-UA simulators, the fault on one
sensor only, and a 3 s instead of 30 s minimum duration on that sensor's thresholds (readings
are stamped with the wall clock, so the limit must be exceeded that long in real time).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import dagster as dg
import pandas as pd
import yaml

from integration_platform.settings import environment
from integration_platform.streams.cli import EXAMPLE_DEVICES

MQTT_URL_VAR = "MQTT_URL"
DEFAULT_MQTT_URL = "mqtt://127.0.0.1:1883"
FAULT_SENSOR = ("pump-101", "bearing_vibration")
DEMO_MIN_DURATION_S = 3.0
FAULT_AFTER_S = 1.0
PUBLISH_INTERVAL_S = 0.5
# The simulator's hard stop; its fault ramp is fitted to it: (12 - 1) / 2 = 5.5 s from normal to
# 1.4 x critical, so critical is crossed ~4.5 s in and has been held long enough by ~7.5 s.
MAX_SIMULATION_S = 12.0
AFTER_CRITICAL_S = 1.0  # keep the plant running a little past the critical alert
START_MOSQUITTO = "mosquitto -d, or docker compose -f deploy/compose.yaml up -d mosquitto"

Status = Literal["ok", "skipped", "failed"]


@dataclass
class StreamsDemoResult:
    """What the streams demo did; ``text`` is the summary printed by ``demo``."""

    status: Status
    text: str
    client_id: str | None = None
    readings: int = 0
    alerts: list[str] = field(default_factory=list)  # episode keys raised in this run
    work_orders: list[str] = field(default_factory=list)  # references opened in this run


def mqtt_url(env: Mapping[str, str] | None = None) -> str:
    """The broker the demo publishes to and collects from: ``MQTT_URL``, else loopback."""
    env = os.environ if env is None else env
    return env.get(MQTT_URL_VAR, "").strip() or DEFAULT_MQTT_URL


def broker_problem(url: str, timeout: float = 1.0) -> str | None:
    """Why the broker cannot be used, or ``None`` when it accepts a TCP connection."""
    parts = urlsplit(url)
    if parts.scheme not in {"mqtt", "tcp"} or not parts.hostname:
        return f"{MQTT_URL_VAR}={url!r}: the demo needs mqtt://host:port"
    address = (parts.hostname, parts.port or 1883)
    try:
        with socket.create_connection(address, timeout=timeout):
            return None
    except OSError as exc:
        return f"no MQTT broker at {address[0]}:{address[1]} ({exc.strerror or exc})"


def demo_names(data_dir: Path) -> tuple[str, str]:
    """(site, collector client id), fixed for a data dir and distinct between data dirs."""
    suffix = hashlib.sha256(str(Path(data_dir).resolve()).encode()).hexdigest()[:8]
    return f"demo-{suffix}", f"ip-demo-collector-{suffix}"


def demo_registry(
    url: str, *, site: str, client_id: str, modbus_port: int = 5020, opcua_port: int = 4840
) -> dict[str, Any]:
    """The example registry, adjusted for a short run (see the module docstring)."""
    data = yaml.safe_load(EXAMPLE_DEVICES.read_text(encoding="utf-8"))
    parts = urlsplit(url)
    data["site"] = site
    # A short session expiry: nothing is queued for the demo's collector for long after it.
    data["collector"] = {"client_id": client_id, "session_expiry_s": 60}
    for device in data["devices"]:
        protocol = device["protocol"]
        if protocol == "mqtt":
            device["endpoint"] = f"mqtt://{parts.hostname}:{parts.port or 1883}"
        elif protocol == "modbus":
            device["endpoint"] = f"tcp://127.0.0.1:{modbus_port}"
        elif protocol == "opcua":
            path = urlsplit(device["endpoint"]).path
            device["endpoint"] = f"opc.tcp://127.0.0.1:{opcua_port}{path}"
            device.setdefault("opcua", {})["reconnect_max_delay_s"] = 1
        for sensor in device["sensors"]:
            simulate = sensor.get("simulate") or {}
            faulty = (device["device_id"], sensor["sensor_id"]) == FAULT_SENSOR
            if simulate.get("fault") or faulty:
                simulate["fault"] = faulty
                sensor["simulate"] = simulate
            if faulty:
                sensor["thresholds"]["min_duration_s"] = DEMO_MIN_DURATION_S
    return data


def close_previous_episodes(engine: Any, client_id: str, now: datetime) -> int:
    """Resolve the episodes an earlier demo on this data dir left open.

    The simulated fault never recovers within a demo, so its episode stays open, and a
    collector continues open episodes instead of raising them again: without this a second
    ``make demo`` would show no alert.
    """
    import sqlalchemy as sa

    from integration_platform.state.devices import ACTIVE_ALERT_STATUSES, SensorAlert

    with engine.begin() as connection:
        result = connection.execute(
            sa.update(SensorAlert)
            .where(
                SensorAlert.raised_by == client_id,
                SensorAlert.status.in_(ACTIVE_ALERT_STATUSES),
            )
            .values(status="resolved", resolved_at=now)
        )
    return int(result.rowcount or 0)


@contextlib.contextmanager
def _logs_to(path: Path) -> Iterator[None]:
    """Collector and protocol-library logs go to a file while the demo runs: the terminal
    shows the demo's own lines (start-up reconnects and progress lines are in the file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    levels = {"integration_platform.streams": logging.INFO, "asyncua": logging.WARNING}
    levels["pymodbus"] = logging.WARNING
    saved = {}
    for name, level in levels.items():
        logger = logging.getLogger(name)
        saved[name] = (logger.level, logger.propagate)
        logger.setLevel(level)
        logger.propagate = False
        logger.addHandler(handler)
    try:
        yield
    finally:
        for name, (level, propagate) in saved.items():
            logger = logging.getLogger(name)
            logger.removeHandler(handler)
            logger.setLevel(level)
            logger.propagate = propagate
        handler.close()


class _Plant:
    """``run_simulator`` on its own thread and event loop, stoppable from the caller."""

    def __init__(self, registry: Any, url: str) -> None:
        self.stop = threading.Event()
        self.ready = threading.Event()
        self.stats: Any = None
        self.error: BaseException | None = None
        self._registry = registry
        self._url = url
        self._thread = threading.Thread(target=self._run, name="demo-plant", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def join(self, timeout: float) -> None:
        self.stop.set()
        self._thread.join(timeout)

    def _run(self) -> None:
        from integration_platform.streams.simulate import run_simulator

        def on_ready(stats: Any) -> None:
            self.stats = stats
            self.ready.set()

        try:
            self.stats = asyncio.run(
                run_simulator(
                    self._registry,
                    mqtt_url=self._url,
                    duration_s=MAX_SIMULATION_S,
                    interval_s=PUBLISH_INTERVAL_S,
                    fault_after_s=FAULT_AFTER_S,
                    modbus_port=0,
                    opcua_port=0,
                    stop=self.stop,
                    on_ready=on_ready,
                )
            )
        except BaseException as exc:  # reported by the caller
            self.error = exc
        finally:
            self.ready.set()


def _critical_alert(engine: Any, since: datetime) -> bool:
    import sqlalchemy as sa

    from integration_platform.state.devices import SensorAlert

    device_id, sensor_id = FAULT_SENSOR
    with engine.connect() as connection:
        found = connection.execute(
            sa.select(SensorAlert.id).where(
                SensorAlert.device_id == device_id,
                SensorAlert.sensor_id == sensor_id,
                SensorAlert.severity == "critical",
                SensorAlert.raised_at >= since,
            )
        ).first()
    return found is not None


def _wait(predicate: Callable[[], bool], timeout: float, interval: float = 0.25) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


def run_streams_demo(
    instance: dg.DagsterInstance,
    lake_root: str,
    state_url: str,
    data_dir: Path,
    *,
    broker_url: str | None = None,
    definitions: dg.Definitions | None = None,
    out: Callable[[str], None] = print,
) -> StreamsDemoResult:
    """Simulate, collect, roll up, alert, open a work order; a summary of what happened.

    ``broker_url`` defaults to ``MQTT_URL``; ``definitions`` (the code location, loaded when
    not given) supplies ``telemetry_rollups_job``. Skipped (status ``skipped``) when no broker
    answers, unless ``CI`` is set: there a missing broker is a failure, as in the tests.
    """
    from integration_platform.state import make_engine, upgrade
    from integration_platform.streams.devices import parse_registry

    url = broker_url or mqtt_url()
    problem = broker_problem(url)
    if problem is not None:
        if os.environ.get("CI"):
            return StreamsDemoResult(
                "failed", f"streams part failed: {problem}; CI must provide the broker"
            )
        return StreamsDemoResult(
            "skipped",
            f"streams part skipped: {problem}. Start Mosquitto on 127.0.0.1:1883 "
            f"({START_MOSQUITTO}) or point {MQTT_URL_VAR} at a broker, then run the demo again.",
        )
    site, client_id = demo_names(data_dir)
    folder = Path(data_dir) / "demo"
    folder.mkdir(parents=True, exist_ok=True)
    run = _Run(instance, definitions, lake_root, state_url, folder, url, site, client_id, out)
    with _logs_to(folder / "collector.log"):
        registry = demo_registry(url, site=site, client_id=client_id)
        plant = _Plant(parse_registry(yaml.safe_dump(registry, sort_keys=False)), url)
        plant.start()  # building the OPC-UA server takes seconds: prepare the state DB meanwhile
        upgrade(state_url)
        engine = make_engine(state_url)
        try:
            closed = close_previous_episodes(engine, client_id, run.started)
            if closed:
                out(f"closed {closed} alert episode(s) an earlier demo left open")
            return run.collect(plant, engine) or run.summary(plant, engine)
        finally:
            plant.join(10)
            engine.dispose()
            _end_session(url, client_id)


class _Run:
    """One streams demo: collection while the plant runs, then the batch side and a summary."""

    def __init__(
        self,
        instance: dg.DagsterInstance,
        definitions: dg.Definitions | None,
        lake_root: str,
        state_url: str,
        folder: Path,
        url: str,
        site: str,
        client_id: str,
        out: Callable[[str], None],
    ) -> None:
        self.instance = instance
        self.definitions = definitions
        self.lake_root = lake_root
        self.state_url = state_url
        self.folder = folder
        self.url = url
        self.site = site
        self.client_id = client_id
        self.out = out
        self.started = datetime.now(UTC)
        self.clock = {"start": time.monotonic()}
        self.collector: Any = None
        self.failure: str | None = None

    def collect(self, plant: _Plant, engine: Any) -> StreamsDemoResult | None:
        """Run the collector until the critical alert is in the state DB (bounded); a result
        only when nothing could be collected."""
        from integration_platform.streams.collector import Collector, CollectorConfig

        plant.ready.wait(30)
        if plant.error is not None or plant.stats is None:
            return StreamsDemoResult(
                "failed", f"streams part failed: the simulated plant did not start: {plant.error}"
            )
        self.clock["plant"] = time.monotonic()
        # The collector reads the ports the simulator bound (free ones: no clash).
        (modbus_port,) = plant.stats.modbus_servers.values()
        (opcua_port,) = plant.stats.opcua_servers.values()
        registry = demo_registry(
            self.url,
            site=self.site,
            client_id=self.client_id,
            modbus_port=modbus_port,
            opcua_port=opcua_port,
        )
        devices = self.folder / "devices.yaml"
        devices.write_text(yaml.safe_dump(registry, sort_keys=False), encoding="utf-8")
        self.collector = collector = Collector(
            CollectorConfig(
                devices_file=devices,
                data_dir=self.folder.parent,
                lake_root=self.lake_root,
                flush_rows=1000,
                flush_seconds=1.0,
                progress_seconds=5.0,
                reload_seconds=0.5,
                drain_timeout=15.0,
                state_url=self.state_url,
                heartbeat_seconds=1.0,
            )
        )
        stop = threading.Event()
        thread = threading.Thread(target=collector.run, args=(stop,), name="demo-collector")
        thread.start()
        try:
            if not (_wait(lambda: bool(collector.mqtt), 10) and collector.wait_ready(10)):
                self.failure = f"the collector did not subscribe at {self.url} within 10 s"
                return None
            self.out(f"collector {self.client_id} subscribed; its log: {self.folder}/collector.log")
            # The plant stops by itself after MAX_SIMULATION_S; a little longer for the last
            # readings to be evaluated on a busy machine.
            if _wait(lambda: _critical_alert(engine, self.started), MAX_SIMULATION_S + 2):
                time.sleep(AFTER_CRITICAL_S)
            else:
                self.failure = f"no critical alert on {'/'.join(FAULT_SENSOR)} within the run"
        finally:
            # The collector first: stopping the plant under it would record outage gaps.
            stop.set()
            thread.join(30)
            plant.join(10)
            self.clock["collected"] = time.monotonic()
        return None

    def _rollups_job(self) -> dg.JobDefinition:
        from integration_platform.defs.telemetry.jobs import TELEMETRY_ROLLUPS_JOB

        if self.definitions is None:
            from integration_platform.definitions import defs

            self.definitions = defs()
        return self.definitions.resolve_job_def(TELEMETRY_ROLLUPS_JOB)

    def summary(self, plant: _Plant, engine: Any) -> StreamsDemoResult:
        """Rollups and one work-order sensor tick, then what the run produced."""
        collector, started = self.collector, self.started
        written = collector.writer.stats
        lines = [
            f"simulated plant: {plant.stats.published} MQTT messages to {self.url} (site "
            f"{self.site}), Modbus TCP and OPC-UA servers on 127.0.0.1; bearing fault on "
            f"{'/'.join(FAULT_SENSOR)} from {FAULT_AFTER_S:g} s",
            f"collector: {written.rows_written} readings written to telemetry/sensor_readings in "
            f"{written.batches_written} Delta commits, {written.rows_quarantined} quarantined, "
            f"{collector.spool.pending} left in the spool",
        ]
        readings = _readings_of_run(self.lake_root, started)
        days = [started.date()]
        if readings is not None and len(readings):
            lines += ["", _readings_table(readings)]
            days = sorted({ts.date() for ts in pd.to_datetime(readings["ts"], utc=True)})
        devices = self.folder / "devices.yaml"
        job = self._rollups_job()
        lines += ["", *_rollups(self.instance, job, self.lake_root, devices, days, started)]
        tick = _sensor_tick(self.instance, self.lake_root, self.state_url)
        alerts = _alerts_of_run(engine, started)
        lines += ["", *_alert_lines(alerts), f"cbm_work_orders_critical_alert_sensor tick: {tick}"]
        lines += _work_order_lines(engine, alerts)
        clock, now = self.clock, time.monotonic()
        lines += [
            "",
            f"streams part: {now - clock['start']:.1f} s (plant start "
            f"{clock['plant'] - clock['start']:.1f} s, collecting "
            f"{clock['collected'] - clock['plant']:.1f} s, rollups and work order "
            f"{now - clock['collected']:.1f} s). `integration-platform alerts list` and "
            "`alerts work-orders` read the state DB.",
        ]
        work_orders = [str(a.work_order_id) for a in alerts if a.work_order_id]
        failure = self.failure
        if failure is None and not work_orders:
            failure = "the critical alert opened no work order"
        if failure is not None:
            lines.append(f"streams part failed: {failure}")
        return StreamsDemoResult(
            "failed" if failure else "ok",
            "\n".join(lines),
            client_id=self.client_id,
            readings=0 if readings is None else len(readings),
            alerts=[a.episode_key for a in alerts],
            work_orders=work_orders,
        )


def _end_session(url: str, client_id: str) -> None:
    """End the collector's persistent session on the broker: nothing queues for a demo
    collector that will not come back soon (a later demo would receive stale readings)."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    parts = urlsplit(url)
    connected = threading.Event()
    client = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5
    )
    client.on_connect = lambda *args: connected.set()
    properties = Properties(PacketTypes.CONNECT)
    properties.SessionExpiryInterval = 0
    try:
        client.connect(
            parts.hostname or "127.0.0.1",
            parts.port or 1883,
            clean_start=True,
            properties=properties,
        )
    except OSError:
        return
    client.loop_start()
    connected.wait(2)
    client.disconnect()
    client.loop_stop()


def _readings_of_run(lake_root: str, started: datetime) -> pd.DataFrame | None:
    from integration_platform.defs.telemetry.assets import SENSOR_READINGS
    from integration_platform.lake import DeltaLake

    lake = DeltaLake(uri=lake_root)
    if not lake.exists(SENSOR_READINGS.path):
        return None
    columns = ["device_id", "sensor_id", "source_protocol", "ts", "value", "unit", "quality"]
    frame = lake.read(
        SENSOR_READINGS.path,
        columns=[*columns, "ingested_at"],
        where=f"date >= '{started.date().isoformat()}'",
    )
    frame = frame[pd.to_datetime(frame["ingested_at"], utc=True) >= started]
    return frame[columns]


def _readings_table(readings: pd.DataFrame) -> str:
    rows = []
    for (device, sensor), group in readings.groupby(["device_id", "sensor_id"], sort=True):
        values = group["value"].dropna()
        rows.append(
            [
                str(device),
                str(sensor),
                str(group["source_protocol"].iloc[0]),
                len(group),
                int((group["quality"] == "bad").sum()),
                f"{values.min():.2f}" if len(values) else "-",
                f"{values.max():.2f}" if len(values) else "-",
                str(group["unit"].iloc[0] or ""),
            ]
        )
    header = ["device", "sensor", "protocol", "readings", "bad", "min", "max", "unit"]
    return f"readings landed in this run: {len(readings)}\n{_table(header, rows)}"


def _table(header: list[str], rows: list[list[Any]]) -> str:
    """Indented columns: numbers right-aligned, text left-aligned."""
    cells = [header, *[[str(cell) for cell in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    right = [all(_is_number(row[i]) for row in cells[1:]) for i in range(len(header))]
    return "\n".join(
        "  "
        + "  ".join(
            cell.rjust(width) if numeric else cell.ljust(width)
            for cell, width, numeric in zip(row, widths, right, strict=True)
        ).rstrip()
        for row in cells
    )


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return cell == "-"
    return True


def _rollups(
    instance: dg.DagsterInstance,
    job: dg.JobDefinition,
    lake_root: str,
    devices: Path,
    days: list[date],
    since: datetime,
) -> list[str]:
    """``telemetry_rollups_job`` for the run's day(s); a few of its 1-minute rows."""
    from integration_platform.defs.telemetry.assets import DEVICES_VAR, ROLLUPS_1M
    from integration_platform.lake import DeltaIOManager, DeltaLake

    lake = DeltaLake(uri=lake_root)
    lines = []
    with environment({DEVICES_VAR: str(devices)}):  # the registry the readings came from
        for day in days:
            result = job.execute_in_process(
                partition_key=day.isoformat(),
                instance=instance,
                resources={"lake": lake, "io_manager": DeltaIOManager(lake=lake)},
                run_config={"loggers": {"console": {"config": {"log_level": "WARNING"}}}},
                raise_on_error=False,
            )
            lines.append(
                f"{job.name} [{day}] {'succeeded' if result.success else 'FAILED'}"
                f" (run {result.run_id}): gold/sensor_rollups_1m, _1h, telemetry_gaps, "
                "condition_triggers"
            )
    if not lake.exists(ROLLUPS_1M.path):
        return lines
    values = ", ".join(f"'{day.isoformat()}'" for day in days)
    rollups = lake.read(ROLLUPS_1M.path, where=f"date IN ({values})")
    end = pd.to_datetime(rollups["window_end"], utc=True)
    rollups = rollups[(rollups["device_id"] == FAULT_SENSOR[0]) & (end > since)]
    if rollups.empty:
        return lines
    rows = [
        [
            str(row.sensor_id),
            pd.Timestamp(row.window_start).strftime("%H:%M"),
            int(row.count),
            *(_number(getattr(row, name)) for name in ("min", "max", "mean", "rms")),
        ]
        for row in rollups.sort_values(["window_start", "sensor_id"]).itertuples()
    ]
    header = ["sensor", "window", "count", "min", "max", "mean", "rms"]
    lines += [f"gold/sensor_rollups_1m of {FAULT_SENSOR[0]}, this run's windows (UTC):"]
    return [*lines, _table(header, rows)]


def _number(value: Any) -> str:
    return "-" if value is None or pd.isna(value) else f"{value:.2f}"


def _alerts_of_run(engine: Any, since: datetime) -> list[Any]:
    import sqlalchemy as sa
    from sqlalchemy.orm import Session

    from integration_platform.state.devices import SensorAlert

    with Session(engine, expire_on_commit=False) as session:
        return list(
            session.scalars(
                sa.select(SensorAlert)
                .where(SensorAlert.raised_at >= since)
                .order_by(SensorAlert.raised_at, SensorAlert.id)
            )
        )


def _sensor_tick(instance: dg.DagsterInstance, lake_root: str, state_url: str) -> str:
    """One evaluation of the work-order sensor (what the daemon does every 30 s), with the
    resources ``defs`` binds, pointed at this demo's lake and state DB."""
    from integration_platform.defs.alerts.resources import CbmCmms
    from integration_platform.defs.alerts.sensors import cbm_work_orders_critical_alert_sensor
    from integration_platform.lake import DeltaLake
    from integration_platform.state import StateDatabase

    context = dg.build_sensor_context(
        instance=instance,
        resources={
            "state": StateDatabase(url=state_url),
            "cbm_cmms": CbmCmms(),
            "lake": DeltaLake(uri=lake_root),
        },
    )
    outcome = cbm_work_orders_critical_alert_sensor(context)
    return getattr(outcome, "skip_message", None) or str(outcome)


def _when(value: datetime | None) -> str:
    if value is None:
        return "-"
    value = value if value.tzinfo else value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _latency_ms(entry: Mapping[str, Any]) -> float:
    raised = datetime.fromisoformat(str(entry["raised_at"]))
    reading = datetime.fromisoformat(str(entry["reading_ts"]))
    return (raised - reading).total_seconds() * 1000.0


def _alert_lines(alerts: list[Any]) -> list[str]:
    if not alerts:
        return ["alerts: none raised in this run"]
    lines = []
    for alert in alerts:
        relation = ">=" if alert.direction == "above" else "<="
        unit = f" {alert.unit}" if alert.unit else ""
        lines.append(
            f"alert #{alert.id} {alert.device_id}/{alert.sensor_id} ({alert.sensor_type}, asset "
            f"{alert.asset_id}): {alert.severity}, {alert.status}; episode {alert.episode_key}"
        )
        for entry in alert.severity_history or []:
            reading_ts = datetime.fromisoformat(str(entry["reading_ts"]))
            lines.append(
                f"  {entry['severity']:8} value {entry['value']:.2f}{unit} {relation} threshold "
                f"{entry['threshold']:g}{unit} (reading of {_when(reading_ts)}), raised "
                f"{_latency_ms(entry):.0f} ms after it was published"
            )
    return lines


def _work_order_lines(engine: Any, alerts: list[Any]) -> list[str]:
    import textwrap

    import sqlalchemy as sa
    from sqlalchemy.orm import Session

    from integration_platform.state.devices import CbmWorkOrder

    lines = []
    with Session(engine) as session:
        for alert in alerts:
            if not alert.work_order_id:
                continue
            lines.append(
                f"work order {alert.work_order_id} ({alert.work_order_system}, status "
                f"{alert.work_order_status}) opened for alert #{alert.id}, asset {alert.asset_id}"
            )
            outbox = session.scalar(
                sa.select(CbmWorkOrder).where(CbmWorkOrder.reference == alert.work_order_id)
            )
            if outbox is not None:
                lines.append(f"  {outbox.priority} {outbox.work_type}: {outbox.title}")
                lines += textwrap.wrap(
                    outbox.description or "", width=98, initial_indent="  ", subsequent_indent="  "
                )
    return lines
