"""Each conflict strategy decides as documented, and says why; what it cannot decide waits."""

from __future__ import annotations

from datetime import UTC, datetime

import pandas as pd
import pytest

from integration_platform.sync import (
    UNRESOLVED,
    ConflictCase,
    FieldPolicy,
    SideSpec,
    Strategy,
    SyncSpec,
    register_rule,
)
from integration_platform.sync.resolve import resolve_conflicts

EARLY = pd.Timestamp(datetime(2026, 3, 1, 8, 0, tzinfo=UTC))
LATE = pd.Timestamp(datetime(2026, 3, 1, 9, 0, tzinfo=UTC))


def make_spec(policy: FieldPolicy) -> SyncSpec:
    fields = {"title": "t", "cost_amount": "c", "assigned_to": "a"}
    return SyncSpec(
        name="s",
        entity="work_order",
        left=SideSpec(system="maximo", connection="m", key_field="id", fields=fields),
        right=SideSpec(system="erp", connection="e", key_field="id", fields=fields),
        fields=("title", "cost_amount", "assigned_to"),
        default_policy=policy,
    )


def conflicts(*rows: tuple[object, object, object, object]) -> pd.DataFrame:
    """(left, right, left_modified, right_modified) per conflict on field ``title``."""
    return pd.DataFrame(
        [
            {
                "platform_id": f"p{i}",
                "field": "title",
                "base": "base",
                "left": left,
                "right": right,
                "left_modified": lm,
                "right_modified": rm,
            }
            for i, (left, right, lm, rm) in enumerate(rows)
        ]
    )


def decide(policy: FieldPolicy, *rows: tuple[object, object, object, object]) -> pd.DataFrame:
    return resolve_conflicts(conflicts(*rows), make_spec(policy))


def test_source_priority_gives_the_owner_the_field() -> None:
    out = decide(FieldPolicy(Strategy.SOURCE_PRIORITY, owner="erp"), ("a", "b", LATE, EARLY))
    assert out.loc[0, ["resolved", "winner", "value"]].tolist() == [True, "right", "b"]
    assert out.loc[0, "reason"] == "erp owns the field"
    assert out.loc[0, "strategy"] == "source_priority(erp)"


def test_last_writer_wins_and_a_tie_waits_for_a_person() -> None:
    out = decide(
        FieldPolicy(Strategy.LAST_WRITER_WINS),
        ("a", "b", LATE, EARLY),
        ("a", "b", EARLY, LATE),
        ("a", "b", LATE, LATE),
        ("a", "b", None, LATE),
    )
    assert out["winner"].tolist() == ["left", "right", None, None]
    assert out["value"].tolist() == ["a", "b", None, None]
    assert out["resolved"].tolist() == [True, True, False, False]
    assert out.loc[0, "reason"] == "maximo changed it last"
    assert "same time" in out.loc[2, "reason"]


def test_newest_non_null_keeps_a_value_over_an_emptied_field() -> None:
    out = decide(
        FieldPolicy(Strategy.NEWEST_NON_NULL),
        (None, "b", LATE, EARLY),
        ("a", "b", LATE, EARLY),
        ("a", None, LATE, LATE),
    )
    assert out["value"].tolist() == ["b", "a", "a"]
    assert out["resolved"].all()
    assert out.loc[0, "reason"] == "the newest value was empty; kept the other"


@pytest.mark.parametrize(("strategy", "expected"), [(Strategy.MIN, 90.0), (Strategy.MAX, 120.5)])
def test_min_and_max_pick_the_number_and_refuse_text(strategy: Strategy, expected: float) -> None:
    out = decide(FieldPolicy(strategy), (120.5, 90.0, EARLY, LATE), ("n/a", 3.0, EARLY, LATE))
    assert out.loc[0, "value"] == expected and bool(out.loc[0, "resolved"])
    assert not out.loc[1, "resolved"] and out.loc[1, "reason"] == "not two numbers; needs a person"


def test_manual_leaves_every_conflict_for_the_queue() -> None:
    out = decide(FieldPolicy(Strategy.MANUAL), ("a", "b", LATE, EARLY))
    assert not out.loc[0, "resolved"] and out.loc[0, "winner"] is None


def test_registered_rule_decides_or_hands_over_and_a_broken_rule_does_not_fail() -> None:
    seen: list[ConflictCase] = []

    @register_rule("join_titles")
    def join_titles(case: ConflictCase) -> object:
        seen.append(case)
        if case.left == "undecided":
            return UNRESOLVED
        if case.left == "boom":
            raise ValueError("cannot join")
        return f"{case.left} / {case.right}"

    out = decide(
        FieldPolicy(Strategy.RULE, rule="join_titles"),
        ("a", "b", LATE, EARLY),
        ("undecided", "b", LATE, EARLY),
        ("boom", "b", LATE, EARLY),
    )
    assert out["value"].tolist() == ["a / b", None, None]
    assert out["resolved"].tolist() == [True, False, False]
    assert out.loc[0, "winner"] == "value"
    assert out.loc[2, "reason"] == "rule join_titles failed: cannot join"
    assert seen[0].base == "base" and seen[0].left_system == "maximo"
    assert seen[0].left_modified == LATE.to_pydatetime()
