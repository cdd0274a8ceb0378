"""From a ``SyncComponent``'s YAML to runnable syncs: specs, connections, adapters, names.

Every mistake a declaration can hold is collected and reported at once when definitions load,
each with the ``defs.yaml`` file and line and the field path: what
:meth:`SyncSpec.problems` finds (unknown entity, field, owner system, rule...) plus what only
this layer knows (unknown connection, a connection type without a sync adapter, adapter
options, strategy and direction names, cron, time zone, triggers).

How a sync finds its connections: with ``connections_file`` the connections declared in that
``ConnectionComponent`` file (relative to the sync's file); without it, the connections declared
by ``ConnectionComponent`` files anywhere under the code location's ``defs/`` folder, whose
components provide the resources (``connection_<name>``). Connections from any other file
(outside ``defs/``, or not named ``defs.yaml``) are provided by the sync component itself, one
resource object per file, so several syncs (and sync files) naming the same file share it.
"""

from __future__ import annotations

import difflib
import importlib
import zoneinfo
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import dagster as dg
import yaml

from integration_platform.components.connection_model import resource_key
from integration_platform.components.sync_model import (
    PolicyDeclaration,
    SideDeclaration,
    SyncDeclaration,
    SyncsDeclaration,
)
from integration_platform.mapping.locate import SourceMap, SpecPath
from integration_platform.state.models import PROCESSING_STATUSES
from integration_platform.sync.spec import (
    Direction,
    FieldMap,
    FieldPolicy,
    ReadPolicy,
    SideSpec,
    Strategy,
    SyncSpec,
)

if TYPE_CHECKING:
    from integration_platform.sync.adapters.base import SyncAdapter

CONNECTION_COMPONENT = "integration_platform.components.ConnectionComponent"
SYNC_TAG = "integration_platform/sync"
"""Run tag naming the sync: deploy/dagster.yaml limits it to one run per value."""
PACKAGE_DEFS = Path(__file__).resolve().parents[1] / "defs"
ANY_ENTITY = "*"
"""The ``AdapterType.targets`` key of an adapter that carries any entity (one table)."""


@dataclass(frozen=True)
class AdapterType:
    """How a connection type takes part in a sync: the adapter class for each entity it can
    carry (``ANY_ENTITY``: one class for every entity) and the options a side may give it."""

    targets: Mapping[str, str]
    options: tuple[str, ...]
    required: tuple[str, ...] = ()

    @property
    def entities(self) -> tuple[str, ...] | None:
        """The entities the connection type can sync; ``None``: any."""
        return None if ANY_ENTITY in self.targets else tuple(self.targets)

    def load(self, entity: str) -> type[SyncAdapter]:
        """The adapter class for ``entity``, imported now (not when definitions load)."""
        target = self.targets.get(entity) or self.targets[ANY_ENTITY]
        module, _, name = target.partition(":")
        return getattr(importlib.import_module(module), name)


MAXIMO_ADAPTERS = "integration_platform.sync.adapters.maximo"
DYNAMICS_ADAPTERS = "integration_platform.sync.adapters.dynamics"
SAP_ADAPTERS = "integration_platform.sync.adapters.sap"
SYNC_ADAPTERS: dict[str, AdapterType] = {
    "maximo": AdapterType(
        {
            "work_order": f"{MAXIMO_ADAPTERS}:MaximoWorkOrderAdapter",
            "asset": f"{MAXIMO_ADAPTERS}:MaximoAssetAdapter",
            "maintenance_schedule": f"{MAXIMO_ADAPTERS}:MaximoPmAdapter",
        },
        options=("create_defaults", "cancel_values", "page_size"),
    ),
    "dynamics": AdapterType(
        {
            "work_order": f"{DYNAMICS_ADAPTERS}:DynamicsWorkOrderAdapter",
            "asset": f"{DYNAMICS_ADAPTERS}:DynamicsAssetAdapter",
        },
        options=("create_defaults", "cancel_values"),
    ),
    "sap": AdapterType(
        {"work_order": f"{SAP_ADAPTERS}:SapMaintenanceOrderAdapter"},
        options=("create_defaults", "cancel_values"),
    ),
    "sql": AdapterType(
        {ANY_ENTITY: "integration_platform.sync.adapters.sql:SqlTableAdapter"},
        options=("table", "schema", "touch_modified"),
        required=("table",),
    ),
}
"""Connection types a sync can read and write, imported only when a run builds them."""


class SyncDeclarationError(ValueError):
    """A sync declaration that cannot load; the message lists every problem with file, line
    and field."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        super().__init__("sync declaration is not valid:\n" + "\n".join(self.problems))


@dataclass(frozen=True)
class DeclaredConnection:
    """A connection a sync may use: its name, connector type and where it is declared.
    ``provided_here``: declared outside ``defs/``, so the sync component provides it."""

    name: str
    type: str
    file: Path
    provided_here: bool


@dataclass(frozen=True)
class ResolvedSide:
    which: str  # "left" | "right"
    spec: SideSpec
    connection: DeclaredConnection
    options: Mapping[str, Any]
    entity: str

    @property
    def resource_key(self) -> str:
        return resource_key(self.connection.name)

    def build_adapter(self, connector: Any) -> SyncAdapter:
        """The sync adapter of this side around the connection's connector resource."""
        adapter = SYNC_ADAPTERS[self.connection.type].load(self.entity)
        return adapter(connector, **dict(self.options))


@dataclass(frozen=True)
class ResolvedSync:
    """One declared sync, checked: its spec, both sides and its Dagster names."""

    declaration: SyncDeclaration
    spec: SyncSpec
    left: ResolvedSide
    right: ResolvedSide
    where: str
    """``file, line N`` of the declaration."""

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def slug(self) -> str:
        """The name as Dagster accepts it in job, op, schedule and sensor names."""
        return dagster_name(self.spec.name)

    @property
    def job_name(self) -> str:
        return f"sync_{self.slug}_job"

    @property
    def op_name(self) -> str:
        return f"sync_{self.slug}"

    @property
    def schedule_name(self) -> str:
        return f"{self.job_name}_schedule"

    @property
    def sensor_name(self) -> str:
        return f"sync_{self.slug}_webhook_sensor"

    @property
    def conflicts_key(self) -> dg.AssetKey:
        return dg.AssetKey(["sync", self.spec.name, "conflicts"])

    @property
    def sides(self) -> tuple[ResolvedSide, ResolvedSide]:
        return (self.left, self.right)


def dagster_name(name: str) -> str:
    return name.replace("-", "_")


# -- connections ------------------------------------------------------------------------------


def declared_connections(path: Path, *, provided_here: bool) -> dict[str, DeclaredConnection]:
    """Names and types of the connections a ConnectionComponent ``defs.yaml`` declares (the
    file is read, nothing is built)."""
    document = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if not isinstance(document, dict) or document.get("type") != CONNECTION_COMPONENT:
        return {}
    attributes = document.get("attributes") or {}
    found = {}
    for item in attributes.get("connections") or []:
        if isinstance(item, dict) and item.get("name"):
            name = str(item["name"])
            found[name] = DeclaredConnection(name, str(item.get("type")), path, provided_here)
    return found


def code_location_connections(defs_root: Path) -> dict[str, DeclaredConnection]:
    """Connections declared by ConnectionComponent files under a ``defs/`` folder."""
    found: dict[str, DeclaredConnection] = {}
    for path in sorted(defs_root.rglob("defs.yaml")):
        text = path.read_text(encoding="utf-8")
        if CONNECTION_COMPONENT in text:
            found.update(declared_connections(path, provided_here=False))
    return found


_COMPONENTS: dict[tuple[Path, str], Any] = {}


def connection_component(path: Path) -> Any:
    """The ConnectionComponent of a file outside ``defs/``, one per file content: syncs that
    name the same file share its resource objects (Dagster refuses two different resources
    under one key)."""
    from integration_platform.components.connection import ConnectionComponent

    text = path.read_text(encoding="utf-8")
    key = (path.resolve(), text)
    if key not in _COMPONENTS:
        _COMPONENTS[key] = ConnectionComponent.from_yaml(path)
    return _COMPONENTS[key]


def connector_for(side: ResolvedSide) -> Any:
    """The connector resource of a side, built from its declaration (CLI and scripts; inside
    Dagster the resource comes from the code location)."""
    return connection_component(side.connection.file).resources[side.resource_key]


def provided_resources(syncs: Sequence[ResolvedSync]) -> dict[str, dg.ConfigurableResource]:
    """The connector resources a sync component provides itself (connections outside defs/)."""
    resources: dict[str, dg.ConfigurableResource] = {}
    for sync in syncs:
        for side in sync.sides:
            if side.connection.provided_here:
                resources[side.resource_key] = connector_for(side)
    return resources


# -- the declaration -> specs ----------------------------------------------------------------


@dataclass
class _Problems:
    source_map: SourceMap
    found: list[tuple[int, str]] = field(default_factory=list)

    def add(self, path: SpecPath, message: str) -> None:
        line = self.source_map.line_of(path) or 0
        self.found.append((line, f"  {self.source_map.where(path)}: {_dotted(path)}: {message}"))

    @property
    def lines(self) -> list[str]:
        """The problems in file order."""
        return [text for _, text in sorted(self.found, key=lambda item: item[0])]


def resolve_syncs(
    declaration: SyncsDeclaration,
    source_map: SourceMap,
    *,
    defs_root: Path | None,
) -> list[ResolvedSync]:
    """Check every sync of a declaration; raise :class:`SyncDeclarationError` listing all
    problems, else return the resolved syncs."""
    problems = _Problems(source_map)
    base_dir = source_map.file.parent if source_map.file else Path.cwd()
    for number, module in enumerate(declaration.rules_modules):
        try:
            importlib.import_module(module)
        except ImportError as exc:
            problems.add(("rules_modules", number), f"cannot import {module!r}: {exc}")
    connections = _connections(declaration, problems, base_dir=base_dir, defs_root=defs_root)
    resolved: list[ResolvedSync] = []
    seen: dict[str, int] = {}
    for index, sync in enumerate(declaration.syncs):
        at: SpecPath = ("syncs", index)
        slug = dagster_name(sync.name)
        if slug in seen:
            problems.add(
                (*at, "name"), f"sync {sync.name!r} is declared twice (also syncs[{seen[slug]}])"
            )
        seen.setdefault(slug, index)
        result = _resolve_one(sync, at, problems, connections, base_dir)
        if result is not None:
            spec, left, right = result
            resolved.append(ResolvedSync(sync, spec, left, right, source_map.where(at)))
    if problems.lines:
        raise SyncDeclarationError(problems.lines)
    return resolved


def _connections(
    declaration: SyncsDeclaration,
    problems: _Problems,
    *,
    base_dir: Path,
    defs_root: Path | None,
) -> dict[str, DeclaredConnection]:
    in_defs = code_location_connections(defs_root) if defs_root and defs_root.is_dir() else {}
    if declaration.connections_file is None:
        return in_defs
    path = Path(declaration.connections_file).expanduser()
    path = path if path.is_absolute() else base_dir / path
    if not path.is_file():
        problems.add(("connections_file",), f"file {path} does not exist")
        return {}
    # Only a defs.yaml under defs/ is loaded by the code location (which then provides the
    # resources); any other file's connections are provided by the sync component.
    inside = (
        defs_root is not None
        and path.name == "defs.yaml"
        and path.resolve().is_relative_to(defs_root.resolve())
    )
    found = declared_connections(path, provided_here=not inside)
    if not found:
        problems.add(
            ("connections_file",),
            f"{path} declares no connections (expected type: {CONNECTION_COMPONENT})",
        )
    if not inside:
        for name, other in in_defs.items():
            if name in found:
                problems.add(
                    ("connections_file",),
                    f"connection {name!r} is also declared in {other.file}, which the code "
                    "location loads; drop connections_file to use that one, or rename it",
                )
    return found


def _resolve_one(
    sync: SyncDeclaration,
    at: SpecPath,
    problems: _Problems,
    connections: Mapping[str, DeclaredConnection],
    base_dir: Path,
) -> tuple[SyncSpec, ResolvedSide, ResolvedSide] | None:
    before = len(problems.lines)
    sides = {}
    for which in ("left", "right"):
        side: SideDeclaration = getattr(sync, which)
        sides[which] = _side(side, (*at, which), problems, connections, base_dir)
    direction = _enum(Direction, sync.direction, (*at, "direction"), problems)
    default_policy = _policy(sync.default_policy, (*at, "default_policy"), problems)
    policies = {
        name: _policy(policy, (*at, "policies", name), problems)
        for name, policy in sync.policies.items()
    }
    _schedule_problems(sync, at, problems)
    systems = (sync.left.system, sync.right.system)
    for number, trigger in enumerate(sync.triggers):
        where = (*at, "triggers", number)
        if trigger.system not in systems:
            problems.add(
                (*where, "system"),
                f"{trigger.system!r} is not one of the sync's systems ({', '.join(systems)})",
            )
        unknown = sorted(set(trigger.statuses) - set(PROCESSING_STATUSES))
        if unknown or not trigger.statuses:
            problems.add(
                (*where, "statuses"),
                f"unknown inbox status(es) {', '.join(unknown) or '(none given)'}; use "
                f"{', '.join(PROCESSING_STATUSES)}",
            )
    left, right = sides["left"], sides["right"]
    spec = SyncSpec(
        name=sync.name,
        entity=sync.entity,
        left=left[0],
        right=right[0],
        fields=tuple(sync.fields),
        direction=direction or Direction.TWO_WAY,
        match_field=sync.match_field,
        default_policy=default_policy or FieldPolicy(),
        policies={k: v for k, v in policies.items() if v is not None},
        reads=ReadPolicy(**sync.reads.model_dump()),
    )
    for path, message in spec.problems():
        problems.add(_spec_path(at, path, sync), message)
    for which, (_, connection, _) in sides.items():
        adapter = SYNC_ADAPTERS.get(connection.type) if connection else None
        if adapter and adapter.entities is not None and sync.entity not in adapter.entities:
            problems.add(
                (*at, "entity"),
                f"{which} connection {connection.name!r} ({connection.type}) can sync "
                f"{', '.join(adapter.entities)}, not {sync.entity!r}",
            )
    if len(problems.lines) > before or left[1] is None or right[1] is None:
        return None
    return (
        spec,
        ResolvedSide("left", left[0], left[1], left[2], sync.entity),
        ResolvedSide("right", right[0], right[1], right[2], sync.entity),
    )


def _side(
    side: SideDeclaration,
    at: SpecPath,
    problems: _Problems,
    connections: Mapping[str, DeclaredConnection],
    base_dir: Path,
) -> tuple[SideSpec, DeclaredConnection | None, dict[str, Any]]:
    name = side.connection or side.system
    connection = connections.get(name)
    if connection is None:
        known = sorted(connections)
        problems.add(
            (*at, "connection" if side.connection else "system"),
            f"unknown connection {name!r}; {_suggest(name, known)}declared connections: "
            f"{', '.join(known) or 'none'} (declare it in a ConnectionComponent defs.yaml "
            "under defs/, or point connections_file at one)",
        )
    elif connection.type not in SYNC_ADAPTERS:
        problems.add(
            (*at, "connection" if side.connection else "system"),
            f"connection {name!r} is a {connection.type!r} connection; syncs support "
            f"{', '.join(sorted(SYNC_ADAPTERS))}",
        )
        connection = None
    options = dict(side.options)
    if connection is not None:
        adapter = SYNC_ADAPTERS[connection.type]
        for option in options:
            if option not in adapter.options:
                problems.add(
                    (*at, "options", option),
                    f"{connection.type} sides take no option {option!r}; "
                    f"{_suggest(option, adapter.options)}options: "
                    f"{', '.join(adapter.options)}",
                )
        for option in adapter.required:
            if option not in options:
                problems.add(
                    (*at, "options"),
                    f"a {connection.type} side needs options.{option} (e.g. the table name)",
                )
    mapping = side.mapping
    if mapping is not None and not Path(mapping).is_absolute():
        mapping = str(base_dir / mapping)
    key = side.key_field if isinstance(side.key_field, str) else tuple(side.key_field)
    fields: dict[str, str | FieldMap] = {}
    for canonical, rule in side.fields.items():
        if isinstance(rule, str):
            fields[canonical] = rule
        else:
            fields[canonical] = FieldMap(
                rule.field,
                values=None if rule.values is None else {str(k): v for k, v in rule.values.items()},
                write_values=None
                if rule.write_values is None
                else {k: str(v) for k, v in rule.write_values.items()},
            )
    spec = SideSpec(
        system=side.system,
        connection=name,
        key_field=key,
        fields=fields,
        version_field=side.version_field,
        modified_field=side.modified_field,
        mapping=mapping,
    )
    return spec, connection, options


def _policy(
    value: str | PolicyDeclaration, at: SpecPath, problems: _Problems
) -> FieldPolicy | None:
    declared = PolicyDeclaration(strategy=value) if isinstance(value, str) else value
    name = declared.strategy or ("source_priority" if declared.owner else None)
    if name is None:
        problems.add(at, f"give a strategy ({', '.join(Strategy)}) or an owner system")
        return None
    path = at if isinstance(value, str) else (*at, "strategy")
    strategy = _enum(Strategy, name, path, problems)
    if strategy is None:
        return None
    return FieldPolicy(strategy, owner=declared.owner, rule=declared.rule)


def _enum(kind: Any, value: str, at: SpecPath, problems: _Problems) -> Any:
    try:
        return kind(value)
    except ValueError:
        known = [str(member) for member in kind]
        problems.add(
            at, f"unknown value {value!r}; {_suggest(value, known)}use one of {', '.join(known)}"
        )
        return None


def _schedule_problems(sync: SyncDeclaration, at: SpecPath, problems: _Problems) -> None:
    if sync.schedule is not None:
        try:
            dg.ScheduleDefinition(name="cron_check", cron_schedule=sync.schedule, job_name="x")
        except dg.DagsterInvalidDefinitionError:
            problems.add(
                (*at, "schedule"),
                f"{sync.schedule!r} is not a cron schedule; give five fields, e.g. "
                "'*/15 * * * *' (every 15 minutes)",
            )
    try:
        zoneinfo.ZoneInfo(sync.schedule_timezone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        problems.add(
            (*at, "schedule_timezone"),
            f"unknown time zone {sync.schedule_timezone!r}; use an IANA name like UTC or "
            "Europe/Berlin",
        )


def _spec_path(at: SpecPath, dotted: str, sync: SyncDeclaration) -> SpecPath:
    """A :meth:`SyncSpec.problems` path (``fields.titel``, ``left.fields.status``) as the
    path of the YAML node to point at."""
    parts: list[str | int] = list(dotted.split("."))
    if parts[0] == "fields" and len(parts) == 2 and parts[1] in sync.fields:
        parts[1] = sync.fields.index(str(parts[1]))
    return (*at, *parts)


def _suggest(value: str, known: Sequence[str]) -> str:
    """``did you mean 'x'? `` for the closest known name (a prefix counts), else nothing."""
    close = [name for name in known if name.startswith(value)] or difflib.get_close_matches(
        value, list(known), n=1
    )
    return f"did you mean {close[0]!r}? " if close else ""


def _dotted(path: SpecPath) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text
