"""Pair records across the two systems and find what changed since the base (3-way).

Everything here works on whole frames: records are paired through the cross-references (or,
for records seen the first time, through the spec's match field), a side *changed* when its
version token differs from its base's (its content hash when the system has no token), and
a changed side's fields are compared with the base field by field. A field changed on one
side flows to the other; a field changed on both sides to different values is a conflict;
the same new value on both sides is agreement, not a conflict.

Deletions are reported, never propagated: a record missing from one system while its
cross-reference exists is listed in ``deletions`` and left alone on the other side, because
a CMMS that archives or filters a work order looks the same as one that deleted it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from integration_platform.sync.canonical import (
    EXTERNAL_ID,
    HASH,
    MODIFIED,
    VERSION,
    SideRecords,
)
from integration_platform.sync.resolve import resolve_conflicts
from integration_platform.sync.spec import Direction, SyncSpec
from integration_platform.sync.values import Kind, differs, from_json_value

UPDATE_COLUMNS = [
    "platform_id",
    "field",
    "target",
    "value",
    "source",
    "strategy",
    "reason",
    "resolved_by",
    "conflict_id",
]
SIDES = ("left", "right")
TEXT = "string[pyarrow]"


def other(side: str) -> str:
    return "right" if side == "left" else "left"


@dataclass
class Detection:
    """What a run found: paired records, field updates per target side, records to create,
    conflicts (decided and not), deletions, and the platform ids whose base must be renewed.

    ``records[side]`` holds each side's canonical records indexed by platform id;
    ``external_ids[side]`` maps platform id -> external id for records present on that side.
    """

    records: dict[str, pd.DataFrame]
    updates: pd.DataFrame
    creates: pd.DataFrame
    revivals: pd.DataFrame
    conflicts: pd.DataFrame
    deletions: pd.DataFrame
    new_xrefs: pd.DataFrame
    touched: pd.Index
    changed: dict[str, int] = field(default_factory=dict)
    ambiguous: list[str] = field(default_factory=list)
    settled: dict[int, dict[str, Any]] = field(default_factory=dict)
    # Conflicts a person resolved whose decision this run applies (or finds already in place).
    resolved_manually: int = 0

    @property
    def unresolved(self) -> pd.DataFrame:
        if self.conflicts.empty:
            return self.conflicts
        return self.conflicts[~self.conflicts["resolved"].astype(bool)]


def detect(
    spec: SyncSpec,
    left: SideRecords,
    right: SideRecords,
    *,
    xrefs: pd.DataFrame,
    bases: Mapping[str, pd.DataFrame],
    queue: pd.DataFrame,
    kinds: Mapping[str, Kind],
    new_ids: Callable[[int], list[str]],
) -> Detection:
    """Compare both sides with their bases; see :class:`Detection`.

    ``xrefs``: columns ``system, external_id, platform_id, retired``. ``bases[side]``: indexed
    by platform id, canonical fields plus ``content_hash`` and ``version_token``. ``queue``:
    the sync's open and resolved conflicts (``id, platform_id, field, status, resolved_value,
    resolved_by, base_value``).
    """
    reads = {"left": left, "right": right}
    sides = {"left": spec.left, "right": spec.right}
    fields = list(spec.fields)

    # -- pairing ------------------------------------------------------------------------------
    pids: dict[str, pd.Series] = {}
    retired_ids: dict[str, pd.Index] = {}
    xref_ids: dict[str, pd.Index] = {}
    excluded: set[str] = set()
    for name, read in reads.items():
        system_xrefs = xrefs[xrefs["system"] == sides[name].system]
        known = pd.Series(
            system_xrefs["platform_id"].to_numpy(), index=system_xrefs["external_id"].to_numpy()
        )
        retired = set(system_xrefs.loc[system_xrefs["retired"].astype(bool), "external_id"])
        retired_ids[name] = pd.Index(sorted(retired), dtype=object)
        pids[name] = known.reindex(read.frame.index).astype(object)
        if retired:
            pids[name] = pids[name][~read.frame.index.isin(list(retired))]
        xref_ids[name] = pd.Index(
            system_xrefs.loc[~system_xrefs["retired"].astype(bool), "platform_id"]
        )
        quarantined = read.quarantine["external_id"].dropna().astype(str)
        excluded.update(known.reindex(quarantined.to_numpy()).dropna().astype(str))

    new_pairs = pd.DataFrame(columns=["left", "right"])
    ambiguous: list[str] = []
    match = spec.match_field
    unpaired = {n: pids[n][pids[n].isna()].index for n in SIDES}
    if match:
        keyed = {}
        for name in SIDES:
            values = reads[name].frame.loc[unpaired[name], match].dropna()
            repeated = values.duplicated(keep=False)
            ambiguous += [f"{sides[name].system}:{i}" for i in values.index[repeated]]
            keyed[name] = values[~repeated]
        pairs = pd.merge(
            keyed["left"].rename("key").rename_axis("left").reset_index(),
            keyed["right"].rename("key").rename_axis("right").reset_index(),
            on="key",
        )
        ids = new_ids(len(pairs))
        pids["left"].loc[pairs["left"].to_numpy()] = ids
        pids["right"].loc[pairs["right"].to_numpy()] = ids
        new_pairs = pd.DataFrame({"left": pairs["left"], "right": pairs["right"]}, index=ids)
        # An unpaired record whose match value another record (paired already) holds would
        # become a duplicate if created: report it instead.
        for name in SIDES:
            rest = pids[name][pids[name].isna()].index
            values = reads[name].frame.loc[rest, match].dropna()
            if not len(values):
                continue
            partners = reads[other(name)].frame
            partners = partners[~partners.index.isin(retired_ids[other(name)])]
            taken = partners[match].dropna().astype(object).to_numpy()
            clash = values.astype(object).isin(taken) | values.index.isin(
                [a.split(":", 1)[1] for a in ambiguous if a.startswith(sides[name].system + ":")]
            )
            ambiguous += [f"{sides[name].system}:{i}" for i in values.index[clash]]
            pids[name] = pids[name].drop(values.index[clash])
    created_here: dict[str, pd.Index] = {}
    for name in SIDES:
        rest = pids[name][pids[name].isna()].index
        ids = new_ids(len(rest))
        pids[name].loc[rest] = ids
        created_here[name] = pd.Index(ids)

    records: dict[str, pd.DataFrame] = {}
    for name in SIDES:
        frame = reads[name].frame
        if len(pids[name]) != len(frame):  # some were dropped (retired, ambiguous)
            frame = frame.loc[pids[name].index]
        ids = pd.Index(pids[name].astype(str).to_numpy(), name="platform_id")
        external = frame.index.to_numpy()
        frame = frame.set_axis(ids)
        frame[EXTERNAL_ID] = external
        if excluded:
            frame = frame[~frame.index.isin(list(excluded))]
        records[name] = frame

    # -- records on one side only: create, or report a deletion ------------------------------
    creates, deletions, revivals = [], [], []
    for name in SIDES:
        target = other(name)
        only = records[name].index.difference(records[target].index)
        gone = only[only.isin(xref_ids[target])]
        for pid in gone:
            deletions.append((pid, sides[target].system, sides[name].system))
        to_create = only.difference(gone)
        if match and len(to_create) and len(retired_ids[target]):
            # A record a rolled-back run created and could only cancel is written over
            # instead of being created a second time under the same number.
            retired = (
                reads[target]
                .frame.loc[reads[target].frame.index.intersection(retired_ids[target]), match]
                .dropna()
            )
            retired = retired[~retired.duplicated(keep=False)]
            by_value = pd.Series(retired.index.to_numpy(), index=retired.astype(object).to_numpy())
            hits = records[name].loc[to_create, match].astype(object).map(by_value).dropna()
            if spec.writes_to(target) and len(hits):
                revivals.append(
                    pd.DataFrame(
                        {
                            "platform_id": hits.index,
                            "target": target,
                            "source": name,
                            "external_id": hits.to_numpy(),
                        }
                    )
                )
            to_create = to_create.difference(hits.index)
        if spec.writes_to(target) and len(to_create):
            creates.append(
                pd.DataFrame({"platform_id": to_create, "target": target, "source": name})
            )
    creates_frame = (
        pd.concat(creates, ignore_index=True)
        if creates
        else pd.DataFrame(columns=["platform_id", "target", "source"])
    )
    deletions_frame = pd.DataFrame(deletions, columns=["platform_id", "system", "still_in"])
    revivals_frame = (
        pd.concat(revivals, ignore_index=True)
        if revivals
        else pd.DataFrame(columns=["platform_id", "target", "source", "external_id"])
    )

    # -- 3-way comparison of paired records ---------------------------------------------------
    # Which side moved is decided on the token (or hash) column alone; the field-by-field
    # comparison then runs only on the records that moved, a small share on a normal run.
    paired = records["left"].index.intersection(records["right"].index)
    at = {n: records[n].index.get_indexer(paired) for n in SIDES}
    at_base = {n: bases[n].index.get_indexer(paired) for n in SIDES}
    missing_all = {n: at_base[n] < 0 for n in SIDES}
    moved_all: dict[str, np.ndarray] = {}
    for name in SIDES:
        column, stored = (
            (VERSION, "version_token") if sides[name].version_field else (HASH, "content_hash")
        )
        now = records[name][column].astype(TEXT).take(at[name]).reset_index(drop=True)
        stored_text = bases[name][stored].astype(TEXT).array
        then = pd.Series(stored_text.take(at_base[name], allow_fill=True), index=now.index)
        moved_all[name] = missing_all[name] | differs(now, then)
    any_moved = moved_all["left"] | moved_all["right"]
    if len(queue):  # records with waiting or resolved conflicts are looked at every run
        any_moved |= paired.isin(queue["platform_id"].astype(str).to_numpy())
    both = paired[any_moved]
    cur = {n: records[n].iloc[at[n][any_moved]] for n in SIDES}
    base = {
        n: bases[n].iloc[np.maximum(at_base[n][any_moved], 0)].set_axis(both)
        if len(bases[n])
        else bases[n].reindex(both)
        for n in SIDES
    }
    missing = {n: missing_all[n][any_moved] for n in SIDES}
    changed = {n: moved_all[n][any_moved] for n in SIDES}
    for name in SIDES:
        # Rows without a base were filled from row 0 above; blank them.
        if missing[name].any() and len(bases[name]):
            base[name] = base[name].astype(object)
            base[name].loc[missing[name], :] = None

    open_queue = queue[queue["status"] == "open"] if len(queue) else queue
    held = set(zip(open_queue.get("platform_id", []), open_queue.get("field", []), strict=False))
    updates: list[pd.DataFrame] = []
    conflict_parts: list[pd.DataFrame] = []
    one_way = spec.direction != Direction.TWO_WAY
    source_side = "left" if spec.direction == Direction.LEFT_TO_RIGHT else "right"
    for name in fields:
        lv, rv = cur["left"][name], cur["right"][name]
        d = {}
        for side in SIDES:
            value = cur[side][name]
            against = base[side].get(name)
            diff = np.ones(len(both), dtype=bool) if against is None else differs(value, against)
            d[side] = changed[side] & (missing[side] | diff)
        apart = differs(lv, rv)
        if held:
            blocked = np.fromiter(((p, name) in held for p in both), dtype=bool, count=len(both))
        else:
            blocked = np.zeros(len(both), dtype=bool)
        clash = d["left"] & d["right"] & apart & ~blocked
        flows = {
            "right": d["left"] & ~d["right"] & apart & ~blocked,
            "left": d["right"] & ~d["left"] & apart & ~blocked,
        }
        if one_way:
            flows[source_side] = np.zeros(len(both), dtype=bool)
            flows[other(source_side)] = flows[other(source_side)] | clash
            clash = np.zeros(len(both), dtype=bool)
        for target, mask in flows.items():
            if mask.any() and spec.writes_to(target):
                src = other(target)
                updates.append(
                    _updates(
                        both[mask],
                        name,
                        target,
                        cur[src][name][mask],
                        source=src,
                        strategy="one_way" if one_way else "changed",
                        reason=f"changed in {sides[src].system}",
                    )
                )
        if clash.any():
            base_value = base["left"].get(name)
            conflict_parts.append(
                pd.DataFrame(
                    {
                        "platform_id": both[clash],
                        "field": name,
                        "base": _objects(base_value, clash, len(both)),
                        "left": lv[clash].astype(object).to_numpy(),
                        "right": rv[clash].astype(object).to_numpy(),
                        "left_modified": cur["left"][MODIFIED][clash].to_numpy(),
                        "right_modified": cur["right"][MODIFIED][clash].to_numpy(),
                        "conflict_id": None,
                    }
                )
            )

    # -- conflicts waiting in the queue are decided again with today's values ---------------
    queued_updates, settled = _queued(spec, queue, cur, both, kinds, conflict_parts)
    updates += queued_updates
    conflicts = (
        resolve_conflicts(pd.concat(conflict_parts, ignore_index=True), spec)
        if conflict_parts
        else pd.DataFrame(
            columns=[*_CONFLICT_FRAME, "resolved", "winner", "value", "strategy", "reason"]
        )
    )
    decided = conflicts[conflicts["resolved"].astype(bool)]
    for target in SIDES:
        if not len(decided) or not spec.writes_to(target):
            continue
        winners = decided["winner"].to_numpy()
        takes = (winners == other(target)) | (winners == "value")
        current = decided[target].to_numpy(dtype=object)
        value = decided["value"].to_numpy(dtype=object)
        differ = np.fromiter(
            (values_differ(c, v) for c, v in zip(current, value, strict=True)), bool
        )
        chosen = decided[takes & differ]
        if len(chosen):
            updates.append(
                pd.DataFrame(
                    {
                        "platform_id": chosen["platform_id"].to_numpy(),
                        "field": chosen["field"].to_numpy(),
                        "target": target,
                        "value": chosen["value"].to_numpy(dtype=object),
                        "source": np.where(chosen["winner"] == "value", "rule", chosen["winner"]),
                        "strategy": chosen["strategy"].to_numpy(),
                        "reason": chosen["reason"].to_numpy(),
                        "resolved_by": "policy:" + chosen["strategy"].astype(str),
                        "conflict_id": chosen["conflict_id"].to_numpy(dtype=object),
                    }
                )
            )
    update_frame = (
        pd.concat(updates, ignore_index=True) if updates else pd.DataFrame(columns=UPDATE_COLUMNS)
    )
    manual = (
        set(queue.loc[queue["status"] == "resolved", "id"].astype(int)) if len(queue) else set()
    )
    touched = both
    touched = touched.union(pd.Index(update_frame["platform_id"].unique()))
    touched = touched.union(pd.Index(new_pairs.index))
    return Detection(
        records=records,
        updates=update_frame,
        creates=creates_frame,
        revivals=revivals_frame,
        conflicts=conflicts,
        deletions=deletions_frame,
        new_xrefs=new_pairs,
        touched=touched,
        changed={n: int(moved_all[n].sum()) for n in SIDES},
        ambiguous=list(dict.fromkeys(ambiguous)),
        settled=settled,
        resolved_manually=len(manual.intersection(settled)),
    )


_CONFLICT_FRAME = [
    "platform_id",
    "field",
    "base",
    "left",
    "right",
    "left_modified",
    "right_modified",
    "conflict_id",
]


def _updates(
    pids: pd.Index,
    name: str,
    target: str,
    values: pd.Series,
    *,
    source: str,
    strategy: str,
    reason: str,
) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "platform_id": pids,
            "field": name,
            "target": target,
            "value": values.astype(object).to_numpy(),
            "source": source,
            "strategy": strategy,
            "reason": reason,
            "resolved_by": None,
            "conflict_id": None,
        }
    )


def _objects(values: pd.Series | None, mask: np.ndarray, size: int) -> np.ndarray:
    if values is None:
        return np.full(int(mask.sum()), None, dtype=object)
    return values.astype(object).to_numpy()[mask]


def values_differ(a: Any, b: Any) -> bool:
    a_na, b_na = _na(a), _na(b)
    if a_na or b_na:
        return a_na != b_na
    return bool(a != b)


def _na(value: Any) -> bool:
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def _queued(
    spec: SyncSpec,
    queue: pd.DataFrame,
    cur: Mapping[str, pd.DataFrame],
    both: pd.Index,
    kinds: Mapping[str, Kind],
    conflict_parts: list[pd.DataFrame],
) -> tuple[list[pd.DataFrame], dict[int, dict[str, Any]]]:
    """The queue against today's values.

    A conflict a person resolved becomes updates to the sides that differ from the chosen
    value. An open conflict is settled when both sides now agree, flows one way when only one
    side still differs from its base (e.g. a write refused with 412 whose record then changed
    elsewhere), and otherwise is decided again by its field's policy (appended to
    ``conflict_parts``). Returns the updates and, per settled conflict id, its new state.
    """
    updates: list[pd.DataFrame] = []
    settled: dict[int, dict[str, Any]] = {}
    if queue is None or not len(queue):
        return updates, settled
    present = set(both)
    systems = {"left": spec.left.system, "right": spec.right.system}
    for row in queue.itertuples(index=False):
        if row.platform_id not in present or row.field not in kinds:
            continue
        kind = kinds[row.field]
        left = cur["left"].at[row.platform_id, row.field]
        right = cur["right"].at[row.platform_id, row.field]
        conflict_id = int(row.id)

        def flow(
            target: str,
            value: Any,
            strategy: str,
            reason: str,
            by: str | None,
            row: Any = row,
            conflict_id: int = conflict_id,
        ) -> None:
            updates.append(
                pd.DataFrame(
                    [
                        {
                            "platform_id": row.platform_id,
                            "field": row.field,
                            "target": target,
                            "value": value,
                            "source": "queue",
                            "strategy": strategy,
                            "reason": reason,
                            "resolved_by": by,
                            "conflict_id": conflict_id,
                        }
                    ]
                )
            )

        if row.status == "resolved":
            value = from_json_value(row.resolved_value, kind)
            reason = f"resolved by {row.resolved_by}" + (f": {row.note}" if row.note else "")
            for target, current in (("left", left), ("right", right)):
                if values_differ(current, value) and spec.writes_to(target):
                    flow(target, value, "manual", reason, row.resolved_by)
            settled[conflict_id] = {"status": "applied"}
            continue
        if not values_differ(left, right):
            settled[conflict_id] = {
                "status": "superseded",
                "note": "both systems now hold the same value",
            }
            continue
        base_value = from_json_value(row.base_value, kind)
        moved = {"left": values_differ(left, base_value), "right": values_differ(right, base_value)}
        if moved["left"] != moved["right"]:
            winner = "left" if moved["left"] else "right"
            target = other(winner)
            value = left if winner == "left" else right
            reason = f"only {systems[winner]} changed it since the base"
            if spec.writes_to(target):
                flow(target, value, "changed", reason, "sync")
            settled[conflict_id] = {
                "status": "applied",
                "resolution": winner,
                "resolved_value": None,
                "resolved_by": "sync",
                "note": reason,
            }
            continue
        conflict_parts.append(
            pd.DataFrame(
                [
                    {
                        "platform_id": row.platform_id,
                        "field": row.field,
                        "base": base_value,
                        "left": left,
                        "right": right,
                        "left_modified": cur["left"].at[row.platform_id, MODIFIED],
                        "right_modified": cur["right"].at[row.platform_id, MODIFIED],
                        "conflict_id": conflict_id,
                    }
                ]
            )
        )
    return updates, settled
