"""Compile a mapping spec once, at load time, into a vectorized transform run per batch.

Compilation checks everything that can be checked without data: target fields exist in the
canonical model and required ones are mapped, formulas parse, names resolve to declared source
columns, lookups or earlier targets, transforms and units exist, rule outputs fit the model's
types, and formula fields do not depend on each other in a cycle. Every problem names the file,
line and field, and all of them are reported at once.
"""

from __future__ import annotations

import difflib
import graphlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pandera.pandas as pa
import pyarrow as pa_arrow
import yaml
from pydantic import ValidationError

from integration_platform.mapping.formula import Formula, FormulaError, parse_formula
from integration_platform.mapping.locate import SourceMap, SpecPath
from integration_platform.mapping.spec import FieldRule, MappingSpec, resolve_extends
from integration_platform.mapping.transforms import (
    TransformSpecError,
    apply_transform,
    cast,
    check_transform,
    check_units,
    convert_units,
    map_values,
    parse_datetime,
)
from integration_platform.model import CANONICAL_MODELS
from integration_platform.model.validation import validate_rows

TARGET_PREFIX = "target."
# Names every formula can use besides source columns, lookups and targets.
MAPPING_NAMES = ("mapping.source_system",)
REJECT_FIELD = "reject_field"
REJECT_REASON = "reject_reason"
LINEAGE_COLUMNS = ("_source_file", "_source_line")
CAST_KINDS = {
    "string": "string",
    "integer": "number",
    "float": "number",
    "boolean": "boolean",
    "datetime": "datetime",
}


@dataclass(frozen=True)
class SpecProblem:
    where: str
    field: str | None
    message: str

    def __str__(self) -> str:
        subject = f"field {self.field}: " if self.field else ""
        return f"{self.where}: {subject}{self.message}"


class MappingSpecError(ValueError):
    """Everything wrong with a spec, one problem per line (file, line, field, what to do)."""

    def __init__(self, problems: list[SpecProblem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(problem) for problem in problems))


class MappingRuntimeError(RuntimeError):
    """The data does not fit the spec as a whole (e.g. a declared source column is missing)."""


def column_kind(dtype: Any) -> str:
    """The model column's kind, in the vocabulary of formula result types."""
    text = str(dtype).lower()
    if "datetime" in text or "timestamp" in text:
        return "datetime"
    if "float" in text or "int" in text:
        return "number"
    if "bool" in text:
        return "boolean"
    if "str" in text:
        return "string"
    return "any"


def value_kind(value: Any) -> str:
    if value is None:
        return "any"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "any"


@dataclass(frozen=True)
class CompiledRule:
    rule: FieldRule
    when: Formula | None
    formula: Formula | None
    timezone_from: Formula | None
    output_kind: str

    @property
    def input_label(self) -> str:
        if self.rule.source is not None:
            return self.rule.source
        if self.formula is not None:
            return "formula"
        return "value"


@dataclass(frozen=True)
class CompiledField:
    name: str
    rules: tuple[CompiledRule, ...]
    kind: str
    required: bool
    references: frozenset[str]

    def describe(self) -> str:
        """The field's rules in words, for the mapping table in the UI."""
        parts = []
        for compiled in self.rules:
            rule = compiled.rule
            steps = []
            if rule.formula is not None:
                steps.append(f"`{rule.formula}`")
            elif rule.source is None:
                steps.append(f"constant {rule.value!r}")
            for transform in rule.transforms:
                steps.append(transform if isinstance(transform, str) else next(iter(transform)))
            if rule.map is not None:
                steps.append(f"code table ({len(rule.map)} codes)")
            if rule.cast:
                steps.append(f"as {rule.cast}")
            if rule.datetime:
                zone = rule.datetime.timezone or rule.datetime.timezone_from or "offset"
                steps.append(f"{rule.datetime.format} date-time ({zone})")
            if rule.unit:
                steps.append(f"{rule.unit.from_unit} -> {rule.unit.to_unit}")
            if rule.has_default:
                steps.append(f"default {rule.default!r}")
            text = " -> ".join(steps) or "copy"
            parts.append(f"when `{rule.when}`: {text}" if rule.when else text)
        if self.required:
            parts.append("required")
        return "; ".join(parts)


@dataclass(frozen=True)
class MappingOutcome:
    """valid + rejected + filtered + superseded = the input rows, always."""

    valid: pd.DataFrame
    rejected: pd.DataFrame
    input_rows: int
    filtered: int
    superseded: int


@dataclass
class CompiledMapping:
    spec: MappingSpec
    model: type[pa.DataFrameModel]
    fields: list[CompiledField]
    filter: Formula | None
    lookup_on: dict[str, Formula]
    source_map: SourceMap
    model_columns: list[str] = field(default_factory=list)

    # ---- what the UI shows -------------------------------------------------------------
    def source_columns_of(self, name: str, seen: frozenset[str] = frozenset()) -> set[str]:
        """Source columns feeding a target field, through formulas and earlier targets."""
        compiled = {item.name: item for item in self.fields}[name]
        columns: set[str] = set()
        for reference in compiled.references:
            if reference.startswith(TARGET_PREFIX):
                target = reference[len(TARGET_PREFIX) :]
                if target not in seen:
                    columns |= self.source_columns_of(target, seen | {name})
            elif reference in self.spec.lookups:
                columns |= {ref for ref in self.lookup_on[reference].references}
            elif reference not in MAPPING_NAMES:
                columns.add(reference.split(".")[0])
        return columns

    def lookups_of(self, name: str) -> set[str]:
        compiled = {item.name: item for item in self.fields}[name]
        return {ref for ref in compiled.references if ref in self.spec.lookups}

    def mapping_table(self) -> str:
        lines = ["| target | source | rule |", "| --- | --- | --- |"]
        for compiled in self.fields:
            sources = sorted(self.source_columns_of(compiled.name))
            sources += [f"lookup {name}" for name in sorted(self.lookups_of(compiled.name))]
            description = compiled.describe().replace("|", "\\|")
            lines.append(f"| {compiled.name} | {', '.join(sources) or '-'} | {description} |")
        return "\n".join(lines)

    # ---- running it --------------------------------------------------------------------
    def apply(
        self, frame: pd.DataFrame, lookup_tables: Mapping[str, pd.DataFrame] | None = None
    ) -> MappingOutcome:
        lookup_tables = lookup_tables or {}
        self._check_columns(frame, lookup_tables)
        input_rows = len(frame)
        work = self._latest_versions(frame)
        superseded = input_rows - len(work)
        env = self._environment(work)
        filtered = 0
        if self.filter is not None:
            keep = _as_condition(self.filter.evaluate(env.resolve, work.index))
            filtered = int((~keep).sum())
            work = work[keep]
            env = self._environment(work)
        # Reasons are kept only for the rows that have one (few), not as full columns.
        reasons: dict[str, _Reasons] = {}
        for name in self.spec.lookups:
            values, reason = self._lookup(name, env, lookup_tables[name])
            env.names[name] = values
            reasons[f"lookup {name}"] = _Reasons.of(reason)
        for compiled in self.fields:
            values, reason = self._field(compiled, env)
            env.names[TARGET_PREFIX + compiled.name] = values
            reasons[compiled.name] = _Reasons.of(reason)
        columns = {
            compiled.name: env.names[TARGET_PREFIX + compiled.name] for compiled in self.fields
        }
        if "source_system" in self.model_columns and "source_system" not in columns:
            columns["source_system"] = _constant_text(self.spec.system, work.index)
        columns["_input_row"] = pd.Series(work.index, index=work.index)
        failing = _failing_rows(reasons, len(work))
        failed = _collect_rejects(reasons, work.index, failing)
        env.names.clear()  # `columns` holds what is still needed
        if failing.any():
            keep = ~failing
            kept = work.index[keep]
            columns = {
                name: pd.Series(values.array[keep], index=kept, name=name, copy=False)
                for name, values in columns.items()
            }
            candidates = pd.DataFrame(columns, index=kept, copy=False)
        else:
            candidates = pd.DataFrame(columns, index=work.index)
        del columns
        validation = validate_rows(candidates, self.model)
        del candidates
        failed_model = validation.rejected.set_index("_input_row")[[REJECT_FIELD, REJECT_REASON]]
        parts = [part for part in (failed, failed_model) if len(part)]
        all_failed = pd.concat(parts).sort_index() if parts else failed
        rejected = work.loc[all_failed.index].assign(
            **{
                REJECT_FIELD: all_failed[REJECT_FIELD].astype("string"),
                REJECT_REASON: all_failed[REJECT_REASON].astype("string"),
            }
        )
        checked = validation.valid  # already indexed 0..n-1
        valid = pd.DataFrame(
            {column: checked[column] for column in self.model_columns if column in checked},
            index=pd.RangeIndex(len(checked)),
            copy=False,
        )
        return MappingOutcome(
            valid=valid,
            rejected=rejected,
            input_rows=input_rows,
            filtered=filtered,
            superseded=superseded,
        )

    def _environment(self, frame: pd.DataFrame) -> _Environment:
        env = _Environment(frame, missing_as_null=self.spec.missing_columns == "empty")
        env.names["mapping.source_system"] = _constant_text(self.spec.system, frame.index)
        return env

    def _check_columns(
        self, frame: pd.DataFrame, lookup_tables: Mapping[str, pd.DataFrame]
    ) -> None:
        present = set(frame.columns)
        missing = sorted(
            name
            for name in self._referenced_source_columns()
            if name not in present and name.split(".")[0] not in present
        )
        if missing and self.spec.missing_columns == "empty":
            return
        if missing:
            raise MappingRuntimeError(
                f"{self.source_map.where(('source',))}: source {self.spec.source} has no "
                f"column(s) {', '.join(missing)} that the mapping reads; fix the mapping or the "
                f"extract (it has: {', '.join(map(str, frame.columns[:30]))})"
            )
        for name, lookup in self.spec.lookups.items():
            table = lookup_tables.get(name)
            if table is None:
                raise MappingRuntimeError(f"lookup {name}: no table given for {lookup.asset}")
            absent = [column for column in (lookup.key, lookup.value) if column not in table]
            if absent:
                raise MappingRuntimeError(
                    f"{self.source_map.where(('lookups', name))}: lookup {name}: "
                    f"{lookup.asset} has no column(s) {', '.join(absent)}"
                )

    def _referenced_source_columns(self) -> set[str]:
        references: set[str] = set(self.spec.key)
        if self.spec.latest_by:
            references.add(self.spec.latest_by)
        formulas = [self.filter, *self.lookup_on.values()]
        for compiled in self.fields:
            references |= set(compiled.references)
        for formula in formulas:
            if formula is not None:
                references |= set(formula.references)
        return {
            reference
            for reference in references
            if not reference.startswith(TARGET_PREFIX)
            and reference not in self.spec.lookups
            and reference not in MAPPING_NAMES
        }

    def _latest_versions(self, frame: pd.DataFrame) -> pd.DataFrame:
        if not self.spec.latest_by or not self.spec.key:
            return frame
        if self.spec.latest_by not in frame or not set(self.spec.key) <= set(frame.columns):
            return frame  # absent from this batch and read as empty (missing_columns: empty)
        order = version_order(frame[self.spec.latest_by])
        ranked = frame.assign(_version=order).sort_values(
            "_version", kind="stable", na_position="first"
        )
        latest = ranked.drop_duplicates(self.spec.key, keep="last").drop(columns="_version")
        return latest.sort_index()

    def _lookup(
        self, name: str, env: _Environment, table: pd.DataFrame
    ) -> tuple[pd.Series, pd.Series]:
        lookup = self.spec.lookups[name]
        on = self.lookup_on[name].evaluate(env.resolve, env.index)
        keys = table[lookup.key].astype("string").str.strip()
        index = pd.Series(table[lookup.value].to_numpy(), index=keys)
        index = index[~index.index.duplicated(keep="last")]
        values = on.astype("string").str.strip().map(index)
        reasons = pd.Series(pd.NA, index=env.index, dtype="string")
        if lookup.required:
            missing = on.notna() & values.isna()
            if missing.any():
                reasons[missing] = [
                    f"lookup {name}: {lookup.match} {value!r} not found in {lookup.asset}"
                    for value in on[missing]
                ]
        return values, reasons

    def _field(self, compiled: CompiledField, env: _Environment) -> tuple[pd.Series, pd.Series]:
        pieces: list[pd.Series] = []
        reason_pieces: list[pd.Series] = []
        remaining = pd.Series(True, index=env.index)
        for rule in compiled.rules:
            if rule.when is not None:
                mask = remaining & _as_condition(rule.when.evaluate(env.resolve, env.index))
            else:
                mask = remaining
            if not mask.any():
                continue
            everything = bool(mask.all())
            subset = env.index if everything else env.index[mask.to_numpy()]
            values, reasons = self._rule(compiled, rule, env, subset)
            pieces.append(values)
            reason_pieces.append(reasons)
            remaining = remaining & ~mask
            if not remaining.any():
                break
        values = _combine(pieces, env.index, compiled.kind)
        reasons = _combine_reasons(reason_pieces, env.index)
        if compiled.required:
            empty = values.isna() & reasons.isna()
            if empty.any():
                inputs = ", ".join(rule.input_label for rule in compiled.rules)
                reasons[empty] = f"{compiled.name}: required, but empty (from {inputs})"
        return values, reasons

    def _rule(
        self, compiled: CompiledField, rule: CompiledRule, env: _Environment, subset: pd.Index
    ) -> tuple[pd.Series, pd.Series]:
        spec = rule.rule
        name = compiled.name
        label = rule.input_label
        if rule.formula is not None:
            raw = rule.formula.evaluate(env.resolve, env.index)
        elif spec.source is not None:
            raw = env.resolve(spec.source)
        else:
            raw = pd.Series([spec.value] * len(env.index), index=env.index)
            if isinstance(spec.value, str):
                raw = raw.astype("string[pyarrow]")
        if len(subset) != len(env.index):
            raw = raw.loc[subset]
        reasons: pd.Series | None = None

        def step(converted: Any) -> pd.Series:
            nonlocal reasons
            found = converted.reasons
            if reasons is None:
                reasons = found
            elif found.notna().any():
                reasons = reasons.fillna(found)
            return converted.values

        for transform in spec.transforms:
            transform_name, args = _transform_parts(transform)
            raw = step(apply_transform(transform_name, args, raw, field=name, source=label))
        if spec.map is not None:
            kwargs: dict[str, Any] = {}
            if spec.has_map_default:
                kwargs["default"] = spec.map_default
            raw = step(map_values(raw, table=spec.map, field=name, source=label, **kwargs))
        if spec.datetime is not None:
            zone: Any = spec.datetime.timezone
            if rule.timezone_from is not None:
                zone = rule.timezone_from.evaluate(env.resolve, env.index).loc[subset]
            raw = step(
                parse_datetime(
                    raw, fmt=spec.datetime.format, timezone=zone, field=name, source=label
                )
            )
        elif spec.cast is not None:
            raw = step(cast(raw, to=spec.cast, field=name, source=label))
        elif _is_text(raw) and compiled.kind in ("number", "datetime", "boolean"):
            # Text sources (CSV, many REST APIs) into typed fields: convert with a reason per
            # bad value instead of leaving it to a less specific model error.
            target = {"number": "float", "datetime": "datetime", "boolean": "boolean"}
            raw = step(cast(raw, to=target[compiled.kind], field=name, source=label))
        if spec.unit is not None:
            raw = step(
                convert_units(
                    raw,
                    from_unit=spec.unit.from_unit,
                    to_unit=spec.unit.to_unit,
                    field=name,
                    source=label,
                )
            )
        if spec.has_default and spec.default is not None:
            raw = raw.where(raw.notna(), spec.default)
        if reasons is None:
            reasons = pd.Series(pd.NA, index=subset, dtype="string")
        return raw, reasons


SAP_DATE = r"^/Date\((-?\d+)(?:[+-]\d{4})?\)/$"


def version_order(raw: pd.Series) -> pd.Series:
    """Rank record versions: numbers (Maximo ``_rowstamp``), SAP ``/Date(ms)/`` stamps or
    ISO-8601 date-times, whichever the column holds; unknown values rank oldest."""
    order = pd.to_numeric(raw, errors="coerce")
    if order.notna().any() or raw.isna().all():
        return order
    text = raw.astype("string[pyarrow]").str.strip()
    milliseconds = pd.to_numeric(text.str.extract(SAP_DATE, expand=False), errors="coerce")
    if milliseconds.notna().any():
        return milliseconds
    stamps = pd.to_datetime(text, utc=True, errors="coerce", format="ISO8601")
    nanoseconds = stamps.dt.tz_localize(None).astype("int64").astype("float64")
    return nanoseconds.where(stamps.notna())


class _Environment:
    """Resolves names in formulas and ``source:``: source columns, nested paths, lookups
    and already-mapped targets (``target.<field>``)."""

    def __init__(self, frame: pd.DataFrame, *, missing_as_null: bool = False) -> None:
        self.frame = frame
        self.index = frame.index
        self.names: dict[str, pd.Series] = {}
        self.missing_as_null = missing_as_null

    def resolve(self, name: str) -> pd.Series:
        if name in self.names:
            return self.names[name]
        if name in self.frame.columns:
            return self.frame[name]
        head, _, rest = name.partition(".")
        if rest and head in self.frame.columns:
            return _nested(self.frame[head], rest.split("."))
        if self.missing_as_null:
            return pd.Series(pd.NA, index=self.index, dtype="string[pyarrow]")
        raise MappingRuntimeError(f"unknown name {name!r}: not a source column, lookup or target")


def _constant_text(value: str, index: pd.Index) -> pd.Series:
    """``value`` on every row as ``string[pyarrow]``, built in Arrow (no Python objects)."""
    array = pa_arrow.repeat(pa_arrow.scalar(value, pa_arrow.large_string()), len(index))
    return pd.Series(pd.arrays.ArrowStringArray(array), index=index)


def _nested(column: pd.Series, path: list[str]) -> pd.Series:
    """A value inside nested records (JSON objects) by dotted path; missing parts are null."""
    import pyarrow as pa_types

    dtype = column.dtype
    if isinstance(dtype, pd.ArrowDtype) and pa_types.types.is_struct(dtype.pyarrow_dtype):
        result = column
        for part in path:
            result = result.struct.field(part)
        return result

    def dig(value: Any) -> Any:
        for part in path:
            if isinstance(value, Mapping):
                value = value.get(part)
            elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
                value = value[int(part)]
            else:
                return None
        return value

    return column.map(dig)


def _is_text(series: pd.Series) -> bool:
    return pd.api.types.is_string_dtype(series.dtype) or series.dtype == object


def _as_condition(series: pd.Series) -> pd.Series:
    """Null counts as false wherever a condition decides."""
    return series.astype("boolean").fillna(False).astype(bool)


def _combine(pieces: list[pd.Series], index: pd.Index, kind: str) -> pd.Series:
    if not pieces:
        return _empty(index, kind)
    if len(pieces) == 1 and len(pieces[0]) == len(index):
        return pieces[0].reindex(index)
    return pd.concat(pieces).reindex(index)


def _empty(index: pd.Index, kind: str) -> pd.Series:
    dtypes = {
        "number": "float64",
        "datetime": "datetime64[ns, UTC]",
        "boolean": "boolean",
        "string": "string[pyarrow]",
    }
    return pd.Series(pd.NA if kind != "number" else float("nan"), index=index).astype(
        dtypes.get(kind, "object")
    )


def _combine_reasons(pieces: list[pd.Series], index: pd.Index) -> pd.Series:
    """Reasons on ``index`` (text, null where the row is fine)."""
    if not pieces:
        return pd.Series(pd.NA, index=index, dtype="string")
    if len(pieces) == 1 and pieces[0].index.equals(index):
        return pieces[0]  # the usual case: one rule covering every row, no realignment
    return pd.concat(pieces).reindex(index).astype("string")


@dataclass(frozen=True)
class _Reasons:
    """The reasons of one field, only for the rows (by position) that have one."""

    positions: np.ndarray
    texts: list[str]

    @classmethod
    def of(cls, reasons: pd.Series) -> _Reasons:
        positions = np.flatnonzero(reasons.notna().to_numpy(dtype=bool))
        return cls(positions, [str(text) for text in reasons.iloc[positions]])


def _failing_rows(reasons: Mapping[str, _Reasons], size: int) -> np.ndarray:
    """Mask of rows with at least one reason."""
    failing = np.zeros(size, dtype=bool)
    for reason in reasons.values():
        failing[reason.positions] = True
    return failing


def _collect_rejects(
    reasons: Mapping[str, _Reasons], index: pd.Index, failing: np.ndarray
) -> pd.DataFrame:
    """Rows with at least one reason: the failing fields and the reasons joined with '; '."""
    if not reasons or not len(index):
        return pd.DataFrame({REJECT_FIELD: [], REJECT_REASON: []}, dtype="string")
    positions = np.flatnonzero(failing)
    if not len(positions):
        return pd.DataFrame({REJECT_FIELD: [], REJECT_REASON: []}, index=index[:0], dtype="string")
    found: dict[int, list[tuple[str, str]]] = {int(position): [] for position in positions}
    for name, reason in reasons.items():  # in field order, the order reasons are joined in
        for position, text in zip(reason.positions.tolist(), reason.texts, strict=True):
            found[position].append((name, text))
    fields = [", ".join(name for name, _ in found[int(p)]) for p in positions]
    joined = ["; ".join(text for _, text in found[int(p)]) for p in positions]
    return pd.DataFrame(
        {REJECT_FIELD: fields, REJECT_REASON: joined}, index=index[positions], dtype="string"
    )


def _transform_parts(transform: str | Mapping[str, Mapping[str, Any]]) -> tuple[str, dict]:
    if isinstance(transform, str):
        return transform, {}
    ((name, args),) = transform.items()
    return name, dict(args or {})


# ---- compilation ---------------------------------------------------------------------------


def compile_mapping(
    spec: MappingSpec,
    *,
    source_map: SourceMap | None = None,
    model: type[pa.DataFrameModel] | None = None,
) -> CompiledMapping:
    """Check ``spec`` and build its transform; raise :class:`MappingSpecError` listing every
    problem with its file, line and field."""
    source_map = source_map or SourceMap(file=None)
    problems: list[SpecProblem] = []

    def problem(path: SpecPath, field_name: str | None, message: str) -> None:
        problems.append(SpecProblem(source_map.where(path), field_name, message))

    if model is None:
        model = CANONICAL_MODELS.get(spec.entity)
        if model is None:
            close = difflib.get_close_matches(spec.entity, CANONICAL_MODELS, n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            known = ", ".join(sorted(CANONICAL_MODELS))
            problem(("entity",), None, f"unknown entity {spec.entity!r}{hint}; known: {known}")
            raise MappingSpecError(problems)
    schema = model.to_schema()
    columns = schema.columns
    declared = spec.declared_source_columns()
    names_known = set(declared or {}) | set(spec.lookups)

    def check_reference(reference: str, path: SpecPath, field_name: str | None) -> None:
        if reference.startswith(TARGET_PREFIX):
            target = reference[len(TARGET_PREFIX) :]
            if target not in spec.fields:
                problem(path, field_name, f"{reference} refers to a field the mapping lacks")
            return
        if declared is None or reference in names_known or reference in MAPPING_NAMES:
            return
        if reference.split(".")[0] in names_known:
            return
        close = difflib.get_close_matches(reference, sorted(names_known), n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        problem(
            path,
            field_name,
            f"unknown source field {reference!r}{hint}; the source declares: "
            f"{', '.join(sorted(declared))}",
        )

    def formula(text: str, path: SpecPath, field_name: str | None) -> Formula | None:
        try:
            parsed = parse_formula(text)
        except FormulaError as error:
            problem(path, field_name, f"bad formula {text!r}: {error}")
            return None
        for reference in sorted(parsed.references):
            check_reference(reference, path, field_name)
        return parsed

    for column in (*spec.key, *([spec.latest_by] if spec.latest_by else [])):
        check_reference(column, ("key",), None)
    filter_formula = formula(spec.filter, ("filter",), None) if spec.filter else None
    lookup_on: dict[str, Formula] = {}
    for name, lookup in spec.lookups.items():
        parsed = formula(lookup.match, ("lookups", name, "match"), None)
        if parsed is not None:
            lookup_on[name] = parsed

    compiled_fields: dict[str, CompiledField] = {}
    for name in spec.fields:
        path: SpecPath = ("fields", name)
        if name not in columns:
            close = difflib.get_close_matches(name, list(columns), n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            problem(path, name, f"{model.__name__} has no field {name!r}{hint}")
            continue
        kind = column_kind(columns[name].dtype)
        rules = spec.rules(name)
        compiled_rules = []
        references: set[str] = set()
        for position, rule in enumerate(rules):
            rule_path = (
                (*path, position) if len(rules) > 1 or isinstance(spec.fields[name], list) else path
            )
            when = formula(rule.when, (*rule_path, "when"), name) if rule.when else None
            body = formula(rule.formula, (*rule_path, "formula"), name) if rule.formula else None
            zone = None
            if rule.datetime and rule.datetime.timezone_from:
                zone = formula(
                    rule.datetime.timezone_from, (*rule_path, "datetime", "timezone_from"), name
                )
            if rule.source is not None:
                check_reference(rule.source, (*rule_path, "source"), name)
                references.add(rule.source)
            for parsed in (when, body, zone):
                if parsed is not None:
                    references |= set(parsed.references)
            for transform in rule.transforms:
                transform_name, args = _transform_parts(transform)
                try:
                    check_transform(transform_name, args)
                except TransformSpecError as error:
                    problem((*rule_path, "transforms"), name, str(error))
            if rule.unit is not None:
                try:
                    check_units(rule.unit.from_unit, rule.unit.to_unit)
                except TransformSpecError as error:
                    problem((*rule_path, "unit"), name, str(error))
            output = _output_kind(rule, body)
            if output not in ("any", kind) and not (output == "string" and kind == "datetime"):
                problem(
                    rule_path,
                    name,
                    f"type clash: {name} is {kind} in {model.__name__}, but this rule gives "
                    f"{output}; add a cast or datetime rule, or map it to another field",
                )
            compiled_rules.append(
                CompiledRule(
                    rule=rule, when=when, formula=body, timezone_from=zone, output_kind=output
                )
            )
        explicit = [rule.required for rule in rules if rule.required is not None]
        required = explicit[-1] if explicit else not columns[name].nullable
        compiled_fields[name] = CompiledField(
            name=name,
            rules=tuple(compiled_rules),
            kind=kind,
            required=required,
            references=frozenset(references),
        )

    automatic = {"source_system"}
    for name, column in columns.items():
        if not column.nullable and name not in spec.fields and name not in automatic:
            problem(("fields",), name, f"required by {model.__name__} but not mapped")

    order = _field_order(compiled_fields, source_map, problems)
    if problems:
        raise MappingSpecError(problems)
    return CompiledMapping(
        spec=spec,
        model=model,
        fields=[compiled_fields[name] for name in order],
        filter=filter_formula,
        lookup_on=lookup_on,
        source_map=source_map,
        model_columns=list(columns),
    )


def _output_kind(rule: FieldRule, body: Formula | None) -> str:
    if rule.unit is not None:
        return "number"
    if rule.datetime is not None:
        return "datetime"
    if rule.cast is not None:
        return CAST_KINDS[rule.cast]
    if rule.map is not None:
        kinds = {value_kind(value) for value in rule.map.values()}
        return kinds.pop() if len(kinds) == 1 else "any"
    if body is not None:
        return body.result_type
    if rule.source is None:
        return value_kind(rule.value)
    return "any"


def _field_order(
    fields: dict[str, CompiledField], source_map: SourceMap, problems: list[SpecProblem]
) -> list[str]:
    """Fields in dependency order (``target.x`` references); a cycle is a spec problem."""
    graph = {
        name: {
            reference[len(TARGET_PREFIX) :]
            for reference in compiled.references
            if reference.startswith(TARGET_PREFIX) and reference[len(TARGET_PREFIX) :] in fields
        }
        for name, compiled in fields.items()
    }
    try:
        return list(graphlib.TopologicalSorter(graph).static_order())
    except graphlib.CycleError as error:
        cycle = error.args[1]
        problems.append(
            SpecProblem(
                source_map.where(("fields", cycle[0])),
                cycle[0],
                f"formula fields depend on each other in a cycle: {' -> '.join(cycle)}",
            )
        )
        return list(fields)


def load_spec_file(path: str | Path) -> tuple[MappingSpec, SourceMap]:
    """Read a mapping from a component ``defs.yaml`` (``attributes:``) or a bare spec file."""
    file = Path(path)
    text = file.read_text(encoding="utf-8")
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        line = f", line {mark.line + 1}" if mark else ""
        raise MappingSpecError(
            [SpecProblem(f"{file}{line}", None, f"not valid YAML: {error}")]
        ) from None
    prefix: SpecPath = ()
    if isinstance(document, dict) and "attributes" in document:
        document, prefix = document["attributes"], ("attributes",)
    source_map = SourceMap.from_text(text, file=file, prefix=prefix)
    return parse_spec(document, source_map), source_map


def parse_spec(document: Any, source_map: SourceMap) -> MappingSpec:
    """Validate the spec's shape (after merging a built-in it ``extends``); pydantic errors
    become file/line/field problems."""
    try:
        if isinstance(document, dict):
            document = resolve_extends(document)
    except ValueError as error:
        problem = SpecProblem(source_map.where(("extends",)), None, str(error))
        raise MappingSpecError([problem]) from None
    try:
        return MappingSpec.model_validate(document)
    except ValidationError as error:
        problems = []
        for detail in error.errors():
            location = tuple(part for part in detail["loc"] if not _is_union_tag(part))
            field_name = str(location[1]) if len(location) > 1 and location[0] == "fields" else None
            where = "/".join(str(part) for part in location)
            problems.append(
                SpecProblem(source_map.where(location), field_name, f"{where}: {detail['msg']}")
            )
        raise MappingSpecError(_unique(problems)) from None


def _is_union_tag(part: Any) -> bool:
    return isinstance(part, str) and (
        part in {"str", "FieldRule", "list[FieldRule]"} or part.startswith("function-")
    )


def _unique(problems: list[SpecProblem]) -> list[SpecProblem]:
    seen: set[str] = set()
    result = []
    for problem in problems:
        if str(problem) not in seen:
            seen.add(str(problem))
            result.append(problem)
    return result
