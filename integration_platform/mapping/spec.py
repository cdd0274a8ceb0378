"""The mapping spec: what a user declares in YAML to turn source records into a canonical entity.

A spec names the source asset, the canonical entity (a pandera model) and, per target field,
one rule or a list of conditional rules. A rule takes one input (``source`` column or nested
path, ``formula``, or constant ``value``) and applies, in this order: ``transforms`` (named
string operations), ``map`` (code table), ``cast`` or ``datetime`` parsing, ``unit``
conversion, then ``default``; ``required`` rejects rows left empty. ``when`` applies a rule only
to the rows where its condition holds; the first matching rule of a field wins.

Example (``defs/<system>/<mapping>/defs.yaml``)::

    type: integration_platform.components.MappingComponent
    attributes:
      source: bronze/maximo/work_orders
      entity: work_orders
      key: [siteid, wonum]
      latest_by: rowstamp
      lookups:
        site_timezone: {asset: bronze/maximo/sites, match: siteid, key: siteid, value: timezone}
      fields:
        external_id: wonum
        status: {source: status, map: {WAPPR: scheduled, INPRG: in_progress, COMP: completed}}
        created_at: {source: reportdate, datetime: {timezone_from: site_timezone}}
        cost_amount:
          - when: "worktype == 'EM'"
            formula: "round(actlabhrs * 85 * 1.5, 2)"
          - formula: "round(actlabhrs * 85, 2)"
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

CastType = Literal["string", "integer", "float", "boolean", "datetime"]


class SpecModel(BaseModel):
    """Unknown keys are errors: a typo in a spec must not be silently ignored."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class DatetimeRule(SpecModel):
    """How to read a date-time: a format and the zone of values that carry no offset."""

    format: str = Field(
        default="iso8601",
        description="iso8601, sap (/Date(ms)/), epoch_ms, epoch_s, date, or a strftime pattern.",
    )
    timezone: str | None = Field(default=None, description="IANA zone of naive values.")
    timezone_from: str | None = Field(
        default=None, description="Column, lookup or formula giving each row's IANA zone."
    )

    @model_validator(mode="after")
    def one_zone_source(self) -> DatetimeRule:
        if self.timezone and self.timezone_from:
            raise ValueError("give either timezone or timezone_from, not both")
        return self


class UnitRule(SpecModel):
    """Unit conversion, e.g. ``{from: degF, to: degC}`` (pint unit names)."""

    from_unit: str = Field(alias="from")
    to_unit: str = Field(alias="to")


class FieldRule(SpecModel):
    """How one target field is produced (for the rows ``when`` selects)."""

    when: str | None = Field(default=None, description="Formula; the rule applies where true.")
    source: str | None = Field(default=None, description="Source column or dotted nested path.")
    formula: str | None = Field(default=None, description="Expression over source and targets.")
    value: Any = Field(default=None, description="A constant.")
    transforms: list[str | dict[str, dict[str, Any]]] = Field(
        default_factory=list, description="Named string transforms applied in order."
    )
    map: dict[str, Any] | None = Field(default=None, description="Code table source -> target.")
    map_default: Any = Field(default=None, description="Target value for codes not in map.")
    cast: CastType | None = None
    datetime: DatetimeRule | None = None
    unit: UnitRule | None = None
    default: Any = Field(default=None, description="Value used where the result is empty.")
    required: bool | None = Field(
        default=None, description="Reject rows left empty (default: the model's nullability)."
    )
    description: str | None = None

    @model_validator(mode="after")
    def one_input(self) -> FieldRule:
        inputs = [name for name in ("source", "formula") if getattr(self, name) is not None]
        if "value" in self.model_fields_set:
            inputs.append("value")
        if len(inputs) != 1:
            found = ", ".join(inputs) or "none"
            raise ValueError(
                f"a rule needs exactly one of source, formula or value (found {found})"
            )
        if self.cast and self.datetime:
            raise ValueError("give either cast or datetime, not both")
        return self

    @property
    def has_map_default(self) -> bool:
        return "map_default" in self.model_fields_set

    @property
    def has_default(self) -> bool:
        return "default" in self.model_fields_set


class LookupSpec(SpecModel):
    """A value looked up in another asset, usable by name like a source column."""

    asset: str = Field(description="Asset key of the lookup table, e.g. silver/assets.")
    match: str = Field(
        description="Source column (or formula) whose value is looked up (`on` is a YAML boolean)."
    )
    key: str = Field(description="Column of the lookup table matched against `match`.")
    value: str = Field(description="Column of the lookup table returned.")
    required: bool = Field(default=False, description="Reject rows whose value is not found.")


FieldSpec = str | FieldRule | list[FieldRule]


class MappingSpec(SpecModel):
    """One mapping: a source asset to a canonical entity, written to a silver asset."""

    name: str | None = Field(default=None, description="Identifier; default from the target.")
    source: str = Field(description="Source asset key, e.g. bronze/maximo/work_orders.")
    entity: str = Field(description="Canonical entity, e.g. work_orders (see CANONICAL_MODELS).")
    target: str | None = Field(default=None, description="Default silver/<entity>.")
    quarantine: str | None = Field(default=None, description="Default quarantine/<entity>.")
    source_system: str | None = Field(
        default=None, description="Default: the source key's system part (bronze/<system>/...)."
    )
    description: str = ""
    group_name: str | None = None
    key: list[str] = Field(default_factory=list, description="Source columns naming a record.")
    latest_by: str | None = Field(
        default=None, description="Column ranking versions of a record; the newest is kept."
    )
    filter: str | None = Field(
        default=None, description="Formula; rows where it is not true are skipped (counted)."
    )
    strict: bool = Field(default=False, description="Fail the run on any rejected row.")
    max_reject_ratio: float = Field(default=0.05, ge=0.0, le=1.0)
    source_columns: list[str] | dict[str, str] | None = Field(
        default=None,
        description="Columns the source provides (with descriptions); checked at load time.",
    )
    missing_columns: Literal["error", "empty"] = Field(
        default="error",
        description="A referenced column absent from a batch: fail the batch (files, SQL), or "
        "read it as empty (JSON APIs such as Maximo leave null attributes out).",
    )
    lookups: dict[str, LookupSpec] = Field(default_factory=dict)
    fields: dict[str, FieldSpec]

    def rules(self, field: str) -> list[FieldRule]:
        spec = self.fields[field]
        if isinstance(spec, str):
            return [FieldRule(source=spec)]
        if isinstance(spec, FieldRule):
            return [spec]
        return list(spec)

    def key_path(self, which: Literal["source", "target", "quarantine"]) -> list[str]:
        if which == "source":
            return self.source.split("/")
        explicit = self.target if which == "target" else self.quarantine
        if explicit:
            return explicit.split("/")
        layer = "silver" if which == "target" else "quarantine"
        return [layer, self.entity]

    @property
    def system(self) -> str:
        if self.source_system:
            return self.source_system
        parts = self.key_path("source")
        return parts[1] if len(parts) > 2 else parts[0]

    @property
    def mapping_name(self) -> str:
        return self.name or "_".join(self.key_path("target"))

    def declared_source_columns(self) -> dict[str, str] | None:
        if self.source_columns is None:
            return None
        if isinstance(self.source_columns, dict):
            return dict(self.source_columns)
        return dict.fromkeys(self.source_columns, "")


BUILTIN_DIR = Path(__file__).resolve().parent / "builtin"


class MappingDeclaration(SpecModel):
    """What a ``defs.yaml`` may hold: a full spec, or ``extends:`` a built-in mapping plus the
    keys and fields that differ. Checked in full once the built-in is merged in."""

    model_config = ConfigDict(extra="allow")

    extends: str | None = Field(
        default=None, description="A built-in mapping, e.g. maximo/work_orders."
    )


def builtin_names() -> list[str]:
    return sorted(
        str(path.relative_to(BUILTIN_DIR).with_suffix("")) for path in BUILTIN_DIR.rglob("*.yaml")
    )


def resolve_extends(document: dict[str, Any]) -> dict[str, Any]:
    """Merge ``document`` over the built-in it extends: top-level keys replace, ``fields`` and
    ``lookups`` merge per name, and a field set to null is removed."""
    name = document.get("extends")
    if not name:
        return document
    path = BUILTIN_DIR / f"{name}.yaml"
    if not path.is_file():
        known = ", ".join(builtin_names()) or "none"
        raise ValueError(f"extends: unknown built-in mapping {name!r}; known: {known}")
    base = yaml.safe_load(path.read_text(encoding="utf-8"))
    base = resolve_extends(base.get("attributes", base))
    merged = {**base, **{k: v for k, v in document.items() if k not in ("extends",)}}
    for key in ("fields", "lookups"):
        combined = {**base.get(key, {}), **(document.get(key) or {})}
        merged[key] = {k: v for k, v in combined.items() if v is not None}
    return merged
