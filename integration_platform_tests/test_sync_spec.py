"""A sync spec that names something unknown fails at load, naming the path of each mistake."""

from __future__ import annotations

from pathlib import Path

import pytest

from integration_platform.sync import (
    FieldMap,
    FieldPolicy,
    SideSpec,
    Strategy,
    SyncSpec,
    SyncSpecError,
    register_rule,
)


def side(system: str, **overrides: object) -> SideSpec:
    options: dict[str, object] = {
        "system": system,
        "connection": system,
        "key_field": "id",
        "fields": {"external_id": "number", "title": "title", "status": "status"},
    }
    options.update(overrides)
    return SideSpec(**options)  # type: ignore[arg-type]


def spec(**overrides: object) -> SyncSpec:
    options: dict[str, object] = {
        "name": "cmms_erp",
        "entity": "work_order",
        "left": side("maximo"),
        "right": side("sap"),
        "fields": ("title", "status"),
        "match_field": "external_id",
    }
    options.update(overrides)
    return SyncSpec(**options)  # type: ignore[arg-type]


def problems(error: pytest.ExceptionInfo[SyncSpecError]) -> dict[str, str]:
    return dict(error.value.problems)


def test_a_complete_spec_validates_and_normalizes_its_parts() -> None:
    valid = spec(
        left=side("maximo", key_field=["siteid", "wonum"]),
        policies={"status": FieldPolicy("source_priority", owner="maximo")},
    ).validate(known_systems={"maximo", "sap"})
    assert valid.left.key_fields == ("siteid", "wonum")
    assert isinstance(valid.left.fields["title"], FieldMap)
    assert valid.policy("status").strategy is Strategy.SOURCE_PRIORITY
    assert valid.policy("title") == FieldPolicy(Strategy.LAST_WRITER_WINS)
    assert valid.compared_fields == ("title", "status", "external_id")


def test_unknown_entity_system_and_fields_are_each_reported_with_their_path() -> None:
    with pytest.raises(SyncSpecError) as error:
        spec(
            right=side("sap_pm", fields={"external_id": "n", "title": "t", "statuss": "s"}),
            fields=("title", "status", "cost"),
        ).validate(known_systems={"maximo", "sap"})
    found = problems(error)
    assert "unknown system 'sap_pm'" in found["right.system"]
    assert "did you mean status" in found["right.fields.statuss"]
    assert "synced field 'status' has no sap_pm field" in found["right.fields.status"]
    assert "'cost' is not a field of the canonical work_order" in found["fields.cost"]
    assert "cmms_erp" in str(error.value) and "right.fields.statuss" in str(error.value)

    with pytest.raises(SyncSpecError) as error:
        spec(entity="work_orders").validate()
    assert "use one of work_order, asset, maintenance_schedule" in problems(error)["entity"]


def test_policies_need_an_owner_and_registered_rules() -> None:
    with pytest.raises(SyncSpecError) as error:
        spec(
            policies={
                "status": FieldPolicy(Strategy.SOURCE_PRIORITY, owner="fiix"),
                "title": FieldPolicy(Strategy.RULE, rule="no_such_rule"),
                "priority": FieldPolicy(Strategy.MAX),
            },
        ).validate()
    found = problems(error)
    assert "owner system, one of maximo, sap (got 'fiix')" in found["policies.status.owner"]
    assert "no rule named 'no_such_rule'" in found["policies.title.rule"]
    assert "not one of the synced fields" in found["policies.priority"]

    register_rule("keep_longest_title")(lambda case: max(case.left, case.right, key=len))
    spec(policies={"title": FieldPolicy(Strategy.RULE, rule="keep_longest_title")}).validate()


def test_same_system_twice_and_a_mapping_for_another_entity_are_refused(tmp_path: Path) -> None:
    mapping = tmp_path / "assets.yaml"
    mapping.write_text("entity: assets\nsource: bronze/maximo/assets\n", encoding="utf-8")
    with pytest.raises(SyncSpecError) as error:
        spec(right=side("maximo", mapping=str(mapping)), match_field="titel").validate()
    found = problems(error)
    assert "both sides are 'maximo'" in found["right.system"]
    assert "maps to 'assets', but the sync carries 'work_order'" in found["right.mapping"]
    assert "'titel' is not a field" in found["match_field"]
    with pytest.raises(SyncSpecError) as error:
        spec(left=side("maximo", mapping=str(tmp_path / "missing.yaml"))).validate()
    assert "does not exist" in problems(error)["left.mapping"]
