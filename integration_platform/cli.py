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
            "SQLite), the local lake and the SQLite state database, then prints a summary; then "
            "a signed webhook event, and the simulated plant through the collector to an alert "
            "and its work order (needs an MQTT broker: MQTT_URL, default 127.0.0.1:1883)."
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

    mapping = commands.add_parser(
        "mapping",
        help="check and try field mappings without running Dagster",
        description="Check mapping specs (a component defs.yaml or a bare spec file) and try them "
        "on sample records.",
    )
    mapping_commands = mapping.add_subparsers(
        title="mapping commands", metavar="MAPPING_COMMAND", required=True
    )
    validate = mapping_commands.add_parser(
        "validate",
        help="compile mapping specs and report every problem with file, line and field",
        description="Compiles each FILE as the code location would; exit status 1 on problems.",
    )
    validate.add_argument("files", nargs="+", metavar="FILE", help="mapping spec files")
    validate.set_defaults(handler=run_mapping_validate)
    preview = mapping_commands.add_parser(
        "preview",
        help="map a sample file and print mapped rows and rejects",
        description="Applies the mapping in FILE to a CSV or JSON sample and prints the first "
        "mapped rows and every reject with its reason.",
    )
    preview.add_argument("file", metavar="FILE", help="mapping spec file")
    preview.add_argument("--sample", required=True, help="CSV or JSON file of source records")
    preview.add_argument(
        "--lookup",
        action="append",
        default=[],
        metavar="NAME=FILE",
        help="a CSV or JSON file for a lookup the mapping declares (repeatable)",
    )
    preview.add_argument("-n", "--rows", type=int, default=20, help="mapped rows to print")
    preview.set_defaults(handler=run_mapping_preview)

    from integration_platform.webhooks.cli import add_webhook_commands

    add_webhook_commands(commands)

    from integration_platform.streams.cli import add_stream_commands

    add_stream_commands(commands)

    from integration_platform.connectors.cli import add_connection_commands

    add_connection_commands(commands)

    from integration_platform.sync.cli import add_sync_commands

    add_sync_commands(commands)
    return parser


def run_mapping_validate(args: argparse.Namespace) -> int:
    from integration_platform.mapping.compiler import (
        MappingSpecError,
        compile_mapping,
        load_spec_file,
    )

    failed = 0
    for file in args.files:
        try:
            spec, source_map = load_spec_file(file)
            compiled = compile_mapping(spec, source_map=source_map)
        except MappingSpecError as error:
            failed += 1
            print(error, file=sys.stderr)
            continue
        except OSError as error:
            failed += 1
            print(f"{file}: cannot read: {error.strerror}", file=sys.stderr)
            continue
        target = "/".join(spec.key_path("target"))
        print(f"{file}: ok: {spec.source} -> {target} ({len(compiled.fields)} fields)")
    return 1 if failed else 0


def run_mapping_preview(args: argparse.Namespace) -> int:
    import pandas as pd

    from integration_platform.mapping.compiler import (
        MappingRuntimeError,
        MappingSpecError,
        compile_mapping,
        load_spec_file,
    )
    from integration_platform.mapping.samples import read_records

    try:
        spec, source_map = load_spec_file(args.file)
        compiled = compile_mapping(spec, source_map=source_map)
    except MappingSpecError as error:
        print(error, file=sys.stderr)
        return 1
    lookups = {}
    for item in args.lookup:
        name, _, path = item.partition("=")
        if not path or name not in spec.lookups:
            known = ", ".join(spec.lookups) or "none"
            print(
                f"--lookup {item!r}: expected NAME=FILE with NAME one of: {known}", file=sys.stderr
            )
            return 2
        lookups[name] = read_records(Path(path))
    absent = sorted(set(spec.lookups) - set(lookups))
    if absent:
        print(f"the mapping needs --lookup for: {', '.join(absent)}", file=sys.stderr)
        return 2
    try:
        outcome = compiled.apply(read_records(Path(args.sample)), lookups)
    except MappingRuntimeError as error:
        print(error, file=sys.stderr)
        return 1
    with pd.option_context("display.width", 200, "display.max_columns", 12):
        print(
            f"{len(outcome.valid)} mapped, {len(outcome.rejected)} rejected, "
            f"{outcome.filtered} filtered, {outcome.superseded} superseded "
            f"of {outcome.input_rows} records\n"
        )
        print(outcome.valid.head(args.rows).to_string(index=False))
        if len(outcome.rejected):
            print("\nrejected:")
            key = spec.key[-1] if spec.key else None
            for index, row in outcome.rejected.iterrows():
                label = row[key] if key else index
                line = row.get("_source_line")
                where = f" (line {line})" if line is not None and pd.notna(line) else ""
                print(f"  {label}{where}: {row['reject_reason']}")
    return 0


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
    definitions = defs()
    job = definitions.resolve_job_def(MAINTENANCE_KPIS_JOB)
    with dg.DagsterInstance.get() as instance:
        result = job.execute_in_process(
            instance=instance, raise_on_error=False, run_config=QUIET_LOGS
        )
    print(summarize(result, lake))
    if not result.success:
        return 1
    from integration_platform.state import database_url
    from integration_platform.webhooks.demo import run_webhook_demo

    print("\nWebhook: a signed maintenance event, received, stored and applied")
    with dg.DagsterInstance.get() as instance:
        print(run_webhook_demo(instance, lake, database_url().render_as_string(False)))
    from integration_platform.settings import data_dir
    from integration_platform.streams.demo import run_streams_demo

    print("\nStreams: a simulated plant, the collector, rollups, an alert and its work order")
    with dg.DagsterInstance.get() as instance:
        streams = run_streams_demo(
            instance,
            lake,
            database_url().render_as_string(False),
            data_dir(),
            definitions=definitions,
        )
    print(streams.text)
    # The demo ran Delta writers, Arrow thread pools and a receiver in this process; their
    # native runtimes can abort while the interpreter tears them down ("terminate called
    # without an active exception"), turning a finished demo into exit status 134. Everything
    # is committed and printed by now, so leave without that teardown.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(1 if streams.status == "failed" else 0)


if __name__ == "__main__":
    raise SystemExit(main())
