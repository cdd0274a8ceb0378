"""What one sync is: two systems, the entity they share, the fields kept in step and how
conflicts are decided.

The spec is plain frozen dataclasses so the YAML component, the CLI and tests build it the
same way, and :meth:`SyncSpec.validate` reports every problem at once as ``(path, message)``
pairs (``right.fields.status``, ``policies.cost_amount.owner``) that the YAML layer turns into
file and line. Field names are the canonical ones of the entity's pandera model.

Example::

    spec = SyncSpec(
        name="maximo_sql_work_orders",
        entity="work_order",
        left=SideSpec(
            system="maximo", connection="maximo", key_field=("siteid", "wonum"),
            version_field="_rowstamp", modified_field="changedate",
            fields={"title": "description",
                    "status": FieldMap("status", values={"WAPPR": "scheduled",
                                                         "INPRG": "in_progress",
                                                         "COMP": "completed"},
                                       write_values={"scheduled": "WAPPR"})},
        ),
        right=SideSpec(system="plant_db", connection="plant_sql", key_field="wo_number",
                       modified_field="updated_at",
                       fields={"title": "title", "status": "status"}),
        fields=("title", "status"),
        match_field="external_id",
        policies={"status": FieldPolicy(Strategy.SOURCE_PRIORITY, owner="maximo")},
    )
    spec.validate(known_systems={"maximo", "plant_db"})
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandera.pandas as pa

ENTITY_TABLES: dict[str, str] = {
    "work_order": "work_orders",
    "asset": "assets",
    "maintenance_schedule": "maintenance_schedules",
}
"""Entities a sync can carry, with the canonical table (``CANONICAL_MODELS`` key) of each."""


class Direction(StrEnum):
    """Which way changes flow. One-way syncs still pair records and keep bases, so switching
    to two-way later starts from an agreed state."""

    TWO_WAY = "two_way"
    LEFT_TO_RIGHT = "left_to_right"
    RIGHT_TO_LEFT = "right_to_left"


class Strategy(StrEnum):
    """How a field changed on both sides to different values is decided."""

    SOURCE_PRIORITY = "source_priority"  # the owner system's value wins (field ownership)
    LAST_WRITER_WINS = "last_writer_wins"  # the side modified last wins; a tie waits for a person
    NEWEST_NON_NULL = "newest_non_null"  # the newest value that is not empty
    MIN = "min"  # the smaller number
    MAX = "max"  # the larger number
    RULE = "rule"  # a function registered with ``register_rule(name)``
    MANUAL = "manual"  # a person decides through the conflict queue


class SyncSpecError(ValueError):
    """A spec that cannot run; ``problems`` lists ``(path, message)`` for every mistake."""

    def __init__(self, name: str, problems: list[tuple[str, str]]) -> None:
        self.name = name
        self.problems = problems
        lines = "\n".join(f"  {path}: {message}" for path, message in problems)
        super().__init__(f"sync {name!r} is not valid:\n{lines}")


@dataclass(frozen=True)
class FieldMap:
    """One canonical field on one side: the side's field name and, for coded fields, the code
    table. ``values`` maps side codes to canonical values (reading); ``write_values`` maps
    canonical values to the code written back, and defaults to the first side code listed for
    each canonical value (``WAPPR`` for ``scheduled`` if listed first)."""

    field: str
    values: Mapping[str, str] | None = None
    write_values: Mapping[str, str] | None = None

    def read_table(self) -> dict[str, str] | None:
        return None if self.values is None else {str(k): v for k, v in self.values.items()}

    def write_table(self) -> dict[str, str] | None:
        """Canonical value -> side code, or ``None`` when the field is not coded."""
        if self.values is None and self.write_values is None:
            return None
        table: dict[str, str] = {}
        for code, canonical in (self.values or {}).items():
            table.setdefault(canonical, str(code))
        table.update({k: str(v) for k, v in (self.write_values or {}).items()})
        return table


@dataclass(frozen=True)
class SideSpec:
    """One of the two systems in a sync.

    ``key_field`` names the field(s) that identify a record in that system; several fields
    are joined with ``/`` into the external id (Maximo ``("siteid", "wonum")`` ->
    ``BEDFORD/1001``). ``version_field`` is the system's own change token (``_rowstamp``,
    ``@odata.etag``, ``LastChangeDateTime``); without one, changes are found by a content hash.
    ``modified_field`` gives the record's last change time, used by ``last_writer_wins`` and
    ``newest_non_null``. ``fields`` maps canonical field -> side field name or :class:`FieldMap`.
    ``mapping`` optionally names the mapping YAML that reads this system into the canonical
    model (recorded for lineage; checked to exist and to be for the same entity).
    """

    system: str
    connection: str
    key_field: str | tuple[str, ...]
    fields: Mapping[str, str | FieldMap]
    version_field: str | None = None
    modified_field: str | None = None
    mapping: str | None = None

    def __post_init__(self) -> None:
        normalized = {
            name: rule if isinstance(rule, FieldMap) else FieldMap(str(rule))
            for name, rule in dict(self.fields).items()
        }
        object.__setattr__(self, "fields", normalized)
        if isinstance(self.key_field, list):
            object.__setattr__(self, "key_field", tuple(self.key_field))

    @property
    def key_fields(self) -> tuple[str, ...]:
        return (self.key_field,) if isinstance(self.key_field, str) else tuple(self.key_field)

    def field_map(self, canonical: str) -> FieldMap:
        return self.fields[canonical]  # type: ignore[return-value]


@dataclass(frozen=True)
class FieldPolicy:
    """How conflicts on a field are decided: a strategy, the owner system for
    ``source_priority`` and the registered rule name for ``rule``."""

    strategy: Strategy = Strategy.LAST_WRITER_WINS
    owner: str | None = None
    rule: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "strategy", Strategy(self.strategy))

    def describe(self) -> str:
        if self.strategy == Strategy.SOURCE_PRIORITY:
            return f"source_priority({self.owner})"
        if self.strategy == Strategy.RULE:
            return f"rule({self.rule})"
        return str(self.strategy)


@dataclass(frozen=True)
class ReadPolicy:
    """How a run reads the two systems.

    ``incremental``: read only records changed since the last successful run, where both
    sides have a ``modified_field`` and their adapters can filter on it (else every run is a
    full read). The start is the newest modified time that run read on each side (the
    system's own clock) less ``overlap_seconds``, which covers clock skew and writes that
    commit late. The partners of what was read, records waiting in the conflict queue and
    records holding a new record's match value are then read by id. A full read still runs
    on the first run, when asked (``full=True``, ``--full``), after ``full_every_runs - 1``
    incremental runs and when the last full read is ``full_every_hours`` old: only a full
    read finds deletions and edits whose modified time went backwards.
    """

    incremental: bool = False
    overlap_seconds: float = 300.0
    full_every_runs: int | None = 24
    full_every_hours: float | None = 24.0

    def problems(self) -> list[tuple[str, str]]:
        out = []
        if self.overlap_seconds < 0:
            out.append(("reads.overlap_seconds", "give 0 or more seconds"))
        if self.full_every_runs is not None and self.full_every_runs < 1:
            out.append(("reads.full_every_runs", "give 1 or more runs (1: every run is full)"))
        if self.full_every_hours is not None and self.full_every_hours <= 0:
            out.append(("reads.full_every_hours", "give more than 0 hours"))
        return out


@dataclass(frozen=True)
class SyncSpec:
    """One sync between two systems for one entity.

    ``fields`` are the canonical fields kept in step; ``match_field`` pairs records that have
    no cross-reference yet (e.g. ``external_id`` holding the work order number on both sides);
    without it, unpaired records are created on the other side. ``default_policy`` decides
    conflicts on fields without an entry in ``policies``.
    """

    name: str
    entity: str
    left: SideSpec
    right: SideSpec
    fields: tuple[str, ...]
    direction: Direction = Direction.TWO_WAY
    match_field: str | None = None
    default_policy: FieldPolicy = field(default_factory=FieldPolicy)
    policies: Mapping[str, FieldPolicy] = field(default_factory=dict)
    reads: ReadPolicy = field(default_factory=ReadPolicy)

    def __post_init__(self) -> None:
        object.__setattr__(self, "fields", tuple(self.fields))
        object.__setattr__(self, "direction", Direction(self.direction))
        object.__setattr__(self, "policies", dict(self.policies))

    # -- derived -----------------------------------------------------------------------------

    @property
    def table(self) -> str:
        """The canonical table name (``work_orders``) of the entity."""
        return ENTITY_TABLES[self.entity]

    @property
    def model(self) -> type[pa.DataFrameModel]:
        from integration_platform.model import CANONICAL_MODELS

        return CANONICAL_MODELS[self.table]

    @property
    def compared_fields(self) -> tuple[str, ...]:
        """Synced fields plus the match field (which is carried but never overwritten)."""
        extra = (
            (self.match_field,) if self.match_field and self.match_field not in self.fields else ()
        )
        return (*self.fields, *extra)

    def side(self, system: str) -> SideSpec:
        for side in (self.left, self.right):
            if side.system == system:
                return side
        raise KeyError(f"sync {self.name!r} has no system {system!r}")

    def policy(self, canonical_field: str) -> FieldPolicy:
        return self.policies.get(canonical_field, self.default_policy)

    def writes_to(self, which: str) -> bool:
        """Whether changes flow into the ``left`` or ``right`` side."""
        if self.direction == Direction.TWO_WAY:
            return True
        return (which == "right") == (self.direction == Direction.LEFT_TO_RIGHT)

    # -- validation --------------------------------------------------------------------------

    def problems(self, known_systems: Collection[str] | None = None) -> list[tuple[str, str]]:
        """Every mistake as ``(path, message)``; empty when the spec can run."""
        out: list[tuple[str, str]] = []
        if not self.name or not self.name.replace("_", "").replace("-", "").isalnum():
            out.append(("name", f"{self.name!r} must be letters, digits, '_' or '-'"))
        if self.entity not in ENTITY_TABLES:
            out.append(
                (
                    "entity",
                    f"unknown entity {self.entity!r}; use one of {', '.join(ENTITY_TABLES)}",
                )
            )
            canonical: set[str] | None = None
        else:
            canonical = set(self.model.to_schema().columns)
        if self.left.system == self.right.system:
            out.append(("right.system", f"both sides are {self.left.system!r}; name two systems"))
        for label, side in (("left", self.left), ("right", self.right)):
            if known_systems is not None and side.system not in known_systems:
                known = ", ".join(sorted(known_systems)) or "none"
                out.append((f"{label}.system", f"unknown system {side.system!r}; known: {known}"))
            if not side.key_fields or not all(side.key_fields):
                out.append((f"{label}.key_field", "name the field(s) that identify a record"))
            for name in side.fields:
                if canonical is not None and name not in canonical:
                    out.append(
                        (f"{label}.fields.{name}", _unknown_field(name, self.entity, canonical))
                    )
            for name in self.compared_fields:
                if name not in side.fields:
                    out.append(
                        (
                            f"{label}.fields.{name}",
                            f"synced field {name!r} has no {side.system} field; map it here",
                        )
                    )
            for name, rule in side.fields.items():
                if not isinstance(rule, FieldMap) or not rule.field:
                    out.append((f"{label}.fields.{name}", "give the side's field name"))
            if side.mapping is not None:
                out.extend(self._mapping_problems(label, side))
        if not self.fields:
            out.append(("fields", "list at least one canonical field to sync"))
        for name in self.fields:
            if canonical is not None and name not in canonical:
                out.append((f"fields.{name}", _unknown_field(name, self.entity, canonical)))
        match = self.match_field
        if match is not None and canonical is not None and match not in canonical:
            out.append(("match_field", _unknown_field(match, self.entity, canonical)))
        out.extend(self._policy_problems("default_policy", self.default_policy))
        for name, policy in self.policies.items():
            if name not in self.fields:
                out.append((f"policies.{name}", f"{name!r} is not one of the synced fields"))
            out.extend(self._policy_problems(f"policies.{name}", policy))
        out.extend(self.reads.problems())
        if self.reads.incremental:
            for label, side in (("left", self.left), ("right", self.right)):
                if not side.modified_field:
                    out.append(
                        (
                            f"{label}.modified_field",
                            f"incremental reads need the {side.system} field holding the "
                            "time a record last changed; name it, or set reads.incremental "
                            "to false",
                        )
                    )
        return out

    def validate(self, known_systems: Collection[str] | None = None) -> SyncSpec:
        """Raise :class:`SyncSpecError` listing every problem; return the spec when it can run.

        ``known_systems``: the systems (connections) the caller can reach; unknown ones are
        reported. Registered rules are looked up now, so register them before validating.
        """
        found = self.problems(known_systems)
        if found:
            raise SyncSpecError(self.name, found)
        return self

    def _policy_problems(self, path: str, policy: FieldPolicy) -> list[tuple[str, str]]:
        from integration_platform.sync.rules import registered_rules

        out: list[tuple[str, str]] = []
        systems = (self.left.system, self.right.system)
        if policy.strategy == Strategy.SOURCE_PRIORITY and policy.owner not in systems:
            out.append(
                (
                    f"{path}.owner",
                    f"source_priority needs the owner system, one of {', '.join(systems)} "
                    f"(got {policy.owner!r})",
                )
            )
        if policy.strategy == Strategy.RULE and policy.rule not in registered_rules():
            known = ", ".join(sorted(registered_rules())) or "none registered"
            out.append((f"{path}.rule", f"no rule named {policy.rule!r} is registered ({known})"))
        return out

    def _mapping_problems(self, label: str, side: SideSpec) -> list[tuple[str, str]]:
        path = Path(str(side.mapping))
        if not path.is_file():
            return [(f"{label}.mapping", f"mapping file {path} does not exist")]
        try:
            import yaml

            document: Any = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            return [(f"{label}.mapping", f"cannot read {path}: {exc}")]
        if isinstance(document, dict) and isinstance(document.get("attributes"), dict):
            document = document["attributes"]
        entity = document.get("entity") if isinstance(document, dict) else None
        if entity is not None and entity != ENTITY_TABLES.get(self.entity):
            return [
                (
                    f"{label}.mapping",
                    f"{path} maps to {entity!r}, but the sync carries {self.entity!r}",
                )
            ]
        return []


def _unknown_field(name: str, entity: str, canonical: set[str]) -> str:
    import difflib

    close = difflib.get_close_matches(name, sorted(canonical), n=3)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    return f"{name!r} is not a field of the canonical {entity}{hint}"
