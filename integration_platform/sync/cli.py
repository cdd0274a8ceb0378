"""``integration-platform sync ...`` and ``integration-platform conflicts ...``.

``sync run`` runs a declared sync from its ``defs.yaml`` in this process (``--dry-run`` prints
the planned changes and conflicts and writes nothing); ``sync runs`` and ``sync history`` show
what happened, down to why each conflict of a record was decided the way it was;
``sync validate`` checks declarations as the code location would. ``conflicts list|show|
resolve`` work the queue of conflicts waiting for a person; a resolution is applied by the
next run of the sync. Everything reads the state database of ``INTEGRATION_PLATFORM_DB_URL``
(default: the SQLite file under the data folder). Handlers import what they need when they
run, so ``--help`` stays instant.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

    from integration_platform.components.sync_resolve import ResolvedSync

ENTITIES = ("work_order", "asset", "maintenance_schedule")
CONFLICT_STATUSES = ("open", "resolved", "applied", "superseded", "all")
CELL_WIDTH = 60  # one value
TEXT_WIDTH = 130  # a table cell: reasons, or "old -> new"


def add_sync_commands(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the ``sync`` and ``conflicts`` command groups to the top-level parsers."""
    _add_sync(subparsers)
    _add_conflicts(subparsers)


def _add_sync(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    sync = subparsers.add_parser(
        "sync",
        help="bidirectional syncs: run one, list runs, show a record's change history",
        description="Syncs declared with SyncComponent (a defs.yaml). State: "
        "INTEGRATION_PLATFORM_DB_URL. See docs/sync.md.",
    )
    commands = sync.add_subparsers(title="sync commands", metavar="SYNC_COMMAND", required=True)

    run = commands.add_parser(
        "run",
        help="run a declared sync now (--dry-run: plan only)",
        description="Reads both systems, decides conflicts by the declared policies and applies "
        "the changes as one unit, like one run of the sync's Dagster job. With --dry-run it "
        "prints the planned changes and conflicts and writes nothing, anywhere. Exit status 1 "
        "when the run was rolled back.",
    )
    run.add_argument("name", help="the sync's name in the declaration")
    run.add_argument(
        "--defs",
        metavar="FILE",
        help="the SyncComponent defs.yaml declaring it (default: search integration_platform/"
        "defs/)",
    )
    run.add_argument("--dry-run", action="store_true", help="plan and print; write nothing")
    run.add_argument(
        "--full",
        action="store_true",
        help="read both systems in full, also when the sync reads incrementally",
    )
    run.add_argument("--json", action="store_true", help="print the report as JSON")
    run.set_defaults(handler=run_sync)

    runs = commands.add_parser(
        "runs",
        help="the latest runs with their counts, status and cause",
        description="Runs of every sync (or one), newest first.",
    )
    runs.add_argument("--sync", metavar="NAME", help="only this sync")
    runs.add_argument("--limit", type=int, default=20, help="runs to show (default 20)")
    runs.add_argument("--json", action="store_true", help="print JSON records")
    runs.set_defaults(handler=run_runs)

    history = commands.add_parser(
        "history",
        help="every change a sync made to one record, and why",
        description="The full change history of a record, oldest first: each applied field "
        "change with the run, the systems, the strategy and the reason; for a decided conflict "
        "both values and who decided (with the note). Open conflicts of the record follow.",
    )
    history.add_argument("--entity", required=True, choices=ENTITIES, help="the record's entity")
    history.add_argument("--system", required=True, help="a system of the sync, e.g. maximo")
    history.add_argument(
        "--id", required=True, dest="external_id", help="the record's id in that system"
    )
    history.add_argument("--json", action="store_true", help="print JSON records")
    history.set_defaults(handler=run_history)

    validate = commands.add_parser(
        "validate",
        help="check sync declarations, reporting every problem with file, line and field",
        description="Loads each FILE as the code location would (connections included); exit "
        "status 1 on problems.",
    )
    validate.add_argument("files", nargs="+", metavar="FILE", help="SyncComponent defs.yaml files")
    validate.set_defaults(handler=run_validate)


def _add_conflicts(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    conflicts = subparsers.add_parser(
        "conflicts",
        help="the queue of sync conflicts waiting for a person: list, show, resolve",
        description="Fields both systems changed to different values that a policy did not "
        "decide. A resolution is applied by the next run of the sync.",
    )
    commands = conflicts.add_subparsers(
        title="conflicts commands", metavar="CONFLICTS_COMMAND", required=True
    )

    listing = commands.add_parser("list", help="conflicts, newest first (open ones by default)")
    listing.add_argument("--sync", metavar="NAME", help="only this sync")
    listing.add_argument(
        "--status", choices=CONFLICT_STATUSES, default="open", help="which (default: open)"
    )
    listing.add_argument("--limit", type=int, default=100, help="at most this many (default 100)")
    listing.add_argument("--json", action="store_true", help="print JSON records")
    listing.set_defaults(handler=run_conflicts_list)

    show = commands.add_parser(
        "show", help="one conflict: both values, the base, when each side changed, outcome"
    )
    show.add_argument("id", type=int, help="conflict id (from conflicts list)")
    show.add_argument("--json", action="store_true", help="print JSON")
    show.set_defaults(handler=run_conflicts_show)

    resolve = commands.add_parser(
        "resolve",
        help="decide a conflict: keep the left or right value, or give one",
        description="Records the decision (who, when, why); the next run of the sync writes the "
        "chosen value to every system that differs and marks the conflict applied. --value is "
        'read as JSON when it parses (12.5, null, "text"), else as text.',
    )
    resolve.add_argument("id", type=int, help="conflict id (from conflicts list)")
    choice = resolve.add_mutually_exclusive_group(required=True)
    choice.add_argument("--take", choices=("left", "right"), help="keep this system's value")
    choice.add_argument("--value", help="keep this value instead")
    resolve.add_argument("--by", required=True, help="who decides (recorded in the audit trail)")
    resolve.add_argument("--note", help="why (shown in the record's history)")
    resolve.set_defaults(handler=run_conflicts_resolve)


# -- sync ---------------------------------------------------------------------------------------


def run_sync(args: argparse.Namespace) -> int:
    from integration_platform.components.sync_resolve import connector_for
    from integration_platform.lake import DeltaLake
    from integration_platform.state import StateDatabase
    from integration_platform.sync import SyncBusy, SyncEngine

    sync = _load_sync(args.name, args.defs)
    if sync is None:
        return 2
    left = sync.left.build_adapter(connector_for(sync.left))
    right = sync.right.build_adapter(connector_for(sync.right))
    engine = SyncEngine(sync.spec, left, right, StateDatabase(), lake=DeltaLake())
    with _progress(quiet=args.json), _state_errors():
        try:
            report = engine.run(dry_run=args.dry_run, triggered_by=f"cli {_user()}", full=args.full)
        except SyncBusy as exc:
            print(exc, file=sys.stderr)
            return 1
    if args.json:
        print(json.dumps(_report_json(report), default=_json_default, indent=2))
        return 0 if report.ok else 1
    print(report.summary())
    for problem in report.problems:
        print(f"  not planned: {problem}")
    if report.dry_run:
        _print_plan(report)
    return 0 if report.ok else 1


def _print_plan(report: Any) -> None:
    planned = report.planned
    print(f"\nplanned changes ({len(planned)} field writes; nothing was written):")
    if len(planned):
        frame = planned.assign(
            change=[
                f"{_cell(old)} -> {_cell(new)}"
                for old, new in zip(planned["old_value"], planned["new_value"], strict=True)
            ]
        )
        _table(
            frame,
            ["system", "operation", "external_id", "field", "change", "source_system", "strategy"],
        )
    conflicts = report.conflicts
    print(f"\nconflicts ({len(conflicts)}):")
    if len(conflicts):
        frame = conflicts.assign(
            left=[_cell(v) for v in conflicts["left"]],
            right=[_cell(v) for v in conflicts["right"]],
            outcome=[
                f"keep {_cell(value)} ({winner})" if resolved else "waits for a person"
                for resolved, value, winner in zip(
                    conflicts["resolved"], conflicts["value"], conflicts["winner"], strict=True
                )
            ],
        )
        _table(frame, ["platform_id", "field", "left", "right", "strategy", "outcome", "reason"])


def run_runs(args: argparse.Namespace) -> int:
    from integration_platform.state import StateDatabase
    from integration_platform.sync import list_runs

    with _state_errors():
        runs = list_runs(StateDatabase(), sync_name=args.sync, limit=args.limit)
    if args.json:
        print(json.dumps(_records(runs), default=_json_default, indent=2))
        return 0
    if runs.empty:
        print("no sync runs yet" + (f" for {args.sync}" if args.sync else ""))
        return 0
    columns = ["run_id", "sync_name", "status", "started_at", "records_read", "records_changed"]
    columns += [
        "conflicts",
        "auto_resolved",
        "resolved_manually",
        "applied",
        "rolled_back",
        "quarantined",
        "cause",
    ]
    _table(runs, columns)
    return 0


def run_history(args: argparse.Namespace) -> int:
    from integration_platform.state import StateDatabase
    from integration_platform.sync import list_conflicts, platform_id_of, record_history

    state = StateDatabase()
    with _state_errors():
        platform_id = platform_id_of(state, args.entity, args.system, args.external_id)
        if platform_id is None:
            print(
                f"no {args.entity} {args.external_id!r} of system {args.system!r} is known to any "
                "sync (check the system name and the id as that system writes it, e.g. "
                "BEDFORD/1001)",
                file=sys.stderr,
            )
            return 1
        history = record_history(state, entity=args.entity, platform_id=platform_id)
        conflicts = list_conflicts(state, platform_id=platform_id, status=None)
    systems = {int(row.id): (row.left_system, row.right_system) for row in conflicts.itertuples()}
    waiting = conflicts[conflicts["status"].isin(["open", "resolved"])]
    if args.json:
        document = {
            "entity": args.entity,
            "platform_id": platform_id,
            "changes": _records(history),
            "pending_conflicts": _records(waiting),
        }
        print(json.dumps(document, default=_json_default, indent=2))
        return 0
    print(f"{args.entity} {args.system} {args.external_id} (platform id {platform_id})")
    if history.empty:
        print("  no changes applied by a sync yet")
    for row in history.itertuples(index=False):
        print(
            f"\n{_when(row.applied_at)}  {row.sync_name}  run {str(row.run_id)[:12]}  "
            f"{row.operation} {row.field}: {_cell(row.old_value)} -> {_cell(row.new_value)}  "
            f"({row.source_system} -> {row.target_system} {row.external_id})"
        )
        decided = f"by {row.resolved_by}" if _present(row.resolved_by) else ""
        print(f"    strategy {row.strategy} {decided}".rstrip() + f": {row.reason or ''}")
        if _present(row.conflict_id):
            left, right = systems.get(int(row.conflict_id), ("left", "right"))
            print(
                f"    conflict #{int(row.conflict_id)}: {left} had "
                f"{_cell(row.conflict_left_value)}, {right} had "
                f"{_cell(row.conflict_right_value)}; {row.conflict_reason or ''}"
            )
            if _present(row.conflict_note):
                print(f"    note: {row.conflict_note}")
    for row in waiting.itertuples(index=False):
        print(
            f"\npending conflict #{row.id} on {row.field} ({row.status}): {row.left_system} has "
            f"{_cell(row.left_value)}, {row.right_system} has {_cell(row.right_value)}; "
            f"{row.reason}"
        )
    return 0


def run_validate(args: argparse.Namespace) -> int:
    from integration_platform.components.sync import SyncComponent
    from integration_platform.settings import ConfigError

    failed = 0
    for file in args.files:
        try:
            component = SyncComponent.from_yaml(Path(file))
        except (ValueError, ConfigError) as error:  # declaration and connection errors
            failed += 1
            print(f"{file}: {error}", file=sys.stderr)
            continue
        except OSError as error:
            failed += 1
            print(f"{file}: cannot read: {error.strerror}", file=sys.stderr)
            continue
        for sync in component.syncs:
            spec = sync.spec
            print(
                f"{file}: ok: {sync.name}: {spec.entity} {spec.left.system} <-> "
                f"{spec.right.system} ({spec.direction}, {len(spec.fields)} fields) -> "
                f"{sync.job_name}"
            )
    return 1 if failed else 0


def _load_sync(name: str, defs: str | None) -> ResolvedSync | None:
    """The declared sync, or ``None`` after printing why it cannot be loaded."""
    from integration_platform.components.sync import SYNC_COMPONENT, SyncComponent
    from integration_platform.components.sync_resolve import PACKAGE_DEFS

    if defs is not None:
        files = [Path(defs)]
        if not files[0].is_file():
            print(f"--defs {defs}: no such file", file=sys.stderr)
            return None
    else:
        files = [
            path
            for path in sorted(PACKAGE_DEFS.rglob("defs.yaml"))
            if SYNC_COMPONENT in path.read_text(encoding="utf-8")
        ]
    names: list[str] = []
    for file in files:
        try:
            component = SyncComponent.from_yaml(file)
        except ValueError as error:  # declaration and connection errors name file and line
            print(error, file=sys.stderr)
            return None
        for sync in component.syncs:
            if sync.name == name:
                return sync
            names.append(sync.name)
    where = defs or f"the SyncComponent files under {PACKAGE_DEFS}"
    print(
        f"no sync named {name!r} in {where}; declared: {', '.join(names) or 'none'}"
        + ("" if defs else " (give --defs FILE for a declaration elsewhere)"),
        file=sys.stderr,
    )
    return None


# -- conflicts ----------------------------------------------------------------------------------


def run_conflicts_list(args: argparse.Namespace) -> int:
    from integration_platform.state import StateDatabase
    from integration_platform.sync import list_conflicts

    status = None if args.status == "all" else args.status
    with _state_errors():
        found = list_conflicts(
            StateDatabase(), sync_name=args.sync, status=status, limit=args.limit
        )
    if args.json:
        print(json.dumps(_records(found), default=_json_default, indent=2))
        return 0
    if found.empty:
        print(f"no {'' if status is None else status + ' '}conflicts")
        return 0
    frame = found.assign(
        left=_labelled(found, "left"),
        right=_labelled(found, "right"),
        created=[_when(v) for v in found["created_at"]],
    )
    _table(frame, ["id", "sync_name", "platform_id", "field", "left", "right", "status", "created"])
    return 0


def _labelled(frame: pd.DataFrame, side: str) -> list[str]:
    """``system: value`` per row of one side of a conflict list."""
    pairs = zip(frame[f"{side}_system"], frame[f"{side}_value"], strict=True)
    return [f"{system}: {_cell(value)}" for system, value in pairs]


def run_conflicts_show(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from integration_platform.state import StateDatabase
    from integration_platform.sync import ConflictNotFound, show_conflict

    try:
        with _state_errors():
            detail = show_conflict(StateDatabase(), args.id)
    except ConflictNotFound as exc:
        print(exc, file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(asdict(detail), default=_json_default, indent=2))
        return 0
    _print_detail(detail)
    if detail.status == "open":
        print(
            f"\ndecide: integration-platform conflicts resolve {detail.id} "
            "--take left|right (or --value V) --by NAME [--note TEXT]"
        )
    return 0


def _print_detail(detail: Any) -> None:
    print(f"conflict #{detail.id} of sync {detail.sync_name} ({detail.status})")
    print(f"  record:    {detail.entity} {detail.platform_id}, field {detail.field}")
    print(f"  base:      {_cell(detail.base_value)} (the value both last agreed on)")
    for side in ("left", "right"):
        system = getattr(detail, f"{side}_system")
        print(
            f"  {side + ':':<10} {system} {getattr(detail, f'{side}_external_id') or '-'} has "
            f"{_cell(getattr(detail, f'{side}_value'))} (changed "
            f"{_when(getattr(detail, f'{side}_modified_at')) or 'at an unknown time'})"
        )
    print(f"  policy:    {detail.strategy}: {detail.reason}")
    if detail.resolution:
        print(
            f"  decided:   keep {_cell(detail.resolved_value)} ({detail.resolution}) by "
            f"{detail.resolved_by} at {_when(detail.resolved_at)}"
            + (f"; note: {detail.note}" if detail.note else "")
        )
    if detail.applied_run_id:
        print(f"  applied:   by run {detail.applied_run_id}")


def run_conflicts_resolve(args: argparse.Namespace) -> int:
    from integration_platform.state import StateDatabase
    from integration_platform.sync import ConflictClosed, ConflictNotFound, resolve_conflict

    choice = args.take or "value"
    value = None if args.value is None else _parse_value(args.value)
    try:
        with _state_errors():
            detail = resolve_conflict(
                StateDatabase(),
                args.id,
                choice=choice,
                resolved_by=args.by,
                value=value,
                note=args.note,
            )
    except (ConflictNotFound, ConflictClosed, ValueError) as exc:
        print(exc, file=sys.stderr)
        return 1
    print(
        f"conflict #{detail.id} resolved: keep {_cell(detail.resolved_value)} for "
        f"{detail.field} ({choice}), decided by {detail.resolved_by}. The next run of sync "
        f"{detail.sync_name} applies it."
    )
    return 0


def _parse_value(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


# -- output -------------------------------------------------------------------------------------


def _table(frame: pd.DataFrame, columns: list[str]) -> None:
    shown = frame[[c for c in columns if c in frame.columns]].copy()
    for column in shown.columns:
        shown[column] = [
            _clip(v, TEXT_WIDTH) if isinstance(v, str) else _cell(v) for v in shown[column]
        ]
    print(shown.to_string(index=False))


def _cell(value: Any) -> str:
    """A value as people read it: JSON for values, a date for times, '-' for nothing."""
    if isinstance(value, datetime):
        return _when(value)
    if not _present(value):
        return "-" if value is None or not isinstance(value, str) else '""'
    if isinstance(value, str):
        return _clip(json.dumps(value, ensure_ascii=False))
    return _clip(json.dumps(value, default=_json_default, ensure_ascii=False))


def _clip(text: str, width: int = CELL_WIDTH) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _present(value: Any) -> bool:
    if value is None:
        return False
    try:
        import pandas as pd

        return not bool(pd.isna(value))
    except (TypeError, ValueError):
        return True


def _when(value: Any) -> str:
    if not _present(value):
        return ""
    import pandas as pd

    return pd.Timestamp(value).strftime("%Y-%m-%d %H:%M:%S%z")


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    return [
        {
            k: (None if not isinstance(v, dict | list) and not _present(v) else v)
            for k, v in r.items()
        }
        for r in frame.to_dict("records")
    ]


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if hasattr(value, "item"):
        return value.item()
    return str(value)


def _report_json(report: Any) -> dict[str, Any]:
    return {
        "run_id": report.run_id,
        "sync": report.sync_name,
        "status": report.status,
        "read_mode": report.read_mode,
        "dry_run": report.dry_run,
        "cause": report.cause,
        "counts": report.counts,
        "problems": report.problems,
        "planned": _records(report.planned),
        "conflicts": _records(report.conflicts),
    }


def _user() -> str:
    import getpass

    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


@contextmanager
def _progress(*, quiet: bool) -> Iterator[None]:
    """The engine's progress lines (reading, planned writes, outcome) on stderr."""
    logger = logging.getLogger("integration_platform.sync")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
    previous = logger.level
    if not quiet:
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(previous)


@contextmanager
def _state_errors() -> Iterator[None]:
    """A state database without the sync tables (not migrated) as an error that says what to
    do, through the CLI's configuration-error exit."""
    import sqlalchemy as sa

    from integration_platform.settings import ConfigError

    try:
        yield
    except (sa.exc.OperationalError, sa.exc.ProgrammingError) as exc:
        reason = " ".join(str(getattr(exc, "orig", exc)).split())[:300]
        raise ConfigError(
            f"the state database cannot be used for syncs ({reason}); if it is not migrated, "
            "run `integration-platform db upgrade`"
        ) from exc
