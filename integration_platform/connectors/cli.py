"""``integration-platform connections ...``: what the platform knows about its connections.

``connections health`` prints the newest recorded check of each connection from the state
database (``connection_health_checks``, written by ``connections_health_job``), so an
operator sees status, endpoint, latency and outage start without opening Dagster or
touching the systems themselves. Imports happen inside the handler so ``--help`` is instant.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from typing import Any


def add_connection_commands(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the ``connections`` command group to the top-level sub-command parsers."""
    connections = subparsers.add_parser(
        "connections",
        help="declared connections: latest health",
        description="Connections to CMMS, ERP and SQL systems (ConnectionComponent in defs/).",
    )
    commands = connections.add_subparsers(
        title="connections commands", metavar="CONNECTIONS_COMMAND", required=True
    )
    health = commands.add_parser(
        "health",
        help="print the latest health check of each connection",
        description=(
            "Reads the newest check per connection from the state database "
            "(INTEGRATION_PLATFORM_DB_URL, default SQLite under <data dir>/state/), as recorded "
            "by connections_health_job. Exit status 1 when a connection is down, 0 otherwise."
        ),
    )
    health.add_argument(
        "--connection",
        action="append",
        default=[],
        metavar="NAME",
        help="only this connection (repeatable)",
    )
    health.add_argument("--json", action="store_true", help="one JSON object per connection")
    health.set_defaults(handler=run_health)


def run_health(args: argparse.Namespace) -> int:
    import sqlalchemy as sa

    from integration_platform.state.engine import database_url, make_engine
    from integration_platform.state.health import latest_checks

    url = database_url()
    engine = make_engine(url)
    try:
        found = latest_checks(engine, args.connection or None)
    except sa.exc.SQLAlchemyError as exc:
        reason = " ".join(str(getattr(exc, "orig", None) or exc).split())[:300]
        where = url.render_as_string(hide_password=True)
        print(
            f"cannot read connection health from the state database at {where}: {reason}. "
            "If the table is missing, run `integration-platform db upgrade`.",
            file=sys.stderr,
        )
        return 2
    finally:
        engine.dispose()
    missing = [name for name in args.connection if name not in found]
    if not found:
        print(
            "no health checks recorded yet: run connections_health_job (or turn on "
            "connections_health_job_schedule) in Dagster",
            file=sys.stderr,
        )
    now = datetime.now(UTC)
    rows = [found[name] for name in sorted(found)]
    if args.json:
        for row in rows:
            print(json.dumps(row.as_report() | {"connection": row.connection}, sort_keys=True))
    elif rows:
        print(format_table(rows, now))
    for name in missing:
        print(f"{name}: no check recorded", file=sys.stderr)
    return 1 if any(row.status == "down" for row in rows) else 0


def format_table(rows: list[Any], now: datetime) -> str:
    """Rows as aligned text: one line per connection, the detail last (it can be long)."""
    header = ("CONNECTION", "STATUS", "ENDPOINT", "LATENCY", "CHECKED", "DOWN SINCE", "DETAIL")
    lines = [header]
    for row in rows:
        since = f"{_stamp(row.down_since)} ({_ago(row.down_since, now)})" if row.down_since else ""
        lines.append(
            (
                row.connection,
                row.status,
                row.endpoint,
                f"{row.latency_ms:.0f} ms",
                f"{_stamp(row.checked_at)} ({_ago(row.checked_at, now)} ago)",
                since,
                row.detail.splitlines()[0] if row.detail else "",
            )
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(header) - 1)]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=False))
        + "  "
        + line[-1]
        for line in lines
    )


def _stamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _ago(moment: datetime, now: datetime) -> str:
    seconds = max((now - moment).total_seconds(), 0)
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
