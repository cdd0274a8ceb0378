"""Decide field conflicts by the sync's policies, vectorized per field.

A conflict is a field both sides changed since the base to different values. Each field's
policy picks the winner; what a strategy cannot decide (a tie in modification time, a
non-numeric value for min/max, a rule returning ``UNRESOLVED``, ``manual``) is left for the
queue. Output columns: ``resolved`` (bool), ``winner`` (``left``/``right``/``value``),
``value`` (object) and ``reason`` (words for the audit trail).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from integration_platform.sync.rules import UNRESOLVED, ConflictCase, get_rule
from integration_platform.sync.spec import FieldPolicy, Strategy, SyncSpec

CONFLICT_COLUMNS = [
    "platform_id",
    "field",
    "base",
    "left",
    "right",
    "left_modified",
    "right_modified",
]


def resolve_conflicts(conflicts: pd.DataFrame, spec: SyncSpec) -> pd.DataFrame:
    """``conflicts`` (see :data:`CONFLICT_COLUMNS`) with the decision columns added."""
    out = conflicts.reset_index(drop=True)
    size = len(out)
    resolved = np.zeros(size, dtype=bool)
    winner = np.full(size, None, dtype=object)
    value = np.full(size, None, dtype=object)
    strategy = np.full(size, "", dtype=object)
    reason = np.full(size, "", dtype=object)
    for name, rows in out.groupby("field", sort=False).indices.items():
        policy = spec.policy(str(name))
        decided, chosen, why, values = _decide(out.iloc[rows], policy, spec)
        resolved[rows], winner[rows], reason[rows] = decided, chosen, why
        strategy[rows] = policy.describe()
        if values is not None:
            value[rows] = values
    left_wins, right_wins = winner == "left", winner == "right"
    value[left_wins] = out["left"].to_numpy(dtype=object)[left_wins]
    value[right_wins] = out["right"].to_numpy(dtype=object)[right_wins]
    return out.assign(
        resolved=resolved, winner=winner, value=value, strategy=strategy, reason=reason
    )


Decision = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]


def _decide(part: pd.DataFrame, policy: FieldPolicy, spec: SyncSpec) -> Decision:
    size = len(part)
    none = np.full(size, None, dtype=object)
    strategy = policy.strategy
    if strategy == Strategy.SOURCE_PRIORITY:
        side = "left" if policy.owner == spec.left.system else "right"
        return (
            np.ones(size, dtype=bool),
            np.full(size, side, dtype=object),
            np.full(size, f"{policy.owner} owns the field", dtype=object),
            None,
        )
    if strategy in (Strategy.LAST_WRITER_WINS, Strategy.NEWEST_NON_NULL):
        left_at = pd.to_datetime(part["left_modified"], utc=True).to_numpy()
        right_at = pd.to_datetime(part["right_modified"], utc=True).to_numpy()
        known = ~pd.isna(left_at) & ~pd.isna(right_at)
        left_newer = known & (left_at > right_at)
        right_newer = known & (right_at > left_at)
        winner = np.where(left_newer, "left", np.where(right_newer, "right", None)).astype(object)
        reason = np.where(
            winner == None,  # noqa: E711 - elementwise on an object array
            "both sides changed at the same time (or a time is missing)",
            np.where(
                winner == "left",
                f"{spec.left.system} changed it last",
                f"{spec.right.system} changed it last",
            ),
        ).astype(object)
        if strategy == Strategy.NEWEST_NON_NULL:
            left_null = part["left"].isna().to_numpy()
            right_null = part["right"].isna().to_numpy()
            to_right = (winner == "left") & left_null & ~right_null
            to_left = (winner == "right") & right_null & ~left_null
            # Whichever side changed last, an emptied field does not win over a value.
            winner = np.where(to_right, "right", np.where(to_left, "left", winner)).astype(object)
            only_left = left_null != right_null
            winner = np.where(
                (winner == None) & only_left,  # noqa: E711
                np.where(left_null, "right", "left"),
                winner,
            ).astype(object)
            reason = np.where(
                to_right | to_left, "the newest value was empty; kept the other", reason
            ).astype(object)
        return winner != None, winner, reason, None  # noqa: E711
    if strategy in (Strategy.MIN, Strategy.MAX):
        left = pd.to_numeric(part["left"], errors="coerce").to_numpy(dtype=float)
        right = pd.to_numeric(part["right"], errors="coerce").to_numpy(dtype=float)
        known = ~np.isnan(left) & ~np.isnan(right)
        pick_left = left <= right if strategy == Strategy.MIN else left >= right
        winner = np.where(known, np.where(pick_left, "left", "right"), None).astype(object)
        reason = np.where(
            known, f"the {strategy} of the two numbers", "not two numbers; needs a person"
        ).astype(object)
        return known, winner, reason, None
    if strategy == Strategy.RULE:
        return _apply_rule(part, policy, spec)
    return (
        np.zeros(size, dtype=bool),
        none,
        np.full(size, "the field's policy is manual", dtype=object),
        None,
    )


def _apply_rule(part: pd.DataFrame, policy: FieldPolicy, spec: SyncSpec) -> Decision:
    rule = get_rule(str(policy.rule))
    resolved, winner, reason, values = [], [], [], []
    for row in part.itertuples(index=False):
        case = ConflictCase(
            sync_name=spec.name,
            platform_id=row.platform_id,
            field=row.field,
            base=row.base,
            left=row.left,
            right=row.right,
            left_modified=_when(row.left_modified),
            right_modified=_when(row.right_modified),
            left_system=spec.left.system,
            right_system=spec.right.system,
        )
        try:
            decided = rule(case)
        except Exception as exc:  # a broken rule must not fail the run: a person decides
            decided = UNRESOLVED
            reason.append(f"rule {policy.rule} failed: {exc}")
        else:
            reason.append(
                f"rule {policy.rule} could not decide"
                if decided is UNRESOLVED
                else f"rule {policy.rule} chose the value"
            )
        resolved.append(decided is not UNRESOLVED)
        winner.append(None if decided is UNRESOLVED else "value")
        values.append(None if decided is UNRESOLVED else decided)
    return (
        np.array(resolved, dtype=bool),
        np.array(winner, dtype=object),
        np.array(reason, dtype=object),
        np.array(values, dtype=object),
    )


def _when(value: object) -> object:
    if value is None or pd.isna(value):  # type: ignore[arg-type]
        return None
    return pd.Timestamp(value).to_pydatetime()
