"""``integration-platform devices apply|list|show`` and ``alerts list|show|ack|work-orders``.

The state DB is the platform's (``INTEGRATION_PLATFORM_DB_URL``, else the embedded SQLite
file); each command migrates it to the current schema first, as the services do.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session


def add_device_db_commands(device_commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """``devices apply|list|show`` under the existing ``devices`` command."""
    apply = device_commands.add_parser(
        "apply",
        help="make the state DB's device registry match a registry file",
        description=(
            "Upserts the file's devices and sensors (protocol, endpoint, sensor type, unit, "
            "valid range, calibration date, thresholds, maintained asset) into the state DB; "
            "devices no longer in the file are marked retired, not deleted."
        ),
    )
    apply.add_argument("file", metavar="FILE")
    apply.set_defaults(handler=run_devices_apply)
    listing = device_commands.add_parser(
        "list",
        help="devices in the state DB: protocol, status, last heartbeat, open alerts",
        description="Status as the collector last reported it; a stale heartbeat shows offline.",
    )
    listing.add_argument("--all", action="store_true", help="include retired devices")
    listing.add_argument("--json", action="store_true", help="print JSON lines")
    listing.set_defaults(handler=run_devices_list)
    show = device_commands.add_parser(
        "show", help="one device with its sensors and open alerts", description="One device."
    )
    show.add_argument("device_id", metavar="ID")
    show.set_defaults(handler=run_devices_show)


def add_alert_commands(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    alerts = subparsers.add_parser(
        "alerts",
        help="alerts raised by the collector (thresholds, silent devices): list, show, ack",
        description=(
            "Alert episodes in the state DB (table sensor_alerts): a sensor past a threshold, "
            "or a device silent for longer than its limit (kind silence, sensor '*'). The "
            "collector raises and resolves them; a person acknowledges them; critical ones "
            "open work orders."
        ),
    )
    commands = alerts.add_subparsers(title="alerts commands", metavar="ALERTS_COMMAND")
    commands.required = True
    listing = commands.add_parser("list", help="alerts, newest first (default: not resolved)")
    listing.add_argument(
        "--status",
        choices=["open", "acknowledged", "resolved", "active", "all"],
        default="active",
        help="active = open or acknowledged (default)",
    )
    listing.add_argument("--device", metavar="ID")
    listing.add_argument("--severity", choices=["warning", "critical"])
    listing.add_argument(
        "--kind", choices=["threshold", "silence"], help="silence: devices that went quiet"
    )
    listing.add_argument("--limit", type=int, default=50)
    listing.add_argument("--json", action="store_true", help="print JSON lines")
    listing.set_defaults(handler=run_alerts_list)
    show = commands.add_parser("show", help="one alert: values, history, work order")
    show.add_argument("ref", metavar="ID_OR_EPISODE_KEY")
    show.set_defaults(handler=run_alerts_show)
    ack = commands.add_parser("ack", help="acknowledge an alert (who took note of it)")
    ack.add_argument("ref", metavar="ID_OR_EPISODE_KEY")
    ack.add_argument("--by", required=True, metavar="NAME", help="who acknowledges")
    ack.add_argument("--note", help="a short note")
    ack.set_defaults(handler=run_alerts_ack)
    outbox = commands.add_parser(
        "work-orders",
        help="work orders kept locally when no CMMS is configured (the outbox)",
    )
    outbox.add_argument(
        "--complete", metavar="REFERENCE", help="mark this outbox work order completed"
    )
    outbox.set_defaults(handler=run_outbox)


@contextmanager
def _session() -> Iterator[Session]:
    from integration_platform.state import database_url, make_engine, migrate

    url = database_url()
    migrate.upgrade(url)
    engine = make_engine(url)
    try:
        with Session(engine, expire_on_commit=False) as session, session.begin():
            yield session
    finally:
        engine.dispose()


def _when(value: datetime | None) -> str:
    return value.isoformat(timespec="seconds") if value is not None else "-"


def _table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(header, widths, strict=True))]
    lines += ["  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join(line.rstrip() for line in lines)


def run_devices_apply(args: argparse.Namespace) -> int:
    from pathlib import Path

    from integration_platform.streams.devices import RegistryError, load_registry
    from integration_platform.streams.registry_db import apply_registry

    try:
        registry = load_registry(args.file)
    except RegistryError as exc:
        print(exc, file=sys.stderr)
        return 2
    with _session() as session:
        result = apply_registry(session, registry, source=str(Path(args.file).resolve()))
    print(f"{args.file}: {result.summary()}")
    if result.retired:
        print(f"retired: {', '.join(result.retired)}")
    return 0


def run_devices_list(args: argparse.Namespace) -> int:
    from integration_platform.streams.registry_db import list_devices

    with _session() as session:
        devices = list_devices(session, include_retired=args.all)
    if args.json:
        for d in devices:
            print(json.dumps({**d.__dict__, "last_heartbeat": _when(d.last_heartbeat)}))
        return 0
    rows = [
        [d.device_id, d.protocol, d.status, _when(d.last_heartbeat), str(d.open_alerts)]
        for d in devices
    ]
    print(_table(rows, ["DEVICE", "PROTOCOL", "STATUS", "LAST HEARTBEAT", "OPEN ALERTS"]))
    return 0


def run_devices_show(args: argparse.Namespace) -> int:
    from integration_platform.streams.registry_db import show_device

    with _session() as session:
        found = show_device(session, args.device_id)
    if found is None:
        print(f"no device {args.device_id!r} in the state DB (devices apply FILE)", file=sys.stderr)
        return 1
    d = found["device"]
    print(f"device {d.device_id} ({d.name or '-'})")
    for label, value in [
        ("protocol", d.protocol),
        ("endpoint", d.endpoint),
        ("site", d.site),
        ("asset", d.asset_id),
        ("enabled", d.enabled),
        ("registry", d.registry_state + (f" since {_when(d.retired_at)}" if d.retired_at else "")),
        ("status", f"{found['shown_status']} ({d.status_detail or '-'})"),
        ("last heartbeat", _when(d.last_heartbeat)),
        ("last reading", _when(d.last_reading_ts)),
        ("settings", json.dumps(d.settings, sort_keys=True)),
    ]:
        print(f"  {label:15} {value if value is not None else '-'}")
    rows = []
    for s in found["sensors"]:
        valid = f"[{s.valid_min}, {s.valid_max}]" if s.valid_min is not None else "-"
        th = s.thresholds or {}
        limits = (
            f"{th.get('direction')} w={th.get('warning')} c={th.get('critical')}" if th else "-"
        )
        rows.append(
            [
                s.sensor_id,
                s.sensor_type,
                s.unit or "-",
                valid,
                limits,
                str(s.calibration_date or "-"),
                s.asset_id or "-",
                s.registry_state,
            ]
        )
    print()
    print(
        _table(
            rows,
            ["SENSOR", "TYPE", "UNIT", "VALID", "THRESHOLDS", "CALIBRATED", "ASSET", "STATE"],
        )
    )
    if found["open_alerts"]:
        print()
        print(_alert_table(found["open_alerts"]))
    return 0


def _alert_table(alerts: list[Any]) -> str:
    """One line per episode; a silence episode names the device and says why in REASON."""
    from integration_platform.streams.alert_store import describe

    rows = [
        [
            str(a.id),
            a.severity,
            a.status,
            a.device_id if a.kind == "silence" else f"{a.device_id}/{a.sensor_id}",
            _number(a.value, a.unit if a.kind == "silence" else None),
            _number(a.threshold, a.unit if a.kind == "silence" else None),
            _when(a.reading_ts),
            a.work_order_id or "-",
            describe(a),
        ]
        for a in alerts
    ]
    header = ["ID", "SEVERITY", "STATUS", "SENSOR", "VALUE", "LIMIT", "READING TS", "WORK ORDER"]
    return _table(rows, [*header, "REASON"])


def _number(value: float | None, unit: str | None = None) -> str:
    if value is None:
        return "-"
    return f"{value:g} {unit}" if unit else f"{value:g}"


def _alert_dict(alert: Any) -> dict[str, Any]:
    from integration_platform.streams.alert_store import latency_ms

    out = {c.name: getattr(alert, c.name) for c in alert.__table__.columns}
    out["latency_ms"] = round(latency_ms(alert), 1)
    return {k: v.isoformat() if isinstance(v, datetime) else v for k, v in out.items()}


def run_alerts_list(args: argparse.Namespace) -> int:
    from integration_platform.streams.alert_store import list_alerts

    statuses = {
        "active": ("open", "acknowledged"),
        "all": (),
    }.get(args.status, (args.status,))
    with _session() as session:
        alerts = list_alerts(
            session,
            statuses=statuses,
            device_id=args.device,
            severity=args.severity,
            kind=args.kind,
            limit=args.limit,
        )
    if args.json:
        for alert in alerts:
            print(json.dumps(_alert_dict(alert), default=str))
    else:
        print(_alert_table(alerts))
    return 0


def run_alerts_show(args: argparse.Namespace) -> int:
    from integration_platform.streams.alert_store import AlertNotFound, get_alert

    try:
        with _session() as session:
            alert = get_alert(session, args.ref)
    except AlertNotFound as exc:
        print(exc, file=sys.stderr)
        return 1
    for name, value in _alert_dict(alert).items():
        if name == "severity_history":
            continue
        print(f"{name:24} {value if value is not None else '-'}")
    print("severity history:")
    for entry in alert.severity_history:
        print(f"  {json.dumps(entry, sort_keys=True)}")
    return 0


def run_alerts_ack(args: argparse.Namespace) -> int:
    from integration_platform.streams.alert_store import AlertNotFound, acknowledge

    try:
        with _session() as session:
            alert = acknowledge(session, args.ref, by=args.by, note=args.note)
    except (AlertNotFound, ValueError) as exc:
        print(exc, file=sys.stderr)
        return 1
    print(
        f"alert {alert.id} ({alert.episode_key}) {alert.status}; acknowledged by "
        f"{alert.acknowledged_by} at {_when(alert.acknowledged_at)}"
    )
    return 0


def run_outbox(args: argparse.Namespace) -> int:
    from integration_platform.streams.cbm import OutboxGateway, list_outbox

    with _session() as session:
        if args.complete:
            if not OutboxGateway.complete(session, args.complete):
                print(f"no outbox work order {args.complete!r}", file=sys.stderr)
                return 1
            print(f"work order {args.complete} completed")
            return 0
        orders = list_outbox(session)
    rows = [
        [
            o.reference,
            o.status,
            o.asset_id or "-",
            o.schedule_id or "-",
            o.title,
            _when(o.created_at),
        ]
        for o in orders
    ]
    print(_table(rows, ["REFERENCE", "STATUS", "ASSET", "SCHEDULE", "TITLE", "CREATED"]))
    return 0
