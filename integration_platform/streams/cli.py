"""``integration-platform collect | simulate | devices check``: the stream commands.

Handlers import what they need when they run, so ``--help`` answers at once.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

EXAMPLE_DEVICES = Path(__file__).parent / "examples" / "devices.yaml"


def add_stream_commands(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add ``collect``, ``simulate`` and ``devices`` to the top-level sub-command parsers."""
    collect = subparsers.add_parser(
        "collect",
        help="run the sensor collectors (MQTT, Modbus, OPC-UA, CoAP, BACnet) into the Delta "
        "telemetry table",
        description=(
            "Collects every enabled device of the registry into a local spool "
            "(<data dir>/spool/) and writes it in micro-batches to "
            "telemetry/sensor_readings in the lake, each batch once. SIGTERM or Ctrl-C "
            "flushes and exits. The registry is reloaded when the file changes. "
            "See docs/streams.md."
        ),
    )
    collect.add_argument("--devices", required=True, metavar="FILE", help="device registry YAML")
    collect.add_argument(
        "--data-dir", help="data folder (default: INTEGRATION_PLATFORM_DATA_DIR or ./data)"
    )
    collect.add_argument(
        "--lake-uri", help="lake root (default: INTEGRATION_PLATFORM_LAKE_URI or <data dir>/lake)"
    )
    collect.add_argument(
        "--flush-rows",
        type=_positive_int,
        default=5000,
        metavar="N",
        help="write when N readings are pending (default 5000)",
    )
    collect.add_argument(
        "--flush-seconds",
        type=_positive_float,
        default=2.0,
        metavar="S",
        help="write at least every S seconds (default 2: readings are queryable within ~3 s)",
    )
    collect.add_argument(
        "--client-id", help="fixed MQTT client id (default: the registry's collector.client_id)"
    )
    collect.add_argument(
        "--app-id", help="writer id in Delta transactions (default: collector:<client id>)"
    )
    collect.add_argument(
        "--shared-group", help="subscribe as $share/<group>/... to share load with other collectors"
    )
    collect.add_argument(
        "--spool-max-mb",
        type=_positive_float,
        default=1024.0,
        metavar="MB",
        help="spool size limit (default 1024)",
    )
    collect.add_argument(
        "--progress-seconds",
        type=_positive_float,
        default=10.0,
        metavar="S",
        help="progress log interval (default 10)",
    )
    collect.add_argument(
        "--offline-after",
        type=_positive_float,
        default=60.0,
        metavar="S",
        help="state DB: a device silent this long is marked offline (default 60)",
    )
    collect.add_argument(
        "--no-state",
        action="store_true",
        help="no alerts or device status in the state DB (INTEGRATION_PLATFORM_DB_URL)",
    )
    collect.add_argument(
        "--log-level", default="info", choices=["debug", "info", "warning", "error"]
    )
    collect.set_defaults(handler=run_collect)

    simulate = subparsers.add_parser(
        "simulate",
        help="simulate the example plant: MQTT publishers, Modbus, OPC-UA, CoAP and BACnet servers",
        description=(
            "Publishes realistic signals (daily cycle, drift, noise, and a bearing fault that "
            "drives vibration past its critical threshold) for the MQTT devices of the "
            "registry, and serves the Modbus, OPC-UA, CoAP and BACnet devices on 127.0.0.1."
        ),
    )
    simulate.add_argument(
        "--devices",
        default=str(EXAMPLE_DEVICES),
        metavar="FILE",
        help="device registry (default: the shipped example)",
    )
    simulate.add_argument(
        "--mqtt-url",
        default="mqtt://127.0.0.1:1883",
        help="broker to publish to (default mqtt://127.0.0.1:1883)",
    )
    simulate.add_argument(
        "--duration",
        type=_positive_float,
        metavar="S",
        help="stop after S seconds (default: until Ctrl-C)",
    )
    simulate.add_argument(
        "--interval",
        type=_positive_float,
        default=1.0,
        metavar="S",
        help="seconds between values (default 1)",
    )
    simulate.add_argument(
        "--fault-after",
        type=float,
        metavar="S",
        help="start the bearing fault after S simulated seconds (default: half the run, else 120)",
    )
    simulate.add_argument(
        "--time-scale",
        type=_positive_float,
        default=1.0,
        help="simulated seconds per real second for drift and fault (default 1)",
    )
    simulate.add_argument(
        "--modbus-port",
        type=int,
        metavar="PORT",
        help="port of the first Modbus device (0: a free port; default: its endpoint's)",
    )
    simulate.set_defaults(handler=run_simulate)

    devices = subparsers.add_parser(
        "devices",
        help="device registry: check a file, apply it to the state DB, list and show devices",
        description="Device registry tools.",
    )
    device_commands = devices.add_subparsers(
        title="devices commands", metavar="DEVICES_COMMAND", required=True
    )
    check = device_commands.add_parser(
        "check",
        help="check registry files and report every problem with file, line and field",
        description="Exit status 1 when a file has problems.",
    )
    check.add_argument("files", nargs="+", metavar="FILE")
    check.set_defaults(handler=run_devices_check)

    from integration_platform.streams.alerts_cli import add_alert_commands, add_device_db_commands

    add_device_db_commands(device_commands)
    add_alert_commands(subparsers)


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError("must be greater than 0")
    return value


def _logging(level: str) -> None:
    if not logging.getLogger().handlers:
        logging.basicConfig(
            level=level.upper(),
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
            stream=sys.stderr,
        )
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)  # outages are logged by us, once


@contextlib.contextmanager
def _stop_on_signals() -> Iterator[threading.Event]:
    """An event set by SIGTERM/SIGINT while the block runs; the old handlers come back after."""
    stop = threading.Event()

    def handle(signum: int, frame: object) -> None:
        logging.getLogger(__name__).info("signal %d received: stopping", signum)
        stop.set()

    previous = {sig: signal.signal(sig, handle) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield stop
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def run_collect(args: argparse.Namespace) -> int:
    from integration_platform.lake.resource import lake_uri
    from integration_platform.settings import DATA_DIR_VAR, LAKE_URI_VAR, ConfigError, data_dir
    from integration_platform.streams.collector import Collector, CollectorConfig
    from integration_platform.streams.devices import RegistryError
    from integration_platform.streams.spool import SpoolError

    _logging(args.log_level)
    env = dict(os.environ)
    if args.data_dir:
        env[DATA_DIR_VAR] = args.data_dir
    if args.lake_uri:
        env[LAKE_URI_VAR] = args.lake_uri
    config = CollectorConfig(
        devices_file=Path(args.devices),
        data_dir=data_dir(env),
        lake_root=lake_uri(env),
        flush_rows=args.flush_rows,
        flush_seconds=args.flush_seconds,
        client_id=args.client_id,
        app_id=args.app_id,
        shared_group=args.shared_group,
        spool_max_bytes=int(args.spool_max_mb * 1024 * 1024),
        progress_seconds=args.progress_seconds,
        offline_after_seconds=args.offline_after,
        state_enabled=not args.no_state,
    )
    try:
        collector = Collector(config)
        with _stop_on_signals() as stop:
            collector.run(stop)
    except (RegistryError, SpoolError, ConfigError) as exc:
        print(exc, file=sys.stderr)
        return 2
    return 0 if collector.spool.pending == 0 else 1


def run_simulate(args: argparse.Namespace) -> int:
    import asyncio

    from integration_platform.streams.devices import RegistryError, load_registry
    from integration_platform.streams.simulate import run_simulator

    _logging("info")
    try:
        registry = load_registry(args.devices)
    except RegistryError as exc:
        print(exc, file=sys.stderr)
        return 2
    try:
        with _stop_on_signals() as stop:
            stats = asyncio.run(
                run_simulator(
                    registry,
                    mqtt_url=args.mqtt_url,
                    duration_s=args.duration,
                    interval_s=args.interval,
                    fault_after_s=args.fault_after,
                    time_scale=args.time_scale,
                    modbus_port=args.modbus_port,
                    stop=stop,
                )
            )
    except (OSError, ValueError) as exc:
        print(f"simulate: {exc}", file=sys.stderr)
        return 1
    print(f"published {stats.published} messages in {stats.ticks} ticks")
    return 0


def run_devices_check(args: argparse.Namespace) -> int:
    from integration_platform.streams.devices import RegistryError, load_registry

    failed = 0
    for file in args.files:
        try:
            registry = load_registry(file)
        except RegistryError as exc:
            failed += 1
            print(exc, file=sys.stderr)
            continue
        sensors = sum(len(d.sensors) for d in registry.devices)
        print(f"{file}: ok: {len(registry.devices)} devices, {sensors} sensors")
    return 1 if failed else 0
