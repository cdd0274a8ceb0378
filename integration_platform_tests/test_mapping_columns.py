import pandas as pd
import pytest

from integration_platform.mapping.columns import (
    collect_rejects,
    map_codes,
    parse_numbers,
    parse_timestamps,
)


def text(values: list[str | None]) -> pd.Series:
    return pd.Series(values, dtype="string[pyarrow]")


def test_map_codes_translates_known_codes_and_explains_unknown_ones() -> None:
    values, reasons = map_codes(
        text(["comp", " INPRG ", None, "DONE"]),
        {"COMP": "completed", "INPRG": "in_progress"},
        field="status",
        source="status",
    )
    assert values.tolist()[:2] == ["completed", "in_progress"]
    assert values.isna().tolist() == [False, False, True, True]
    assert reasons.isna().tolist() == [True, True, True, False]
    assert "'DONE'" in reasons[3] and "COMP, INPRG" in reasons[3]


def test_parse_timestamps_uses_offset_or_site_zone_and_rejects_the_rest() -> None:
    zones = pd.Series(["America/New_York"] * 4 + [None])
    values, reasons = parse_timestamps(
        text(
            ["2026-03-04T08:15:00-05:00", "2026-07-01T12:00:00", "31/02/2026", None, "2026-01-01"]
        ),
        field="created_at",
        source="reportdate",
        local_tz=zones,
    )
    assert values[0] == pd.Timestamp("2026-03-04T13:15:00Z")
    # Summer time in New York: UTC-4.
    assert values[1] == pd.Timestamp("2026-07-01T16:00:00Z")
    assert pd.isna(values[2]) and "'31/02/2026'" in reasons[2]
    assert pd.isna(values[3]) and pd.isna(reasons[3])
    # No offset and no known zone: rejected rather than guessed.
    assert pd.isna(values[4]) and "reportdate" in reasons[4]


def test_parse_numbers_rejects_text() -> None:
    values, reasons = parse_numbers(text(["1.5", "n/a", None]), field="cost", source="actlabcost")
    assert values[0] == pytest.approx(1.5)
    assert "'n/a'" in reasons[1]
    assert reasons.isna().tolist() == [True, False, True]


def test_collect_rejects_names_every_failing_field_of_a_row() -> None:
    index = pd.Index([10, 11, 12])
    first = pd.Series([pd.NA, "a bad", "a worse"], index=index, dtype="string")
    second = pd.Series([pd.NA, pd.NA, "b bad"], index=index, dtype="string")
    rejects = collect_rejects({"a": first, "b": second})
    assert rejects.index.tolist() == [11, 12]
    assert rejects.loc[12, "reject_field"] == "a, b"
    assert rejects.loc[12, "reject_reason"] == "a worse; b bad"
    assert collect_rejects({"a": first.iloc[:1]}).empty
