"""Apply claimed events to the canonical store: the silver Delta tables.

Each event becomes a *patch* of the canonical record it concerns:

- vendor formats (``maximo``, ``upkeep``, ``fiix``) go through the built-in mapping of that
  vendor and entity (``mapping/builtin/<format>/<table>.yaml``), with the webhook source's name
  as ``source_system`` so ids match what a batch mapping of the same system writes; only the
  fields whose source attributes the message carries are part of the patch (a status message
  does not blank the title, and a mapping default does not overwrite a stored value);
- the ``common`` format already speaks the canonical vocabulary: its ``data`` fields that are
  columns of the model are the patch; the id is ``data.<id column>`` if given, else
  ``<source>:<external_id>``.

Patches are laid over the stored row (or start a new one), in per-record order, and a patch
whose ``updated_at`` (default: the event's ``occurred_at``) is not newer than the row's is
stale: the event counts as processed and changes nothing. The resulting rows are validated
against the canonical model and written with one Delta MERGE per table, keyed by the canonical
id and guarded by ``updated_at``, so applying the same events again changes nothing. Every
processed event is also added to ``silver/maintenance_events`` (MERGE on source + event id).
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from integration_platform.webhooks.inbox import ClaimedEvent, Outcome

if TYPE_CHECKING:
    from integration_platform.lake import DeltaLake
    from integration_platform.mapping.compiler import CompiledMapping

SILVER = "silver"
EVENTS_TABLE = "maintenance_events"
MAX_FOLD_PASSES = 5


@dataclass(frozen=True)
class EntityTarget:
    """Where events about one entity type land."""

    table: str
    id_column: str
    model_name: str

    @property
    def parts(self) -> list[str]:
        return [SILVER, self.table]

    def model(self) -> Any:
        from integration_platform import model

        return getattr(model, self.model_name)


TARGETS: dict[str, EntityTarget] = {
    "work_order": EntityTarget("work_orders", "work_order_id", "WorkOrder"),
    "asset": EntityTarget("assets", "asset_id", "Asset"),
    "maintenance_schedule": EntityTarget(
        "maintenance_schedules", "schedule_id", "MaintenanceSchedule"
    ),
}
EVENT_PARTS = [SILVER, EVENTS_TABLE]


class EventError(Exception):
    """This event cannot be applied (as it is, or yet): it fails and is retried later."""


@dataclass
class ApplyReport:
    outcomes: list[Outcome] = field(default_factory=list)
    stale: int = 0
    records_written: int = 0
    events_written: int = 0
    versions: dict[str, int] = field(default_factory=dict)


# ---- models and mappings -------------------------------------------------------------------


def _relaxed(model: Any, *, all_nullable: bool) -> Any:
    """A stand-in for ``model`` without uniqueness (and, if asked, without required fields or
    row checks): patches are partial, and one batch may hold several states of one record."""
    import copy

    schema = copy.deepcopy(model.to_schema())
    updates: dict[str, dict[str, Any]] = {name: {"unique": False} for name in schema.columns}
    if all_nullable:
        for name in updates:
            updates[name]["nullable"] = True
    schema = schema.update_columns(updates)
    schema.unique = None
    if all_nullable:
        schema.checks = []
    suffix = "Patch" if all_nullable else "State"
    return type(f"{model.__name__}{suffix}", (), {"to_schema": classmethod(lambda cls: schema)})


@functools.cache
def _patch_model(model_name: str) -> Any:
    from integration_platform import model

    return _relaxed(getattr(model, model_name), all_nullable=True)


@functools.cache
def _state_model(model_name: str) -> Any:
    from integration_platform import model

    return _relaxed(getattr(model, model_name), all_nullable=False)


@functools.cache
def vendor_mapping(message_format: str, table: str, source: str) -> CompiledMapping:
    """The built-in mapping for a vendor format and table, as ``source``, compiled once."""
    from integration_platform.mapping.compiler import compile_mapping, load_spec_file
    from integration_platform.mapping.spec import BUILTIN_DIR

    path = BUILTIN_DIR / message_format / f"{table}.yaml"
    if not path.is_file():
        raise EventError(f"no built-in mapping {message_format}/{table} for these events")
    spec, source_map = load_spec_file(path)
    # One row per event: no collapsing to the latest version, ids in the webhook source's name.
    spec = spec.model_copy(update={"source_system": source, "latest_by": None, "key": []})
    target = next(t for t in TARGETS.values() if t.table == table)
    return compile_mapping(spec, source_map=source_map, model=_patch_model(target.model_name))


def _scalar(value: Any) -> Any:
    """Pandas/Arrow missing values as None; timestamps stay pandas Timestamps (UTC)."""
    if value is None:
        return None
    try:
        import pandas as pd

        if value is pd.NA or value is pd.NaT:
            return None
    except ImportError:  # pragma: no cover
        pass
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


# ---- patches -------------------------------------------------------------------------------


def _vendor_patches(
    events: Sequence[ClaimedEvent], message_format: str, target: EntityTarget
) -> list[dict[str, Any] | EventError]:
    from integration_platform.connectors.base import records_to_frame
    from integration_platform.webhooks.adapters import normalize

    source = events[0].source
    try:
        mapping = vendor_mapping(message_format, target.table, source)
    except EventError as error:
        return [error for _ in events]
    results: list[dict[str, Any] | EventError] = []
    records: list[dict[str, Any]] = []
    positions: list[int] = []
    for event in events:
        try:
            record = normalize(message_format, event.payload).payload
        except Exception as exc:  # the receiver checked it; a changed adapter may not agree
            results.append(EventError(f"cannot read the {message_format} message: {exc}"))
            continue
        positions.append(len(results))
        results.append({})
        records.append(record)
    if not records:
        return results
    declared = mapping.spec.declared_source_columns() or {}
    frame = records_to_frame(records, declared)
    outcome = mapping.apply(frame)
    if len(outcome.valid) + len(outcome.rejected) != len(records):
        raise RuntimeError(f"mapping {mapping.spec.mapping_name} dropped rows of a webhook batch")
    rejected = set(outcome.rejected.index.tolist())
    reasons = outcome.rejected["reject_reason"].to_dict() if len(outcome.rejected) else {}
    valid_rows = iter(outcome.valid.to_dict("records"))
    field_sources = {f.name: mapping.source_columns_of(f.name) for f in mapping.fields}
    for index, record in enumerate(records):
        position = positions[index]
        if index in rejected:
            results[position] = EventError(f"mapping rejected the record: {reasons[index]}")
            continue
        row = next(valid_rows)
        present = {key for key in record if not str(key).startswith("_") or key in declared}
        patch = {
            name: _scalar(row.get(name))
            for name, columns in field_sources.items()
            if columns & present
        }
        patch["source_system"] = source
        if _scalar(patch.get(target.id_column)) is None:
            results[position] = EventError(f"the message does not identify the {target.table} row")
            continue
        results[position] = patch
    return results


def _common_patch(event: ClaimedEvent, target: EntityTarget, columns: Sequence[str]) -> Any:
    import pandas as pd

    from integration_platform.webhooks.adapters import normalize

    try:
        data = normalize("common", event.payload).payload
    except Exception as exc:
        return EventError(f"cannot read the common message: {exc}")
    patch: dict[str, Any] = {}
    for name in columns:
        if name in data:
            patch[name] = data[name]
    patch["source_system"] = event.source
    patch["external_id"] = str(data["external_id"])
    patch[target.id_column] = data.get(target.id_column) or f"{event.source}:{data['external_id']}"
    if (
        target.table == "work_orders"
        and "asset_id" not in data
        and data.get("asset_external_id") is not None
    ):
        patch["asset_id"] = f"{event.source}:{data['asset_external_id']}"
    model = target.model()
    schema = model.to_schema()
    for name, value in list(patch.items()):
        if value is not None and "datetime" in str(schema.columns[name].dtype).lower():
            patch[name] = pd.Timestamp(value).tz_convert("UTC")
    return patch


def patches_for(
    events: Sequence[ClaimedEvent], target: EntityTarget
) -> list[dict[str, Any] | EventError]:
    """One patch (or the reason there is none) per event, in the order given."""
    columns = list(target.model().to_schema().columns)
    results: list[dict[str, Any] | EventError] = [EventError("not mapped")] * len(events)
    by_format: dict[str, list[int]] = {}
    for index, event in enumerate(events):
        by_format.setdefault(event.message_format or _default_format(event.source), []).append(
            index
        )
    for message_format, indexes in by_format.items():
        if message_format == "common":
            for index in indexes:
                results[index] = _common_patch(events[index], target, columns)
            continue
        patches = _vendor_patches([events[i] for i in indexes], message_format, target)
        for index, patch in zip(indexes, patches, strict=True):
            results[index] = patch
    return results


def _default_format(source: str) -> str:
    """Events stored before the format was recorded: the receiver's default for the name."""
    import os

    from integration_platform.webhooks.sources import FORMATS, source_var

    configured = os.environ.get(source_var(source, "FORMAT"), "").strip().lower()
    if configured in FORMATS:
        return configured
    return source if source in FORMATS else "common"


# ---- the lake ------------------------------------------------------------------------------


def read_rows(
    lake: DeltaLake, parts: Sequence[str], column: str, keys: Sequence[str]
) -> dict[str, dict[str, Any]]:
    """Stored rows whose ``column`` is one of ``keys``, by key (a filtered scan)."""
    if not keys or not lake.exists(parts):
        return {}
    import pyarrow as pa
    from deltalake import DeltaTable, QueryBuilder

    table = DeltaTable(lake.table_uri(parts), storage_options=lake.storage_options)
    if column not in table.schema().to_arrow().names:
        return {}
    # DataFusion prunes files by their key statistics. (pyarrow's dataset scan of a Delta
    # table was also tried: it cannot compare the string_view columns MERGE writes, and the
    # process aborted at exit now and then.)
    quoted = ", ".join("'" + key.replace("'", "''") + "'" for key in keys)
    found = pa.table(
        QueryBuilder()
        .register("stored", table)
        .execute(f'SELECT * FROM stored WHERE "{column}" IN ({quoted})')
        .read_all()
    )
    found = found.cast(
        pa.schema(
            pa.field(f.name, pa.string()) if pa.types.is_string_view(f.type) else f
            for f in found.schema
        )
    )
    frame = found.to_pandas(types_mapper=_arrow_strings)
    return {
        str(row[column]): {k: _scalar(v) for k, v in row.items()}
        for row in frame.to_dict("records")
    }


def _arrow_strings(arrow_type: Any) -> Any:
    import pandas as pd
    import pyarrow as pa

    if pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type):
        return pd.StringDtype("pyarrow")
    return None


def _newer(candidate: Any, stored: Any) -> bool:
    if stored is None:
        return True
    if candidate is None:
        return False
    import pandas as pd

    return pd.Timestamp(candidate) > pd.Timestamp(stored)


def apply_events(
    lake: DeltaLake,
    events: Sequence[ClaimedEvent],
    *,
    commit_metadata: Mapping[str, str] | None = None,
) -> ApplyReport:
    """Apply claimed events of one entity type; every event gets an outcome.

    Raises only for failures of the lake itself (the step's RetryPolicy retries those; the
    claims stay with the run and are resumed).
    """
    report = ApplyReport()
    if not events:
        return report
    events = sorted(events, key=lambda event: event.order_key)
    by_type: dict[str, list[ClaimedEvent]] = {}
    for event in events:
        by_type.setdefault(event.entity_type, []).append(event)
    processed: list[ClaimedEvent] = []
    for entity_type, group in by_type.items():
        target = TARGETS.get(entity_type)
        if target is None:
            for event in group:
                report.outcomes.append(
                    Outcome(event, error=f"no canonical table for entity type {entity_type!r}")
                )
            continue
        outcomes = _apply_to_table(lake, target, group, report, commit_metadata or {})
        report.outcomes.extend(outcomes)
        processed.extend(o.event for o in outcomes if o.error is None)
    if processed:
        report.events_written = _append_events(lake, processed, report, commit_metadata or {})
    return report


def _apply_to_table(
    lake: DeltaLake,
    target: EntityTarget,
    events: list[ClaimedEvent],
    report: ApplyReport,
    commit_metadata: Mapping[str, str],
) -> list[Outcome]:
    import pandas as pd

    from integration_platform.model.validation import validate_rows

    patches = patches_for(events, target)
    errors: dict[int, str] = {i: str(p) for i, p in enumerate(patches) if isinstance(p, EventError)}
    ids = sorted({str(p[target.id_column]) for p in patches if isinstance(p, dict)})
    stored = read_rows(lake, target.parts, target.id_column, ids)
    model = target.model()
    columns = list(model.to_schema().columns)
    for _ in range(MAX_FOLD_PASSES):
        states: dict[str, dict[str, Any]] = {}
        applied: list[tuple[int, str, dict[str, Any]]] = []
        stale: dict[int, str] = {}
        for index, patch in enumerate(patches):
            if index in errors or not isinstance(patch, dict):
                continue
            event = events[index]
            key = str(patch[target.id_column])
            base = states.get(key) or stored.get(key)
            patch = dict(patch)
            if patch.get("updated_at") is None:
                patch["updated_at"] = pd.Timestamp(event.occurred_at)
            if base is not None and not _newer(patch["updated_at"], base.get("updated_at")):
                stale[index] = (
                    f"no change: the stored record is as new or newer "
                    f"(updated_at {base.get('updated_at')})"
                )
                continue
            state = {name: None for name in columns}
            state.update(base or {})
            state.update({k: v for k, v in patch.items() if k in state})
            if (
                base is None
                and "created_at" in state
                and state["created_at"] is None
                and event.event_type.endswith(".created")
            ):
                # A record announced as created without its creation time: the event's time.
                state["created_at"] = pd.Timestamp(event.occurred_at)
            if (
                target.table == "work_orders"
                and state.get("status") == "completed"
                and state.get("completed_at") is None
            ):
                # A completion announced without its time happened when it was announced.
                state["completed_at"] = pd.Timestamp(event.occurred_at)
            states[key] = state
            applied.append((index, key, state))
        if not applied:
            break
        frame = pd.DataFrame([state for _, _, state in applied], columns=columns)
        frame["_input_row"] = range(len(applied))
        checked = validate_rows(frame, _state_model(target.model_name))
        if not len(checked.rejected):
            break
        for row in checked.rejected.to_dict("records"):
            index = applied[int(row["_input_row"])][0]
            errors[index] = f"the record would not be a valid {model.__name__}: " + str(
                row.get("reject_reason")
            )
    else:  # pragma: no cover - each pass removes at least one event
        raise RuntimeError("could not settle the webhook batch")
    outcomes = []
    for index, event in enumerate(events):
        if index in errors:
            outcomes.append(Outcome(event, error=errors[index]))
        elif index in stale:
            report.stale += 1
            outcomes.append(Outcome(event, note=stale[index]))
        else:
            outcomes.append(Outcome(event))
    final = {key: state for _, key, state in applied}
    if final:
        frame = pd.DataFrame(list(final.values()), columns=columns)
        checked = validate_rows(frame, model)
        if len(checked.rejected):  # pragma: no cover - the states were checked above
            raise RuntimeError(f"{model.__name__} rows failed after the batch was settled")
        version = lake.merge(
            checked.valid[columns],
            target.parts,
            on=[target.id_column],
            update_when="s.updated_at > t.updated_at OR t.updated_at IS NULL",
            commit_metadata={**commit_metadata, "rows": str(len(final))},
        )
        report.versions["/".join(target.parts)] = version
        report.records_written += len(final)
    return outcomes


def _canonical_event_type(event_type: str) -> str:
    action = event_type.rpartition(".")[2]
    return action if action in ("created", "updated", "deleted", "status_changed") else "updated"


def _append_events(
    lake: DeltaLake,
    events: list[ClaimedEvent],
    report: ApplyReport,
    commit_metadata: Mapping[str, str],
) -> int:
    import pandas as pd

    from integration_platform.model import MaintenanceEvent
    from integration_platform.model.validation import validate_rows

    rows = {
        (event.source, event.event_id): {
            "event_id": event.event_id,
            "source_system": event.source,
            "event_type": _canonical_event_type(event.event_type),
            "entity": event.entity_type,
            "entity_external_id": event.entity_external_id,
            "occurred_at": pd.Timestamp(event.occurred_at),
            "received_at": pd.Timestamp(event.received_at),
            "payload": json.dumps(event.payload, separators=(",", ":"), ensure_ascii=False),
        }
        for event in events
    }
    frame = pd.DataFrame(list(rows.values()))
    checked = validate_rows(frame, _state_model("MaintenanceEvent"))
    if len(checked.rejected):  # pragma: no cover - the receiver stored only valid events
        raise RuntimeError(f"maintenance events failed their model: {checked.rejected.head()}")
    columns = list(MaintenanceEvent.to_schema().columns)
    lake.merge(
        checked.valid[columns],
        EVENT_PARTS,
        on=["source_system", "event_id"],
        update=False,
        commit_metadata={**commit_metadata, "rows": str(len(rows))},
    )
    report.versions["/".join(EVENT_PARTS)] = lake.version(EVENT_PARTS) or 0
    return len(rows)
