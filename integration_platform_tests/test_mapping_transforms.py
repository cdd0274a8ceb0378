import re
import time

import numpy as np
import pandas as pd
import pytest

from integration_platform.mapping.transforms import (
    Converted,
    TransformSpecError,
    apply_transform,
    cast,
    check_datetime,
    check_transform,
    check_units,
    convert_units,
    map_values,
    parse_datetime,
    register_transform,
    transform_names,
)

WHERE = {"field": "created_at", "source": "reportdate"}


def text(values: list[str | None], index: list[int] | None = None) -> pd.Series:
    return pd.Series(values, dtype="string[pyarrow]", index=index)


def utc(value: str) -> pd.Timestamp:
    return pd.Timestamp(value).tz_convert("UTC")


def fine(converted: Converted) -> list[bool]:
    return converted.reasons.isna().tolist()


# --- parse_datetime ---------------------------------------------------------------------------


def test_iso8601_with_offsets_is_exact_and_keeps_the_index() -> None:
    raw = text(
        [
            "2026-03-04T08:15:00-05:00",
            "2026-03-04T13:15:00Z",
            "2026-03-04 14:15:00.250+01:00",
            "2026-03-04T14:15:00+0100",
            None,
            "",
        ],
        index=[7, 3, 9, 1, 4, 2],
    )
    converted = parse_datetime(raw, **WHERE)
    assert str(converted.values.dtype) == "datetime64[ns, UTC]"
    assert converted.values.index.tolist() == [7, 3, 9, 1, 4, 2]
    assert converted.reasons.index.tolist() == [7, 3, 9, 1, 4, 2]
    assert converted.values[7] == utc("2026-03-04T13:15:00Z")
    assert converted.values[3] == utc("2026-03-04T13:15:00Z")
    assert converted.values[9] == utc("2026-03-04T13:15:00.250Z")
    assert converted.values[1] == utc("2026-03-04T13:15:00Z")
    assert pd.isna(converted.values[4]) and pd.isna(converted.values[2])
    assert converted.reasons.isna().all()


def test_iso8601_naive_values_need_a_zone() -> None:
    converted = parse_datetime(text(["2026-07-01T12:00:00", "garbage"]), **WHERE)
    assert converted.values.isna().all()
    assert converted.reasons[0].startswith("created_at <- reportdate '2026-07-01T12:00:00': ")
    assert "no time zone" in converted.reasons[0]
    assert converted.reasons[1] == ("created_at <- reportdate 'garbage': not an ISO-8601 date-time")


def test_iso8601_naive_values_in_one_zone() -> None:
    converted = parse_datetime(
        text(["2026-07-01T12:00:00", "2026-01-15 12:00", "2026-01-15"]),
        timezone="Europe/Berlin",
        **WHERE,
    )
    assert converted.values.tolist() == [
        utc("2026-07-01T10:00:00Z"),
        utc("2026-01-15T11:00:00Z"),
        utc("2026-01-14T23:00:00Z"),
    ]
    assert converted.reasons.isna().all()


def test_iso8601_per_row_zones_and_dst_changes_are_reasons() -> None:
    raw = text(
        [
            "2026-07-01T12:00:00",  # New York summer: UTC-4
            "2026-07-01T12:00:00",  # Berlin summer: UTC+2
            "2026-03-08T02:30:00",  # New York: clocks jump 02:00 -> 03:00
            "2026-11-01T01:30:00",  # New York: 01:30 happens twice
            "2026-07-01T12:00:00",  # site without a zone
            "2026-07-01T12:00:00",  # zone misspelt in the site table
            "2026-07-01T12:00:00+00:00",  # an offset wins over the site zone
        ],
        index=[10, 11, 12, 13, 14, 15, 16],
    )
    zones = pd.Series(
        [
            "America/New_York",
            "Europe/Berlin",
            "America/New_York",
            "America/New_York",
            None,
            "Europe/Berln",
            "Asia/Tokyo",
        ],
        index=[10, 11, 12, 13, 14, 15, 16],
    )
    converted = parse_datetime(raw, timezone=zones, **WHERE)
    values, reasons = converted.values, converted.reasons
    assert values[10] == utc("2026-07-01T16:00:00Z")
    assert values[11] == utc("2026-07-01T10:00:00Z")
    assert values[16] == utc("2026-07-01T12:00:00Z")
    assert values[[12, 13, 14, 15]].isna().all()
    assert "does not exist in America/New_York" in reasons[12]
    assert "ambiguous in America/New_York" in reasons[13]
    assert "no time zone" in reasons[14]
    assert "unknown time zone 'Europe/Berln'" in reasons[15]
    assert reasons[[10, 11, 16]].isna().all()


def test_sap_odata_dates_with_and_without_offset() -> None:
    converted = parse_datetime(
        text(
            [
                "/Date(1501027200000)/",
                "/Date(1501027200000+0120)/",
                "\\/Date(1501027200000)\\/",
                "/Date(-86400000)/",
                "Date(1501027200000)",
                "2017-07-26",
            ]
        ),
        fmt="sap",
        **WHERE,
    )
    instant = utc("2017-07-26T00:00:00Z")
    # The offset names the writer's zone; the milliseconds are already UTC.
    assert converted.values[:3].tolist() == [instant, instant, instant]
    assert converted.values[3] == utc("1969-12-31T00:00:00Z")
    assert fine(converted) == [True, True, True, True, False, False]
    assert "'Date(1501027200000)'" in converted.reasons[4]


def test_sap_odata_v4_dates_need_their_offset() -> None:
    converted = parse_datetime(
        text(
            [
                "2017-07-26T02:00:00+02:00",
                "2017-07-26T00:00:00Z",
                "2017-07-26T00:00:00",
                "2017-13-40T00:00:00Z",
            ]
        ),
        fmt="sap",
        **WHERE,
    )
    instant = utc("2017-07-26T00:00:00Z")
    assert converted.values[:2].tolist() == [instant, instant]
    assert fine(converted) == [True, True, False, False]
    assert "ISO-8601 with an offset" in converted.reasons[2]


def test_epoch_milliseconds_and_seconds_are_utc() -> None:
    millis = parse_datetime(
        text(["1501027200000", " 1501027200123 ", "1501027200000.5", "soon", None]),
        fmt="epoch_ms",
        **WHERE,
    )
    assert millis.values[0] == utc("2017-07-26T00:00:00Z")
    assert millis.values[1] == utc("2017-07-26T00:00:00.123Z")
    assert millis.values[2] == pd.Timestamp("2017-07-26T00:00:00.0005Z")
    assert fine(millis) == [True, True, True, False, True]
    assert "'soon'" in millis.reasons[3]

    seconds = parse_datetime(pd.Series([1501027200, 1501027200, 10**12]), fmt="epoch_s", **WHERE)
    assert seconds.values[0] == utc("2017-07-26T00:00:00Z")
    assert pd.isna(seconds.values[2]) and "date range" in seconds.reasons[2]

    floats = parse_datetime(pd.Series([1501027200.5, np.nan]), fmt="epoch_s", **WHERE)
    assert floats.values[0] == utc("2017-07-26T00:00:00.5Z")
    assert fine(floats) == [True, True]


def test_date_format_is_midnight_in_the_zone() -> None:
    converted = parse_datetime(
        text(["2026-01-31", "2026-02-31", "31.01.2026"]),
        fmt="date",
        timezone="Europe/Berlin",
        **WHERE,
    )
    assert converted.values[0] == utc("2026-01-30T23:00:00Z")
    assert fine(converted) == [True, False, False]


def test_strftime_patterns_naive_and_with_offset() -> None:
    naive = parse_datetime(
        text(["31.01.2026 14:05", "1.2.2026 08:00", "31.02.2026 14:05", "2026-01-31"]),
        fmt="%d.%m.%Y %H:%M",
        timezone="Europe/Berlin",
        **WHERE,
    )
    assert naive.values[0] == utc("2026-01-31T13:05:00Z")
    assert naive.values[1] == utc("2026-02-01T07:00:00Z")
    # 31 February is not rolled over into March.
    assert fine(naive) == [True, True, False, False]
    assert "%d.%m.%Y %H:%M" in naive.reasons[2]

    aware = parse_datetime(text(["31.01.2026 14:05 +0100"]), fmt="%d.%m.%Y %H:%M %z", **WHERE)
    assert aware.values[0] == utc("2026-01-31T13:05:00Z")

    unzoned = parse_datetime(text(["31.01.2026 14:05"]), fmt="%d.%m.%Y %H:%M", **WHERE)
    assert "no time zone" in unzoned.reasons[0]


def test_datetime_inputs_that_are_already_datetimes() -> None:
    aware = pd.Series(pd.to_datetime(["2026-01-01T10:00:00+01:00"]))
    assert parse_datetime(aware, **WHERE).values[0] == utc("2026-01-01T09:00:00Z")
    naive = pd.Series(pd.to_datetime(["2026-01-01T10:00:00"]))
    converted = parse_datetime(naive, timezone="UTC", **WHERE)
    assert converted.values[0] == utc("2026-01-01T10:00:00Z")


def test_datetime_spec_mistakes_raise() -> None:
    with pytest.raises(TransformSpecError, match="did you mean 'iso8601'"):
        check_datetime("iso8061")
    with pytest.raises(TransformSpecError, match="%Q"):
        check_datetime("%d.%m.%Q")
    with pytest.raises(TransformSpecError, match="unknown time zone"):
        parse_datetime(text(["2026-01-01"]), timezone="Europe/Nowhere", **WHERE)


def test_one_million_iso8601_values() -> None:
    size = 1_000_000
    rng = np.random.default_rng(7)
    stamps = pd.Timestamp("2020-01-01T00:00:00Z") + pd.to_timedelta(
        rng.integers(0, 6 * 365 * 86400, size), unit="s"
    )
    raw = pd.Series(stamps.strftime("%Y-%m-%dT%H:%M:%S+00:00"), dtype="string[pyarrow]")
    raw[5] = "2026-13-01T00:00:00+00:00"
    raw[999_999] = "2024-02-29T10:00:00"
    started = time.perf_counter()
    converted = parse_datetime(raw, **WHERE)
    elapsed = time.perf_counter() - started
    print(f"parse_datetime iso8601, {size:,} rows: {elapsed:.2f}s")
    for position in (0, 1, 123_456, 999_998):
        assert converted.values[position] == stamps[position]
    assert converted.reasons.notna().sum() == 2
    assert "not an ISO-8601" in converted.reasons[5]
    assert "no time zone" in converted.reasons[999_999]


# --- cast -------------------------------------------------------------------------------------


def test_cast_integer() -> None:
    converted = cast(
        text(["42", " -7 ", "1.5", "3.0", "n/a", "", None, "12345678901234567"]),
        to="integer",
        field="priority",
        source="wopriority",
    )
    assert str(converted.values.dtype) == "Int64"
    assert converted.values[[0, 1, 3, 7]].tolist() == [42, -7, 3, 12345678901234567]
    assert converted.values[[2, 4, 5, 6]].isna().all()
    assert fine(converted) == [True, True, False, True, False, True, True, True]
    assert converted.reasons[2] == (
        "priority <- wopriority '1.5': not a whole number (it would have to be rounded)"
    )
    assert converted.reasons[4] == "priority <- wopriority 'n/a': not a number"

    from_floats = cast(pd.Series([2.0, np.nan, 2.5]), to="integer", field="p", source="s")
    assert from_floats.values.tolist()[0] == 2 and fine(from_floats) == [True, True, False]


def test_cast_float() -> None:
    converted = cast(text(["1.5", "1e3", " 2 ", "1,5", None, ""]), to="float", **WHERE)
    assert converted.values.dtype == np.float64
    assert converted.values[:3].tolist() == [1.5, 1000.0, 2.0]
    assert fine(converted) == [True, True, True, False, True, True]
    assert "'1,5': not a number" in converted.reasons[3]


def test_cast_boolean() -> None:
    converted = cast(
        text(["true", "FALSE", "Yes", "no", "1", "0", "y", "N", "X", "x", "", None, "maybe"]),
        to="boolean",
        **WHERE,
    )
    assert str(converted.values.dtype) == "boolean"
    assert converted.values[:10].tolist() == [
        True, False, True, False, True, False, True, False, True, True,
    ]  # fmt: skip
    assert converted.values[10:].isna().all()
    assert fine(converted) == [True] * 12 + [False]
    assert "'maybe'" in converted.reasons[12]


def test_cast_string_and_datetime() -> None:
    strings = cast(pd.Series([1042.0, np.nan, 2.5]), to="string", **WHERE)
    assert str(strings.values.dtype) == "string"
    assert strings.values[0] == "1042" and pd.isna(strings.values[1])
    assert strings.values[2] == "2.5"
    dates = cast(text(["2026-01-01T00:00:00Z", "2026-01-01"]), to="datetime", **WHERE)
    assert dates.values[0] == utc("2026-01-01T00:00:00Z")
    assert fine(dates) == [True, False]
    with pytest.raises(TransformSpecError, match="did you mean 'integer'"):
        cast(text(["1"]), to="intger", **WHERE)


# --- map_values -------------------------------------------------------------------------------


def test_map_values_unknown_codes_are_reasons() -> None:
    converted = map_values(
        text(["comp", " INPRG ", None, "DONE", "COMPP"]),
        table={"COMP": "completed", "INPRG": "in_progress"},
        field="status",
        source="status",
    )
    assert str(converted.values.dtype) == "string"
    assert converted.values[:2].tolist() == ["completed", "in_progress"]
    assert converted.values[2:].isna().all()
    assert fine(converted) == [True, True, True, False, False]
    assert converted.reasons[3] == ("status <- status 'DONE': not in the code table (COMP, INPRG)")
    assert "did you mean 'COMP'" in converted.reasons[4]


def test_map_values_default_and_case_sensitivity() -> None:
    converted = map_values(
        text(["a", "A", "b"]), table={"A": "alpha"}, default="other", case_sensitive=True,
        **WHERE,
    )  # fmt: skip
    assert converted.values.tolist() == ["other", "alpha", "other"]
    assert converted.reasons.isna().all()
    to_null = map_values(text(["x"]), table={"A": "alpha"}, default=None, **WHERE)
    assert pd.isna(to_null.values[0]) and to_null.reasons.isna().all()


def test_map_values_numeric_codes() -> None:
    # Priorities read as numbers (JSON) or floats (CSV with gaps) match "1"-style keys.
    table = {"1": "high", 2: "medium", " 3 ": "low"}
    ints = map_values(pd.Series([1, 2, 3, 4]), table=table, **WHERE)
    assert ints.values[:3].tolist() == ["high", "medium", "low"]
    assert fine(ints) == [True, True, True, False]
    floats = map_values(pd.Series([1.0, np.nan, 3.0]), table=table, **WHERE)
    assert floats.values[0] == "high" and floats.values[2] == "low"
    assert fine(floats) == [True, True, True]
    numbers = map_values(text(["Y", "N"]), table={"Y": 1, "N": 0}, **WHERE)
    assert str(numbers.values.dtype) == "Int64" and numbers.values.tolist() == [1, 0]
    with pytest.raises(TransformSpecError, match="same code"):
        map_values(text(["a"]), table={"a": 1, "A": 2}, **WHERE)


# --- units ------------------------------------------------------------------------------------


def test_unit_conversions() -> None:
    where = {"field": "reading", "source": "value"}
    celsius = convert_units(
        text(["212", "32", "-40", "hot", None]), from_unit="degF", to_unit="degC", **where
    )
    assert celsius.values[:3].tolist() == pytest.approx([100.0, 0.0, -40.0], abs=1e-9)
    assert fine(celsius) == [True, True, True, False, True]
    assert "'hot': not a number" in celsius.reasons[3]

    kelvin = convert_units(pd.Series([25.0]), from_unit="degC", to_unit="K", **where)
    assert kelvin.values[0] == pytest.approx(298.15)
    psi = convert_units(pd.Series([1.0, 10.0]), from_unit="bar", to_unit="psi", **where)
    assert psi.values.tolist() == pytest.approx([14.5038, 145.038], rel=1e-5)
    flow = convert_units(pd.Series([10]), from_unit="l/min", to_unit="m**3/h", **where)
    assert flow.values[0] == pytest.approx(0.6)
    assert convert_units(pd.Series([1.0]), from_unit="gal/min", to_unit="l/min", **where).values[
        0
    ] == pytest.approx(3.785411784)
    assert convert_units(pd.Series([1.0]), from_unit="in/s", to_unit="mm/s", **where).values[
        0
    ] == pytest.approx(25.4)
    assert convert_units(pd.Series([2.0]), from_unit="t", to_unit="lb", **where).values[
        0
    ] == pytest.approx(4409.2452, rel=1e-7)
    assert convert_units(pd.Series([1.0]), from_unit="MPa", to_unit="kPa", **where).values[
        0
    ] == pytest.approx(1000.0)
    assert convert_units(pd.Series([12.0]), from_unit="in", to_unit="ft", **where).values[
        0
    ] == pytest.approx(1.0)


def test_units_are_checked_at_load_time() -> None:
    check_units("m3/h", "l/min")
    with pytest.raises(TransformSpecError, match="unknown unit 'furlongs_per_blip'"):
        check_units("furlongs_per_blip", "m")
    with pytest.raises(TransformSpecError, match="different things"):
        check_units("degC", "bar")
    with pytest.raises(TransformSpecError):
        convert_units(pd.Series([1.0]), from_unit="psi", to_unit="mm", field="f", source="s")


# --- named transforms -------------------------------------------------------------------------

CODES = text([" a-01 ", "B-002", None, "000", "0042", "N/A", ""])


@pytest.mark.parametrize(
    ("name", "args", "expected"),
    [
        ("trim", {}, ["a-01", "B-002", None, "000", "0042", "N/A", ""]),
        ("upper", {}, [" A-01 ", "B-002", None, "000", "0042", "N/A", ""]),
        ("lower", {}, [" a-01 ", "b-002", None, "000", "0042", "n/a", ""]),
        (
            "regex_extract",
            {"pattern": r"(\w)-(\d+)", "group": 2},
            ["01", "002", None, None, None, None, None],
        ),
        (
            "regex_extract",
            {"pattern": r"(?P<letter>[A-Za-z])-"},
            ["a", "B", None, None, None, None, None],
        ),
        (
            "regex_replace",
            {"pattern": r"(\w)-(\d+)", "replacement": r"\2/\1"},
            [" 01/a ", "002/B", None, "000", "0042", "N/A", ""],
        ),
        (
            # Look-ahead: not in Arrow's regex engine, so Python's runs it.
            "regex_replace",
            {"pattern": r"-(?=0)", "replacement": "+"},
            [" a+01 ", "B+002", None, "000", "0042", "N/A", ""],
        ),
        ("split", {"separator": "-", "index": 0}, [" a", "B", None, "000", "0042", "N/A", ""]),
        ("split", {"separator": "-", "index": 1}, ["01 ", "002", None, None, None, None, None]),
        ("split", {"separator": "-", "index": -1}, ["01 ", "002", None, "000", "0042", "N/A", ""]),
        (
            "pad",
            {"width": 6, "fill": "0"},
            [" a-01 ", "0B-002", None, "000000", "000042", "000N/A", "000000"],
        ),
        (
            "pad",
            {"width": 5, "side": "right", "fill": "."},
            [" a-01 ", "B-002", None, "000..", "0042.", "N/A..", "....."],
        ),
        ("prefix", {"text": "P-"}, ["P- a-01 ", "P-B-002", None, "P-000", "P-0042", "P-N/A", "P-"]),
        ("suffix", {"text": "!"}, [" a-01 !", "B-002!", None, "000!", "0042!", "N/A!", "!"]),
        ("strip_leading_zeros", {}, [" a-01 ", "B-002", None, "0", "42", "N/A", ""]),
        ("replace", {"old": "-", "new": "_"}, [" a_01 ", "B_002", None, "000", "0042", "N/A", ""]),
        ("nullif", {"value": "N/A"}, [" a-01 ", "B-002", None, "000", "0042", None, ""]),
        ("nullif", {"value": ["N/A", ""]}, [" a-01 ", "B-002", None, "000", "0042", None, None]),
    ],
)
def test_builtin_transforms(name: str, args: dict, expected: list[str | None]) -> None:
    check_transform(name, args)
    converted = apply_transform(name, args, CODES, field="asset_id", source="assetnum")
    assert str(converted.values.dtype) == "string"
    assert converted.values.astype(object).where(converted.values.notna(), None).tolist() == (
        expected
    )
    assert converted.reasons.isna().all()


def test_transforms_accept_numbers_and_keep_the_index() -> None:
    raw = pd.Series([7.0, np.nan, 12.0], index=[5, 6, 8])
    converted = apply_transform("pad", {"width": 4, "fill": "0"}, raw, field="f", source="s")
    assert converted.values.tolist()[0] == "0007"
    assert converted.values.index.tolist() == [5, 6, 8]


def test_register_a_user_transform() -> None:
    @register_transform("test_sap_material", arguments={"plant": str})
    def sap_material(series: pd.Series, *, field: str, source: str, plant: str) -> Converted:
        """Material numbers must be digits; anything else is a reason naming the plant."""
        digits = series.str.fullmatch(r"\d+").fillna(True).astype(bool)
        reasons = pd.Series(pd.NA, index=series.index, dtype="string[pyarrow]")
        reasons[~digits] = [f"{field} <- {source} '{v}': not a material" for v in series[~digits]]
        return Converted(plant + "-" + series, reasons)

    assert "test_sap_material" in transform_names()
    check_transform("test_sap_material", {"plant": "1000"})
    converted = apply_transform(
        "test_sap_material", {"plant": "1000"}, text(["4711", "bolt"]), field="f", source="s"
    )
    assert converted.values.tolist()[0] == "1000-4711"
    assert fine(converted) == [True, False]
    with pytest.raises(TransformSpecError, match="missing argument plant"):
        check_transform("test_sap_material", {})

    @register_transform("test_shout")
    def shout(series: pd.Series, *, field: str, source: str, times: int = 1) -> pd.Series:
        return series.str.upper() + "!" * times

    # Argument types are read from the signature when not declared.
    assert apply_transform(
        "test_shout", {"times": 2}, text(["hi"]), field="f", source="s"
    ).values.tolist() == ["HI!!"]
    with pytest.raises(TransformSpecError, match="times must be a whole number"):
        check_transform("test_shout", {"times": "2"})
    with pytest.raises(ValueError, match="already registered"):
        register_transform("trim")(shout)


def test_check_transform_errors() -> None:
    with pytest.raises(TransformSpecError, match=r"unknown transform 'trimm'; did you mean 'trim'"):
        check_transform("trimm", {})
    with pytest.raises(TransformSpecError) as error:
        check_transform("regex_extract", {"pattern": "([A-Z]+"})
    assert "'([A-Z]+'" in str(error.value) and "invalid regular expression" in str(error.value)
    with pytest.raises(TransformSpecError, match=re.escape("did you mean 'width'")):
        check_transform("pad", {"widht": 4})
    with pytest.raises(TransformSpecError, match="missing argument width"):
        check_transform("pad", {})
    with pytest.raises(TransformSpecError, match="must be a whole number"):
        check_transform("pad", {"width": "4"})
    with pytest.raises(TransformSpecError, match="must be a whole number"):
        check_transform("split", {"separator": "-", "index": True})
    with pytest.raises(TransformSpecError, match="side must be"):
        check_transform("pad", {"width": 4, "side": "middle"})
    with pytest.raises(TransformSpecError, match="group 2 does not exist"):
        check_transform("regex_extract", {"pattern": "(a)", "group": 2})
    with pytest.raises(TransformSpecError, match="refers to group 2"):
        check_transform("regex_replace", {"pattern": "(a)", "replacement": r"\2"})
    with pytest.raises(TransformSpecError, match="takes no arguments"):
        check_transform("trim", {"chars": " "})
    with pytest.raises(TransformSpecError, match="invalid regular expression"):
        apply_transform("regex_replace", {"pattern": "*", "replacement": ""}, CODES,
                        field="f", source="s")  # fmt: skip
