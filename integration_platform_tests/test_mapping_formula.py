import math
import pickle

import numpy as np
import pandas as pd
import pytest

from integration_platform.mapping.formula import (
    FUNCTIONS,
    Binary,
    Formula,
    FormulaError,
    Literal,
    parse_formula,
    truthy,
)

ROWS = pd.RangeIndex(3)


def text(values: list[str | None]) -> pd.Series:
    return pd.Series(values, dtype="string[pyarrow]")


def utc(values: list[str | None]) -> pd.Series:
    return pd.Series(pd.to_datetime(values, utc=True, format="ISO8601"))


COLUMNS: dict[str, pd.Series] = {
    "a": pd.Series([10.0, 2.0, np.nan]),
    "b": pd.Series([4.0, 0.0, 1.0]),
    "c": pd.Series([3.0, 1.0, 1.0]),
    "s": text(["Pump", " valve ", None]),
    "t": text(["EM", "PM", None]),
    "qty": text(["12", " 3.5 ", "n/a"]),
    "flag": pd.Series([True, False, None], dtype="boolean"),
    "start": utc(["2024-03-01T08:00:00Z", "2024-03-01T00:00:00Z", None]),
    "end": utc(["2024-03-01T14:30:00Z", "2024-03-03T12:00:00Z", "2024-03-01T00:00:00Z"]),
    "fields.status.code": text(["WAPPR", "COMP", "INPRG"]),
    "Order Type": text(["CM", "PM", "CM"]),
}


def run(formula: str, **name_types: str) -> list[object]:
    """Evaluate over COLUMNS and return plain values, with every null as None."""
    parsed = parse_formula(formula, name_types=name_types or None)
    result = parsed.evaluate(COLUMNS.__getitem__, ROWS)
    assert len(result) == len(ROWS)
    return [None if pd.isna(v) else v for v in result.astype(object)]


def error(formula: str) -> FormulaError:
    with pytest.raises(FormulaError) as caught:
        parse_formula(formula)
    return caught.value


# --- parsing: precedence, names, references, types -------------------------------------------


@pytest.mark.parametrize(
    ("formula", "expected"),
    [
        ("1 + 2 * 3", 7.0),
        ("(1 + 2) * 3", 9.0),
        ("-2 * 3", -6.0),
        ("- -2", 2.0),
        ("10 - 4 - 3", 3.0),
        ("64 / 4 / 2", 8.0),
        ("7 % 4 * 2", 6.0),
        ("2 * -3 + 1", -5.0),
        ("1e3 + 3.5 + .5", 1004.0),
    ],
)
def test_arithmetic_precedence_and_left_associativity(formula: str, expected: float) -> None:
    assert run(formula) == [expected] * 3


def test_tree_shape_shows_precedence() -> None:
    tree = parse_formula("a - b - c").tree
    assert isinstance(tree, Binary) and tree.op == "-"
    assert isinstance(tree.left, Binary) and tree.left.op == "-"  # (a - b) - c
    assert run("a - b - c") == [3.0, 1.0, None]
    tree = parse_formula("-2 * 3").tree
    assert isinstance(tree, Binary) and tree.left == Literal(-2.0, "number", 0)


def test_boolean_precedence_not_binds_looser_than_comparison() -> None:
    assert run("not a > 5") == [False, True, None]
    assert run("true or false and false") == [True] * 3  # and before or
    assert run("not false and false") == [False] * 3  # (not false) and false
    assert run("1 + 1 == 2 and 'x' != 'y'") == [True] * 3


def test_and_or_use_three_valued_logic() -> None:
    assert run("flag and true") == [True, False, None]
    assert run("flag and false") == [False, False, False]
    assert run("flag or true") == [True, True, True]
    assert run("flag or false") == [True, False, None]
    assert run("not flag") == [False, True, None]


def test_dotted_and_backtick_names_and_references() -> None:
    parsed = parse_formula("concat(fields.status.code, '/', `Order Type`, target.hours)")
    assert parsed.references == frozenset({"fields.status.code", "Order Type", "target.hours"})
    assert run("lower(fields.status.code) + `Order Type`") == ["wapprCM", "compPM", "inprgCM"]
    assert parse_formula("1 + 2").references == frozenset()
    assert str(parse_formula("a + 1")) == "a + 1"


@pytest.mark.parametrize(
    ("formula", "result_type"),
    [
        ("1 + 2", "number"),
        ("'a' + 'b'", "string"),
        ("a == 1", "boolean"),
        ("a", "any"),
        ("a + b", "any"),
        ("a * b", "number"),
        ("a + 'x'", "string"),
        ("if(a > 1, 'x', null)", "string"),
        ("if(a > 1, a, 0)", "number"),
        ("coalesce(a, b)", "any"),
        ("coalesce(null, 2)", "number"),
        ("concat(1, 2)", "string"),
        ("hours_between(a, b)", "number"),
        ("max(start, end)", "any"),
        ("is_null(a)", "boolean"),
        ("null", "any"),
    ],
)
def test_result_types_are_inferred(formula: str, result_type: str) -> None:
    assert parse_formula(formula).result_type == result_type


def test_known_name_types_improve_inference_and_convert_columns() -> None:
    types = {"start": "datetime", "end": "datetime", "qty": "number"}
    assert parse_formula("max(start, end)", name_types=types).result_type == "datetime"
    assert parse_formula("qty", name_types=types).result_type == "number"
    assert run("qty", qty="number") == [12.0, 3.5, None]
    with pytest.raises(FormulaError, match="upper\\(\\) argument 1 must be string, got number"):
        parse_formula("upper(qty)", name_types=types)
    with pytest.raises(ValueError, match="unknown name types"):
        parse_formula("a", name_types={"a": "integer"})


def test_formula_is_immutable() -> None:
    parsed = parse_formula("a + 1")
    assert isinstance(parsed, Formula)
    with pytest.raises(AttributeError):
        parsed.text = "b"  # type: ignore[misc]
    with pytest.raises(AttributeError):
        parsed.tree.op = "-"  # type: ignore[union-attr]


# --- evaluation ------------------------------------------------------------------------------


def test_result_dtypes() -> None:
    def dtype(formula: str) -> object:
        return parse_formula(formula).evaluate(COLUMNS.__getitem__, ROWS).dtype

    assert dtype("a * 2") == np.float64
    assert dtype("qty + 1") == np.float64
    assert dtype("upper(s)") == pd.StringDtype("pyarrow")
    assert dtype("a > 1") == pd.BooleanDtype()
    assert dtype("t in ('EM')") == pd.BooleanDtype()
    assert dtype("max(start, end)") == "datetime64[ns, UTC]"
    assert dtype("if(a > 1, start, end)") == "datetime64[ns, UTC]"


def test_literals_broadcast_over_the_index() -> None:
    index = pd.Index(["x", "y"])
    result = parse_formula("'x'").evaluate(COLUMNS.__getitem__, index)
    assert result.index.equals(index)
    assert run('\'it\\\'s\' + "\\"q\\""') == ['it\'s"q"'] * 3
    assert run("true") == [True] * 3
    assert run("null") == [None] * 3


def test_null_propagates_through_arithmetic_and_string_ops() -> None:
    assert run("a + 1") == [11.0, 3.0, None]
    assert run("s + '!'") == ["Pump!", " valve !", None]
    assert run("1 + null") == [None] * 3
    assert run("-a") == [-10.0, -2.0, None]


def test_division_and_modulo_by_zero_give_null() -> None:
    assert run("a / b") == [2.5, None, None]
    assert run("a % b") == [2.0, None, None]
    assert run("0 / 0") == [None] * 3
    assert run("1 / 0") == [None] * 3


def test_plus_joins_strings_and_adds_numbers_even_for_untyped_columns() -> None:
    assert run("'maximo:' + t") == ["maximo:EM", "maximo:PM", None]
    assert run("t + t") == ["EMEM", "PMPM", None]
    assert run("a + b") == [14.0, 2.0, None]
    assert run("qty + 1") == [13.0, 4.5, None]  # text columns (CSV) read as numbers


def test_comparisons_with_nulls_are_null() -> None:
    assert run("a > 5") == [True, False, None]
    assert run("a == null") == [None] * 3
    assert run("t == 'EM'") == [True, False, None]
    assert run("t != 'EM'") == [False, True, None]
    assert run("'b' > 'a'") == [True] * 3


def test_untyped_text_compares_numerically_with_number_literals() -> None:
    assert run("qty > 10") == [True, False, None]
    assert run("qty == 3.5") == [False, True, None]


def test_datetimes_compare_with_iso_text() -> None:
    assert run("end > '2024-03-02T00:00:00Z'") == [False, True, False]
    assert run("start < end") == [True, True, None]


def test_in_and_not_in() -> None:
    assert run("t in ('EM', 'CM')") == [True, False, None]
    assert run("t not in ('EM', 'CM')") == [False, True, None]
    assert run("b in (0, 1)") == [False, True, True]
    assert run("qty in (12, -1)") == [True, False, None]
    assert run("flag in (true)") == [True, False, None]
    assert run("not t in ('EM')") == [False, True, None]


def test_if_chooses_per_row_and_null_condition_takes_the_else_branch() -> None:
    assert run("if(a > 5, 'big', 'small')") == ["big", "small", "small"]
    assert run("if(null, 1, 2)") == [2.0] * 3
    assert run("if(flag, 1, 2)") == [1.0, 2.0, 2.0]
    assert run("if(t == 'EM', 1.5, 1)") == [1.5, 1.0, 1.0]
    assert run("if(a > 5, a, null)") == [10.0, None, None]
    assert run("if(a > 1, qty, 0)") == [12.0, 3.5, 0.0]  # a known branch type wins over any


def test_coalesce() -> None:
    assert run("coalesce(a, b)") == [10.0, 2.0, 1.0]
    assert run("coalesce(s, t, 'none')") == ["Pump", " valve ", "none"]
    assert run("coalesce(null, null)") == [None] * 3


def test_round_is_half_away_from_zero() -> None:
    assert run("round(2.5)") == [3.0] * 3
    assert run("round(-2.5)") == [-3.0] * 3
    assert run("round(1.005, 2)") == [1.01] * 3
    assert run("round(95.625, 2)") == [95.63] * 3
    assert run("round(1234.5, -2)") == [1200.0] * 3
    assert run("round(a / 3, 1)") == [3.3, 0.7, None]


def test_min_max_abs() -> None:
    assert run("min(a, b, 3)") == [3.0, 0.0, None]
    assert run("max(a, b)") == [10.0, 2.0, None]
    assert run("abs(-a)") == [10.0, 2.0, None]
    assert run("max(start, end)", start="datetime", end="datetime") == [
        pd.Timestamp("2024-03-01T14:30:00Z"),
        pd.Timestamp("2024-03-03T12:00:00Z"),
        None,
    ]


def test_concat_treats_null_as_empty_and_formats_numbers() -> None:
    assert run("concat('maximo:', t, ':', a)") == ["maximo:EM:10", "maximo:PM:2", "maximo::"]
    assert run("concat(a / 4, '|', flag)") == ["2.5|true", "0.5|false", "|"]
    assert run("concat(start)") == ["2024-03-01T08:00:00Z", "2024-03-01T00:00:00Z", ""]


def test_string_functions() -> None:
    assert run("upper(s)") == ["PUMP", " VALVE ", None]
    assert run("lower(s)") == ["pump", " valve ", None]
    assert run("trim(s)") == ["Pump", "valve", None]
    assert run("len(s)") == [4.0, 7.0, None]
    assert run("substr(s, 1, 3)") == ["ump", "val", None]
    assert run("substr('abc', 2, 10)") == ["c"] * 3


def test_null_tests_and_conversions() -> None:
    assert run("is_null(a)") == [False, False, True]
    assert run("is_null(s)") == [False, False, True]
    assert run("to_number(qty)") == [12.0, 3.5, None]
    assert run("to_number(a)") == [10.0, 2.0, None]
    assert run("to_string(a)") == ["10", "2", None]
    assert run("to_string(a / 4)") == ["2.5", "0.5", None]
    assert run("to_string(flag)") == ["true", "false", None]


def test_durations_between_datetimes() -> None:
    assert run("hours_between(start, end)") == [6.5, 60.0, None]
    assert run("days_between(start, end)") == [6.5 / 24, 2.5, None]
    assert run("hours_between('2024-01-01T00:00:00+01:00', '2024-01-01T00:00:00Z')") == [1.0] * 3


def test_every_function_is_listed_and_callable() -> None:
    assert set(FUNCTIONS) == {
        "if", "coalesce", "round", "min", "max", "abs", "concat", "upper", "lower", "trim",
        "len", "is_null", "to_number", "to_string", "substr", "hours_between", "days_between",
    }  # fmt: skip
    assert all(spec.signature.startswith(f"{name}(") for name, spec in FUNCTIONS.items())


def test_truthy_turns_null_into_false() -> None:
    result = parse_formula("a > 5").evaluate(COLUMNS.__getitem__, ROWS)
    assert truthy(result).tolist() == [True, False, False]


def test_each_name_is_resolved_once_per_batch() -> None:
    calls: list[str] = []

    def resolve(name: str) -> pd.Series:
        calls.append(name)
        return COLUMNS[name]

    parse_formula("a + a * a").evaluate(resolve, ROWS)
    assert calls == ["a"]


def test_column_of_the_wrong_length_is_rejected() -> None:
    with pytest.raises(ValueError, match="'a' has 3 rows, expected 2"):
        parse_formula("a + 1").evaluate(COLUMNS.__getitem__, pd.RangeIndex(2))


# --- errors ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("formula", "message", "position"),
    [
        ("rount(a, 2)", "unknown function 'rount'; did you mean 'round'?", 0),
        ("1 + ROUND(a)", "unknown function 'ROUND'; did you mean 'round'?", 4),
        ("concat('a, b)", "unclosed string: missing closing '", 7),
        ('"abc', 'unclosed string: missing closing "', 0),
        ("a + `b c", "unclosed name: missing closing `", 4),
        ("a + b c", "unexpected 'c' after a complete expression", 6),
        ("round(a))", "unexpected ')' after a complete expression", 8),
        ("if(a > 1, , 2)", "expected an expression, found ','", 10),
        ("if(a > 1, 2)", "if() takes 3 arguments, got 2", 0),
        ("abs()", "abs() takes 1 argument, got 0", 0),
        ("round(a, 1, 2)", "round() takes 1 or 2 arguments, got 3", 0),
        ("concat()", "concat() takes at least 1 argument, got 0", 0),
        ("a +", "expected an expression, found end of formula", 3),
        ("", "empty formula", 0),
        ("(a + 1", "unclosed '('", 0),
        ("round(a, 2", "unclosed '(' in round()", 5),
        ("(a + 1 2)", "expected ')', found '2'", 7),
        ("round(a 2)", "expected ',' or ')' in round(), found '2'", 8),
        ("a = 1", "unexpected character '='; use '==' to compare", 2),
        ("a $ 1", "unexpected character '$'", 2),
        ("a < b < c", "comparisons cannot be chained; combine them with 'and'", 6),
        ("a == not b", "'not' needs parentheses here, as in (not x)", 5),
        ("a in ('x', b)", "'in' lists hold literal values only", 11),
        ("a in ('x', 1)", "'in' list mixes string and number", 11),
        ("a in (null)", "null never matches in 'in'; use is_null(x)", 6),
        ("a in 'x'", "expected '(' after 'in', found \"'x'\"", 5),
    ],
)
def test_syntax_errors_have_exact_messages_and_positions(
    formula: str, message: str, position: int
) -> None:
    caught = error(formula)
    assert caught.message == message
    assert caught.position == position
    assert str(caught) == f"{message} (at character {position + 1})"


@pytest.mark.parametrize(
    ("formula", "message", "position"),
    [
        ("'a' * 2", "'*' needs numbers, got string and number", 4),
        ("1 + 'a'", "'+' adds numbers or joins strings, got number and string", 2),
        ("if(1, 'a', 'b')", "if() condition must be boolean, got number", 3),
        ("if(a > 1, 'a', 2)", "if() branches mix string and number", 15),
        ("round('x')", "round() argument 1 must be number, got string", 6),
        ("round(a, b)", "round() digits must be a whole-number literal", 9),
        ("round(a, 1.5)", "round() digits must be a whole-number literal", 9),
        ("substr(s, -1, 2)", "substr() start must be a whole-number literal >= 0", 10),
        ("upper(1)", "upper() argument 1 must be string, got number", 6),
        ("len(true)", "len() argument 1 must be string, got boolean", 4),
        ("to_number(true)", "to_number() argument 1 must be number or string, got boolean", 10),
        ("abs('x')", "abs() argument 1 must be number, got string", 4),
        ("min(1, 'x')", "min() argument 2 must be datetime or number, got string", 7),
        ("'a' == 1", "cannot compare string with number", 4),
        ("true < false", "'<' cannot order boolean values", 5),
        ("1 and a", "'and' operand must be boolean, got number", 0),
        ("not 'x'", "'not' operand must be boolean, got string", 4),
        ("-'x'", "'-' operand must be number, got string", 1),
        ("1 in ('a')", "cannot look up number in a list of string", 2),
    ],
)
def test_certain_type_errors_are_rejected_at_parse_time(
    formula: str, message: str, position: int
) -> None:
    caught = error(formula)
    assert (caught.message, caught.position) == (message, position)


def test_deep_nesting_is_a_formula_error_not_a_crash() -> None:
    assert run("(" * 50 + "1" + ")" * 50) == [1.0] * 3
    caught = error("(" * 500 + "1" + ")" * 500)
    assert caught.message == "formula nests deeper than 100 levels"
    assert error("-" * 500 + "1").message == "formula nests deeper than 100 levels"


def test_formula_error_is_a_value_error_and_survives_pickling() -> None:
    caught = error("rount(a)")
    assert isinstance(caught, ValueError)
    copy = pickle.loads(pickle.dumps(caught))
    assert (copy.message, copy.position, str(copy)) == (caught.message, 0, str(caught))


def test_python_is_never_evaluated() -> None:
    caught = error("__import__('os').system('echo hacked')")
    assert caught.message.startswith("unknown function '__import__'")
    assert error("os.system('ls')").message.startswith("unknown function 'os.system'")
    assert error("eval('1')").message.startswith("unknown function 'eval'")
    assert error("a[0]").message == "unexpected character '['"
    assert error("lambda: 1").message == "unexpected character ':'"

    # Attribute access is just a dotted name handed to the resolver, never executed.
    parsed = parse_formula("a.__class__.__bases__")
    assert parsed.references == frozenset({"a.__class__.__bases__"})
    asked: list[str] = []

    def resolve(name: str) -> pd.Series:
        asked.append(name)
        return text(["x", "y", "z"])

    assert parsed.evaluate(resolve, ROWS).tolist() == ["x", "y", "z"]
    assert asked == ["a.__class__.__bases__"]


# --- scale -----------------------------------------------------------------------------------


def test_million_rows_are_evaluated_column_wise() -> None:
    size = 1_000_000
    index = pd.RangeIndex(size)
    hours = pd.Series(np.arange(size) % 100 / 4, index=index)
    worktype = pd.Series(np.where(np.arange(size) % 3 == 0, "EM", "PM"), index=index).astype(
        "string[pyarrow]"
    )
    columns = {"a": hours, "b": worktype}
    parsed = parse_formula("round(a * 85 * if(b == 'EM', 1.5, 1), 2)")

    result = parsed.evaluate(columns.__getitem__, index)

    assert len(result) == size and result.dtype == np.float64
    assert not result.isna().any()
    for row in (0, 1, 3, 4, 999_999, 123_457):
        factor = 1.5 if row % 3 == 0 else 1.0
        expected = math.floor((row % 100 / 4) * 85 * factor * 100 + 0.5) / 100
        assert result[row] == pytest.approx(expected, abs=1e-9), row
    assert result[3] == 95.63  # 0.75 * 85 * 1.5 = 95.625, rounded half away from zero


def test_whole_numbers_become_text_without_exponent() -> None:
    frame = pd.DataFrame({"ms": [1740480133000.0, 2.5, None]})
    formula = parse_formula("concat('t', to_string(ms))")
    result = formula.evaluate(lambda name: frame[name], frame.index)
    assert result.tolist()[:2] == ["t1740480133000", "t2.5"]
