"""The ``integration-platform`` command: operator tasks and long-running services.

Heavy modules are imported inside each command so ``--help`` answers at once.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

from integration_platform.settings import ConfigError

DEFAULT_DAGSTER_HOME = ".dagster_home"
# Step-level progress without Dagster's per-event debug lines (all of them are in the UI).
QUIET_LOGS = {"loggers": {"console": {"config": {"log_level": "INFO"}}}}


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "handler"):
        parser.print_help()
        return 2
    try:
        return int(args.handler(args) or 0)
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="integration-platform",
        description="Integration hub for industrial maintenance (a Dagster code location).",
    )
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")

    demo = commands.add_parser(
        "demo",
        help="run the main job on the embedded defaults and show what it produced",
        description=(
            "Runs maintenance_kpis_job (sample CMMS export -> bronze -> silver -> gold) in this "
            "process against the Dagster instance in DAGSTER_HOME (default ./.dagster_home, "
            "SQLite), the local lake and the SQLite state database, then prints a summary."
        ),
    )
    demo.set_defaults(handler=run_demo)

    db = commands.add_parser(
        "db",
        help="operational state database: migrations",
        description=(
            "Migrations of the operational state database (INTEGRATION_PLATFORM_DB_URL, default "
            "SQLite under <data dir>/state/)."
        ),
    )
    db_commands = db.add_subparsers(title="db commands", metavar="DB_COMMAND", required=True)
    upgrade = db_commands.add_parser("upgrade", help="apply migrations up to a revision")
    upgrade.add_argument("revision", nargs="?", default="head", help="target (default: head)")
    upgrade.set_defaults(handler=run_db_upgrade)
    downgrade = db_commands.add_parser("downgrade", help="revert migrations down to a revision")
    downgrade.add_argument("revision", help="target revision, e.g. base or 0001")
    downgrade.set_defaults(handler=run_db_downgrade)
    current = db_commands.add_parser("current", help="print the applied revision")
    current.set_defaults(handler=run_db_current)
    return parser


def run_db_upgrade(args: argparse.Namespace) -> int:
    from integration_platform.state import database_url, migrate

    migrate.upgrade(revision=args.revision)
    url = database_url().render_as_string(hide_password=True)
    print(f"state database at {url} is at revision {migrate.current()}")
    return 0


def run_db_downgrade(args: argparse.Namespace) -> int:
    from integration_platform.state import migrate

    migrate.downgrade(None, args.revision)
    print(f"state database is at revision {migrate.current() or 'base'}")
    return 0


def run_db_current(args: argparse.Namespace) -> int:
    from integration_platform.state import migrate

    print(migrate.current() or "base (no migrations applied)")
    return 0


def ensure_dagster_home() -> Path:
    """DAGSTER_HOME, defaulting to ./.dagster_home seeded with the project's dagster.yaml."""
    home = Path(os.environ.get("DAGSTER_HOME") or DEFAULT_DAGSTER_HOME).resolve()
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    project_config = Path.cwd() / "dagster.yaml"
    if not config.exists() and project_config.is_file():
        shutil.copyfile(project_config, config)
    os.environ["DAGSTER_HOME"] = str(home)
    return home


def run_demo(args: argparse.Namespace) -> int:
    import dagster as dg

    from integration_platform.definitions import defs
    from integration_platform.defs.maintenance.jobs import MAINTENANCE_KPIS_JOB
    from integration_platform.demo import summarize
    from integration_platform.lake import lake_uri
    from integration_platform.state import migrate

    home = ensure_dagster_home()
    lake = lake_uri()
    migrate.upgrade()
    print(f"Dagster instance: {home}\nlake: {lake}\n")
    job = defs().resolve_job_def(MAINTENANCE_KPIS_JOB)
    with dg.DagsterInstance.get() as instance:
        result = job.execute_in_process(
            instance=instance, raise_on_error=False, run_config=QUIET_LOGS
        )
    print(summarize(result, lake))
    return 0 if result.success else 1


if __name__ == "__main__":
    raise SystemExit(main())
