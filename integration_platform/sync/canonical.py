"""Bring one side's records into canonical shape (and back), quarantining what does not fit.

Reading: rename the side's fields to canonical names, translate code tables, then validate
the synced fields against the entity's pandera model with ``validate_rows``. Only the synced
fields are checked: a sync of status and cost must not reject a work order for a missing
field it does not carry. Row rules of the model whose fields are all synced still apply.
Rejected records keep their original values and reasons and are left out of this run; the
rest syncs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from integration_platform.lake.quarantine import quarantine_records
from integration_platform.model.validation import REJECT_FIELD, REJECT_REASON, validate_rows
from integration_platform.sync.spec import SideSpec, SyncSpec
from integration_platform.sync.values import Kind, content_hash, normalize, to_python_value

EXTERNAL_ID = "_external_id"
VERSION = "_version"
MODIFIED = "_modified"
HASH = "_hash"


class SyncDataError(ValueError):
    """The records read cannot be synced at all (e.g. a mapped field is absent)."""


@dataclass(frozen=True)
class SideRecords:
    """One side's records after mapping: ``frame`` (canonical values plus ``_version``,
    ``_modified`` and ``_hash``, indexed by external id), ``raw`` (as read, same index) and
    ``quarantine`` (rejected records, in the lake's quarantine shape)."""

    system: str
    frame: pd.DataFrame
    raw: pd.DataFrame
    quarantine: pd.DataFrame


def read_side(
    raw: pd.DataFrame,
    side: SideSpec,
    spec: SyncSpec,
    kinds: Mapping[str, Kind],
    external_ids: pd.Series,
    *,
    run_id: str,
) -> SideRecords:
    """Map and validate ``raw`` (one side's read); see :class:`SideRecords`."""
    fields = list(kinds)
    raw = raw.reset_index(drop=True)
    external_ids = pd.Series(external_ids.to_numpy(), index=raw.index, dtype="string")
    problems: dict[int, list[tuple[str, str]]] = {}

    def reject(mask: pd.Series | Any, field: str, reason: Any) -> None:
        for position in raw.index[mask]:
            text = reason if isinstance(reason, str) else reason(position)
            problems.setdefault(int(position), []).append((field, text))

    keys = ", ".join(side.key_fields)
    reject(external_ids.isna(), keys, f"{keys}: empty; the record cannot be addressed")
    duplicated = external_ids.duplicated(keep=False) & external_ids.notna()
    reject(duplicated, keys, lambda p: f"{keys}: {external_ids[p]!r} appears more than once")

    data: dict[str, pd.Series] = {}
    for name in fields:
        rule = side.field_map(name)
        if rule.field not in raw.columns:
            if not len(raw):
                data[name] = pd.Series([], dtype=object)
                continue
            raise SyncDataError(
                f"sync {spec.name!r}: {side.system} sent no field {rule.field!r} (mapped to "
                f"{name!r} in {_side_label(spec, side)}.fields.{name}); fields read: "
                f"{', '.join(map(str, raw.columns))}. Fix the field name in the sync spec."
            )
        column = raw[rule.field]
        table = rule.read_table()
        if table is not None:
            text = column.astype("string")
            mapped = text.map(table)
            unknown = text.notna() & mapped.isna()
            reject(
                unknown,
                name,
                lambda p, n=name, t=text, r=rule: (
                    f"{n}: {r.field} {t[p]!r} has no canonical value; add it to the code "
                    f"table of {_side_label(spec, side)}.fields.{n}"
                ),
            )
            column = mapped
        data[name] = column
    canonical = pd.DataFrame(data, index=raw.index)
    outcome = validate_rows(
        _key_to_assign(canonical, spec.match_field), subset_model(spec.model, fields)
    )
    for position, field, reason in zip(
        outcome.rejected.index,
        outcome.rejected[REJECT_FIELD],
        outcome.rejected[REJECT_REASON],
        strict=True,
    ):
        problems.setdefault(int(position), []).append((str(field), str(reason)))

    bad = sorted(problems)
    good = raw.index.difference(pd.Index(bad))
    valid = normalize(canonical.loc[good, fields], kinds)
    valid[VERSION] = (
        raw.loc[good, side.version_field].astype("string")
        if side.version_field and side.version_field in raw.columns
        else pd.Series(pd.NA, index=good, dtype="string")
    )
    if side.modified_field and side.modified_field in raw.columns:
        modified = pd.to_datetime(
            raw.loc[good, side.modified_field], utc=True, errors="coerce", format="ISO8601"
        )
    else:
        modified = pd.Series(pd.NaT, index=good, dtype="datetime64[ns, UTC]")
    valid[MODIFIED] = modified
    valid[HASH] = content_hash(valid, fields)
    valid.index = pd.Index(external_ids[good].astype(str), name=EXTERNAL_ID)
    kept_raw = raw.loc[good].set_axis(valid.index)

    rejects = pd.DataFrame(
        {
            REJECT_FIELD: ["; ".join(dict.fromkeys(f for f, _ in problems[p])) for p in bad],
            REJECT_REASON: ["; ".join(dict.fromkeys(r for _, r in problems[p])) for p in bad],
        },
        index=pd.Index(bad),
    )
    source = raw.assign(**{EXTERNAL_ID: external_ids})
    quarantine = quarantine_records(
        source,
        rejects,
        entity=spec.table,
        source_system=side.system,
        key_column=EXTERNAL_ID,
        run_id=run_id,
    )
    return SideRecords(side.system, valid, kept_raw, quarantine)


def _key_to_assign(canonical: pd.DataFrame, match: str | None) -> pd.DataFrame:
    """The frame to validate: an empty match value is allowed (stood in for), because it is
    the other system's to assign when the sync creates the record there (Maximo numbering a
    work order, an identity column); the engine writes the number back."""
    if not match or match not in canonical.columns or not canonical[match].isna().any():
        return canonical
    column = canonical[match].astype(object)
    return canonical.assign(**{match: column.where(column.notna(), "(to be assigned)")})


def to_side_values(
    side: SideSpec, values: Mapping[str, Any], kinds: Mapping[str, Kind]
) -> dict[str, Any]:
    """Canonical field -> value as the side's field -> value, code tables applied.

    Raises ``ValueError`` naming the field when a canonical value has no code on this side.
    """
    out: dict[str, Any] = {}
    for name, value in values.items():
        rule = side.field_map(name)
        plain = to_python_value(value, kinds[name])
        table = rule.write_table()
        if table is not None and plain is not None:
            if str(plain) not in table:
                raise ValueError(
                    f"{name}: {plain!r} has no {side.system} code; add it to write_values "
                    f"of the field map for {name}"
                )
            plain = table[str(plain)]
        out[rule.field] = plain
    return out


def _side_label(spec: SyncSpec, side: SideSpec) -> str:
    return "left" if side is spec.left else "right"


# -- validating only the synced fields -------------------------------------------------------

_SUBSETS: dict[tuple[type, tuple[str, ...]], type] = {}


def subset_model(model: type, fields: Sequence[str]) -> Any:
    """``model`` restricted to ``fields``, usable wherever ``validate_rows`` takes a model.

    Column rules of the fields are kept; a row rule is kept only when it runs on the fields
    alone (tried on an empty frame), so rules about fields the sync does not carry are left
    to the mappings that load the full record.
    """
    key = (model, tuple(sorted(fields)))
    found = _SUBSETS.get(key)
    if found is not None:
        return found
    full = model.to_schema()
    if set(fields) >= set(full.columns):
        _SUBSETS[key] = model
        return model
    schema = full.select_columns([name for name in full.columns if name in set(fields)])
    empty = pd.DataFrame({name: pd.Series([], dtype=object) for name in schema.columns})
    kept = []
    for check in schema.checks:
        try:
            check(empty)
        except Exception:  # the rule needs a field the sync does not carry
            continue
        kept.append(check)
    schema.checks = kept
    subset = type(
        model.__name__, (), {"to_schema": classmethod(lambda cls: schema), "__doc__": model.__doc__}
    )
    _SUBSETS[key] = subset
    return subset
