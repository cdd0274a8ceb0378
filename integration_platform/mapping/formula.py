"""Formulas for computed mapping fields: a small expression language over whole columns.

Formulas come from users' YAML, so they are never handed to Python (no ``eval``, ``exec`` or
``ast``): a tokenizer and a Pratt parser build an immutable tree of frozen dataclasses from a
fixed grammar and a fixed function table, and the evaluator applies each node to entire
columns with numpy, pandas and pyarrow. A formula is parsed once when a mapping is loaded and
evaluated once per batch, whatever the number of rows.

Null semantics follow SQL. Arithmetic, string operations and comparisons with a null give
null (``'a' + null`` is null, ``null == null`` is null); ``and``/``or``/``not`` use three-valued
logic (``null and false`` is false, ``null or true`` is true). Wherever a boolean *decides*
something -- the condition of ``if``, or a ``when:`` condition checked by the caller through
:func:`truthy` -- null counts as false, so ``if(null, a, b)`` is ``b``. Division or modulo by
zero gives null, never an exception or infinity.

Result dtypes, so that callers can rely on them: numbers are ``float64`` with NaN as null (the
dtype the canonical model and :mod:`columns` use, and numpy's fast path); strings are
``string[pyarrow]``; booleans are pandas' nullable ``boolean``; datetimes are
``datetime64[ns, UTC]``. A formula of type ``any`` (a bare name of unknown type) returns the
resolved column unchanged.

Names of unknown type are ``any``. Sources such as CSV deliver text, so when an ``any`` value
meets a number (``actlabhrs * 85``, ``priority > 2``) it is read with
``pd.to_numeric(errors="coerce")``: text that is not a number becomes null rather than an error.
"""

from __future__ import annotations

import difflib
import operator
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

TYPES = frozenset({"number", "string", "boolean", "datetime", "any"})


class FormulaError(ValueError):
    """A formula that cannot be parsed or is certainly ill-typed; ``position`` is 0-based."""

    def __init__(self, message: str, position: int) -> None:
        super().__init__(f"{message} (at character {position + 1})")
        self.message = message
        self.position = position

    def __reduce__(self) -> tuple[type[FormulaError], tuple[str, int]]:
        return (FormulaError, (self.message, self.position))


# --- tokens ----------------------------------------------------------------------------------

_KEYWORDS = frozenset({"and", "or", "not", "in", "true", "false", "null"})
_IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
_SCANNER = re.compile(
    r"(?P<space>\s+)"
    r"|(?P<number>(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?)"
    rf"|(?P<name>{_IDENT}(?:\.{_IDENT})*)"
    r"|(?P<op>==|!=|<=|>=|[-+*/%<>(),])"
)
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "0": "\0"}
_HINTS = {"=": "; use '==' to compare", "&": "; use 'and'", "|": "; use 'or'", "!": "; use 'not'"}


@dataclass(frozen=True)
class _Token:
    kind: str  # number | string | name | quoted | keyword | op | end
    value: Any
    position: int
    text: str

    def describe(self) -> str:
        return "end of formula" if self.kind == "end" else repr(self.text)


def _read_string(text: str, start: int) -> tuple[str, int]:
    """The value of the string literal opening at ``start`` and the offset just after it."""
    quote, out, i = text[start], [], start + 1
    while i < len(text):
        char = text[i]
        if char == "\\" and i + 1 < len(text):
            out.append(_ESCAPES.get(text[i + 1], text[i + 1]))
            i += 2
        elif char == quote:
            return "".join(out), i + 1
        else:
            out.append(char)
            i += 1
    raise FormulaError(f"unclosed string: missing closing {quote}", start)


def _tokenize(text: str) -> Iterator[_Token]:
    """Tokens on demand, so the parser reports the leftmost error (``eval('x').y`` is an
    unknown function, not a bad character)."""
    pos = 0
    while pos < len(text):
        char = text[pos]
        if char in "'\"":
            value, end = _read_string(text, pos)
            yield _Token("string", value, pos, text[pos:end])
        elif char == "`":
            end = text.find("`", pos + 1) + 1
            if end == 0:
                raise FormulaError("unclosed name: missing closing `", pos)
            if end == pos + 2:
                raise FormulaError("empty name ``", pos)
            yield _Token("quoted", text[pos + 1 : end - 1], pos, text[pos:end])
        else:
            match = _SCANNER.match(text, pos)
            if match is None:
                raise FormulaError(f"unexpected character {char!r}{_HINTS.get(char, '')}", pos)
            kind, word, end = match.lastgroup or "", match.group(), match.end()
            if kind == "name" and word in _KEYWORDS:
                kind = "keyword"
            if kind != "space":
                value = float(word) if kind == "number" else word
                yield _Token(kind, value, pos, word)
        pos = end
    yield _Token("end", None, len(text), "")


# --- expression tree -------------------------------------------------------------------------


@dataclass(frozen=True)
class Literal:
    value: float | str | bool | None
    type: str
    position: int


@dataclass(frozen=True)
class Name:
    name: str
    type: str
    position: int


@dataclass(frozen=True)
class Unary:
    op: str  # "-" | "not"
    operand: Node
    type: str
    position: int


@dataclass(frozen=True)
class Binary:
    op: str  # or and == != < <= > >= + - * / %
    left: Node
    right: Node
    type: str
    position: int


@dataclass(frozen=True)
class InList:
    operand: Node
    items: tuple[Literal, ...]
    negated: bool
    type: str
    position: int


@dataclass(frozen=True)
class Call:
    function: str
    args: tuple[Node, ...]
    type: str
    position: int


Node = Literal | Name | Unary | Binary | InList | Call


def _check(node: Node, allowed: set[str], what: str, position: int | None = None) -> None:
    """Reject a type that is certainly wrong; ``any`` is always accepted."""
    if node.type != "any" and node.type not in allowed:
        expected = " or ".join(sorted(allowed))
        pos = node.position if position is None else position
        raise FormulaError(f"{what} must be {expected}, got {node.type}", pos)


def _unify(nodes: tuple[Node, ...], what: str) -> str:
    """The common type of alternatives (if branches, coalesce arguments).

    A known type wins over ``any`` (``if(c, actlabhrs, 0)`` is a number, the column is read as
    one), in the same way a number literal makes an untyped comparison numeric.
    """
    known = [n for n in nodes if n.type != "any"]
    for node in known[1:]:
        if node.type != known[0].type:
            message = f"{what} mix {known[0].type} and {node.type}"
            raise FormulaError(message, node.position)
    return known[0].type if known else "any"


# --- column conversions ----------------------------------------------------------------------


def _as_number(values: pd.Series) -> pd.Series:
    """float64 with NaN; text (CSV sources) is read with to_numeric and bad text becomes null."""
    dtype = values.dtype
    if dtype == np.float64:
        return values
    if pd.api.types.is_numeric_dtype(dtype) or pd.api.types.is_bool_dtype(dtype):
        array = values.to_numpy(dtype="float64", na_value=np.nan)
    else:
        text = values.astype("string[pyarrow]").str.strip()
        array = pd.to_numeric(text, errors="coerce").to_numpy(dtype="float64", na_value=np.nan)
    return pd.Series(array, index=values.index)


def _arrow_text(array: pa.Array, index: pd.Index) -> pd.Series:
    return pd.Series(pd.arrays.ArrowStringArray(array), index=index)


def _large_text(text: pd.Series) -> pa.ChunkedArray:
    """The Arrow data of a ``string[pyarrow]`` Series, as large_string."""
    arrow = pa.array(text.array)
    if isinstance(arrow, pa.Array):
        arrow = pa.chunked_array([arrow])
    return arrow if arrow.type == pa.large_string() else arrow.cast(pa.large_string())


def _as_string(values: pd.Series) -> pd.Series:
    """string[pyarrow]; integral numbers print without '.0', datetimes as ISO 8601 UTC."""
    dtype = values.dtype
    if isinstance(dtype, pd.StringDtype) and dtype.storage == "pyarrow":
        return values
    if pd.api.types.is_bool_dtype(dtype):
        mask = values.isna().to_numpy()
        flags = values.to_numpy(dtype=bool, na_value=False)
        text = np.where(flags, "true", "false")
        return _arrow_text(pa.array(text, mask=mask, type=pa.string()), values.index)
    if pd.api.types.is_numeric_dtype(dtype):
        numbers = _as_number(values).to_numpy() + 0.0  # -0.0 prints as "0"
        text = pc.cast(pa.array(numbers, from_pandas=True), pa.string())
        # Whole numbers print as integers, never in exponent form: epoch milliseconds and
        # 13-digit ids must stay readable and joinable ("1740480133000", not "1.74e+12").
        whole = np.isfinite(numbers) & (numbers == np.round(numbers)) & (np.abs(numbers) < 2**63)
        if whole.any():
            integers = pa.array(np.where(whole, numbers, 0).astype(np.int64)).cast(pa.string())
            text = pc.if_else(pa.array(whole), integers, text)
        return _arrow_text(text, values.index)
    if pd.api.types.is_datetime64_any_dtype(dtype):
        seconds = pc.cast(pa.array(_as_datetime(values)), pa.timestamp("s", tz="UTC"), safe=False)
        text = pc.strftime(seconds, format="%Y-%m-%dT%H:%M:%SZ")
        return _arrow_text(text, values.index)
    return values.astype("string[pyarrow]")


def _as_boolean(values: pd.Series) -> pd.Series:
    """Nullable boolean; text reads 'true'/'false' (any case), numbers are true when non-zero."""
    dtype = values.dtype
    if isinstance(dtype, pd.BooleanDtype):
        return values
    if pd.api.types.is_bool_dtype(dtype):
        return values.astype("boolean")
    if pd.api.types.is_numeric_dtype(dtype):
        numbers = _as_number(values).to_numpy()
        flags = pd.arrays.BooleanArray(numbers != 0, np.isnan(numbers))
        return pd.Series(flags, index=values.index)
    text = _as_string(values).str.strip().str.lower()
    known = text.isin(["true", "false"]).to_numpy()
    flags = pd.arrays.BooleanArray((text == "true").to_numpy(bool, na_value=False), ~known)
    return pd.Series(flags, index=values.index)


def _as_datetime(values: pd.Series) -> pd.Series:
    """datetime64[ns, UTC]; naive datetimes are taken as UTC, text is parsed as ISO 8601."""
    dtype = values.dtype
    if isinstance(dtype, pd.DatetimeTZDtype):
        return values.dt.tz_convert("UTC").dt.as_unit("ns")
    if pd.api.types.is_datetime64_dtype(dtype):
        return values.dt.tz_localize("UTC").dt.as_unit("ns")
    if pd.api.types.is_numeric_dtype(dtype) and values.isna().all():
        return pd.Series(pd.NaT, index=values.index, dtype="datetime64[ns, UTC]")
    return pd.to_datetime(values, utc=True, errors="coerce", format="ISO8601").dt.as_unit("ns")


_CONVERT: dict[str, Callable[[pd.Series], pd.Series]] = {
    "number": _as_number,
    "string": _as_string,
    "boolean": _as_boolean,
    "datetime": _as_datetime,
}


def _coerce(values: pd.Series, kind: str) -> pd.Series:
    convert = _CONVERT.get(kind)
    return values if convert is None else convert(values)


def _runtime_kind(values: pd.Series) -> str:
    """The type of an ``any`` column, decided from its dtype once per batch."""
    dtype = values.dtype
    if pd.api.types.is_bool_dtype(dtype):
        return "boolean"
    if pd.api.types.is_numeric_dtype(dtype):
        return "number"
    if pd.api.types.is_datetime64_any_dtype(dtype):
        return "datetime"
    return "string"


def _mask(values: pd.Series) -> np.ndarray:
    """A deciding condition: null counts as false."""
    return _as_boolean(values).to_numpy(dtype=bool, na_value=False)


def truthy(values: pd.Series) -> pd.Series:
    """A boolean formula result as a plain bool mask (null -> False), e.g. for ``when:``."""
    return pd.Series(_mask(values), index=values.index)


# --- functions -------------------------------------------------------------------------------

Infer = Callable[[str, tuple[Node, ...], int], str]
Apply = Callable[[tuple[Node, ...], list[pd.Series], str], pd.Series]


@dataclass(frozen=True)
class Function:
    """One entry of the function table: arity, parse-time type rule, vectorized implementation."""

    signature: str
    summary: str
    min_args: int
    max_args: int | None  # None: any number
    infer: Infer = field(repr=False)
    apply: Apply = field(repr=False)


def _typed(result: str, *params: set[str], rest: set[str] | None = None) -> Infer:
    """A type rule: argument i must be of ``params[i]`` (or ``rest``), the result is fixed."""

    def infer(name: str, args: tuple[Node, ...], position: int) -> str:
        for i, arg in enumerate(args):
            allowed = params[i] if i < len(params) else rest
            if allowed is not None:
                _check(arg, allowed, f"{name}() argument {i + 1}")
        return result

    return infer


def _int_literal(node: Node, what: str, minimum: int | None = None) -> int:
    """Digits and slice bounds are literals so one numpy/arrow call covers the column."""
    value = node.value if isinstance(node, Literal) else None
    if (
        not isinstance(value, float)
        or not value.is_integer()
        or (minimum is not None and value < minimum)
    ):
        bound = "" if minimum is None else f" >= {minimum}"
        raise FormulaError(f"{what} must be a whole-number literal{bound}", node.position)
    return int(value)


def _infer_if(name: str, args: tuple[Node, ...], position: int) -> str:
    _check(args[0], {"boolean"}, "if() condition")
    return _unify(args[1:], "if() branches")


def _infer_round(name: str, args: tuple[Node, ...], position: int) -> str:
    _check(args[0], {"number"}, "round() argument 1")
    if len(args) == 2:
        _int_literal(args[1], "round() digits")
    return "number"


def _infer_extreme(name: str, args: tuple[Node, ...], position: int) -> str:
    for i, arg in enumerate(args):
        _check(arg, {"number", "datetime"}, f"{name}() argument {i + 1}")
    return _unify(args, f"{name}() arguments")


def _infer_substr(name: str, args: tuple[Node, ...], position: int) -> str:
    _check(args[0], {"string"}, "substr() argument 1")
    _int_literal(args[1], "substr() start", 0)
    _int_literal(args[2], "substr() length", 0)
    return "string"


def _apply_if(nodes: tuple[Node, ...], args: list[pd.Series], kind: str) -> pd.Series:
    mask = _mask(args[0])
    yes, no = _coerce(args[1], kind), _coerce(args[2], kind)
    if kind == "number":
        return pd.Series(np.where(mask, yes.to_numpy(), no.to_numpy()), index=yes.index)
    return yes.where(mask, no)


def _apply_coalesce(nodes: tuple[Node, ...], args: list[pd.Series], kind: str) -> pd.Series:
    result = _coerce(args[0], kind)
    for arg in args[1:]:
        result = result.where(result.notna(), _coerce(arg, kind))
    return result


def _round_half_away(values: np.ndarray, digits: int) -> np.ndarray:
    """Round half away from zero (as spreadsheets and SQL do, unlike Python's half-to-even).

    The scaled value is nudged by a few ulps so that 1.005 (stored as 1.00499999...) rounds
    to 1.01 as the user wrote it.
    """
    factor = 10.0**digits
    scaled = np.abs(values * factor) * (1 + 4 * np.finfo(np.float64).eps)
    return np.copysign(np.floor(scaled + 0.5), values) / factor


def _apply_round(nodes: tuple[Node, ...], args: list[pd.Series], kind: str) -> pd.Series:
    digits = int(nodes[1].value) if len(nodes) == 2 else 0  # type: ignore[union-attr,arg-type]
    values = _as_number(args[0])
    return pd.Series(_round_half_away(values.to_numpy(), digits), index=values.index)


def _extreme(reduce: Callable[..., Any], frame_method: str) -> Apply:
    def apply(nodes: tuple[Node, ...], args: list[pd.Series], kind: str) -> pd.Series:
        if kind == "any":  # untyped columns: datetimes when all are, else numbers
            kinds = {_runtime_kind(a) for a in args}
            kind = "datetime" if kinds == {"datetime"} else "number"
        if kind == "datetime":
            frame = pd.concat([_as_datetime(a) for a in args], axis=1)
            return getattr(frame, frame_method)(axis=1, skipna=False)
        arrays = [_as_number(a).to_numpy() for a in args]
        return pd.Series(reduce.reduce(arrays), index=args[0].index)  # NaN propagates

    return apply


def _apply_concat(nodes: tuple[Node, ...], args: list[pd.Series], kind: str) -> pd.Series:
    """One Arrow pass over all arguments (nulls joined as ''), not a column per ``+``."""
    parts = [_large_text(_as_string(a)) for a in args]
    empty = pa.scalar("", pa.large_string())
    joined = pc.binary_join_element_wise(
        *parts, empty, null_handling="replace", null_replacement=""
    )
    return _arrow_text(joined, args[0].index)


def _apply_substr(nodes: tuple[Node, ...], args: list[pd.Series], kind: str) -> pd.Series:
    start = int(nodes[1].value)  # type: ignore[union-attr,arg-type]
    length = int(nodes[2].value)  # type: ignore[union-attr,arg-type]
    return _as_string(args[0]).str.slice(start, start + length)


def _between(unit: pd.Timedelta) -> Apply:
    def apply(nodes: tuple[Node, ...], args: list[pd.Series], kind: str) -> pd.Series:
        delta = _as_datetime(args[1]) - _as_datetime(args[0])
        return (delta / unit).astype("float64")

    return apply


def _string_op(method: str) -> Apply:
    def apply(nodes: tuple[Node, ...], args: list[pd.Series], kind: str) -> pd.Series:
        return getattr(_as_string(args[0]).str, method)()

    return apply


def _unary(compute: Callable[[pd.Series], pd.Series]) -> Apply:
    return lambda nodes, args, kind: compute(args[0])


NUM, STR, BOOL, DT = {"number"}, {"string"}, {"boolean"}, {"datetime"}
ANY = {"number", "string", "boolean", "datetime"}
_HOUR, _DAY = pd.Timedelta(hours=1), pd.Timedelta(days=1)

_F = Function
FUNCTIONS: Mapping[str, Function] = MappingProxyType(
    {
        "if": _F("if(cond, a, b)", "a where cond is true, else b", 3, 3, _infer_if, _apply_if),
        "coalesce": _F(
            "coalesce(a, b, ...)", "the first non-null argument", 1, None,
            lambda name, args, pos: _unify(args, "coalesce() arguments"), _apply_coalesce
        ),
        "round": _F(
            "round(x, digits=0)", "half away from zero; digits is a literal", 1, 2,
            _infer_round, _apply_round
        ),
        "min": _F(
            "min(a, b, ...)", "smallest number or datetime; null if any is null", 1, None,
            _infer_extreme, _extreme(np.minimum, "min")
        ),
        "max": _F(
            "max(a, b, ...)", "largest number or datetime; null if any is null", 1, None,
            _infer_extreme, _extreme(np.maximum, "max")
        ),
        "abs": _F(
            "abs(x)", "absolute value", 1, 1,
            _typed("number", NUM), _unary(lambda s: _as_number(s).abs())
        ),
        "concat": _F(
            "concat(a, ...)", "all arguments as text, joined; null counts as ''", 1, None,
            _typed("string", rest=ANY), _apply_concat
        ),
        "upper": _F("upper(s)", "upper case", 1, 1, _typed("string", STR), _string_op("upper")),
        "lower": _F("lower(s)", "lower case", 1, 1, _typed("string", STR), _string_op("lower")),
        "trim": _F(
            "trim(s)", "without surrounding whitespace", 1, 1,
            _typed("string", STR), _string_op("strip")
        ),
        "len": _F(
            "len(s)", "number of characters", 1, 1,
            _typed("number", STR), _unary(lambda s: _as_number(_as_string(s).str.len()))
        ),
        "is_null": _F(
            "is_null(x)", "true where x is null; never null", 1, 1,
            _typed("boolean", ANY), _unary(lambda s: s.isna().astype("boolean"))
        ),
        "to_number": _F(
            "to_number(s)", "text read as a number; null if it is not one", 1, 1,
            _typed("number", NUM | STR), _unary(_as_number)
        ),
        "to_string": _F(
            "to_string(x)", "x as text (12, not 12.0); null stays null", 1, 1,
            _typed("string", ANY), _unary(_as_string)
        ),
        "substr": _F(
            "substr(s, start, length)", "substring, 0-based; literal bounds", 3, 3,
            _infer_substr, _apply_substr
        ),
        "hours_between": _F(
            "hours_between(a, b)", "b - a in hours", 2, 2,
            _typed("number", DT | STR, DT | STR), _between(_HOUR)
        ),
        "days_between": _F(
            "days_between(a, b)", "b - a in days (fractional)", 2, 2,
            _typed("number", DT | STR, DT | STR), _between(_DAY)
        ),
    }
)  # fmt: skip


# --- parser ----------------------------------------------------------------------------------

_COMPARE = frozenset({"==", "!=", "<", "<=", ">", ">="})
_OR, _AND, _NOT, _CMP, _ADD, _MUL, _NEG = 1, 2, 3, 4, 5, 6, 7
_MAX_DEPTH = 100
_BINDING = {"or": _OR, "and": _AND, "+": _ADD, "-": _ADD, "*": _MUL, "/": _MUL, "%": _MUL}
_BINDING.update(dict.fromkeys(_COMPARE | {"in", "not in"}, _CMP))


def _binary_type(op: str, left: Node, right: Node, position: int) -> str:
    """Result type of a binary operator; raises for combinations that can never work."""
    lt, rt = left.type, right.type
    if op in ("and", "or"):
        _check(left, BOOL, f"'{op}' operand")
        _check(right, BOOL, f"'{op}' operand")
        return "boolean"
    if op in _COMPARE:
        pair = {lt, rt} - {"any"}
        if len(pair) == 2 and pair != {"datetime", "string"}:
            raise FormulaError(f"cannot compare {lt} with {rt}", position)
        if op not in ("==", "!=") and "boolean" in pair:
            raise FormulaError(f"'{op}' cannot order boolean values", position)
        return "boolean"
    if op == "+" and "string" in (lt, rt):
        if {lt, rt} <= {"string", "any"}:
            return "string"
        raise FormulaError(f"'+' adds numbers or joins strings, got {lt} and {rt}", position)
    if lt not in ("number", "any") or rt not in ("number", "any"):
        raise FormulaError(f"'{op}' needs numbers, got {lt} and {rt}", position)
    return "any" if op == "+" and lt == rt == "any" else "number"


class _Parser:
    """Precedence climbing over the token list; every node records its inferred type."""

    def __init__(self, text: str, name_types: Mapping[str, str]) -> None:
        self.stream = _tokenize(text)
        self.tokens: list[_Token] = []
        self.index = 0
        self.name_types = name_types
        self.references: set[str] = set()
        self.depth = 0

    def peek(self, ahead: int = 0) -> _Token:
        while len(self.tokens) <= self.index + ahead and (
            not self.tokens or self.tokens[-1].kind != "end"
        ):
            self.tokens.append(next(self.stream))
        return self.tokens[min(self.index + ahead, len(self.tokens) - 1)]

    def advance(self) -> _Token:
        token = self.peek()
        self.index += 1
        return token

    def is_op(self, value: str) -> bool:
        token = self.peek()
        return token.kind == "op" and token.value == value

    def parse(self) -> Node:
        if self.peek().kind == "end":
            raise FormulaError("empty formula", 0)
        node = self.expression(0)
        token = self.peek()
        if token.kind != "end":
            raise FormulaError(
                f"unexpected {token.describe()} after a complete expression", token.position
            )
        return node

    def infix(self) -> tuple[str, int] | None:
        token = self.peek()
        if token.kind == "keyword" and token.value == "not":
            following = self.peek(1)
            return (
                ("not in", _CMP)
                if following.kind == "keyword" and following.value == "in"
                else None
            )
        if token.kind in ("op", "keyword") and token.value in _BINDING:
            return token.value, _BINDING[token.value]
        return None

    def expression(self, min_power: int) -> Node:
        self.depth += 1
        if self.depth > _MAX_DEPTH:  # a FormulaError, not a RecursionError from Python
            raise FormulaError(
                f"formula nests deeper than {_MAX_DEPTH} levels", self.peek().position
            )
        left = self.prefix(min_power)
        while (found := self.infix()) is not None and found[1] > min_power:
            op, power = found
            token = self.advance()
            if op == "not in":
                self.advance()
            if op in ("in", "not in"):
                left = self.in_list(left, op == "not in", token.position)
            else:
                right = self.expression(power)
                kind = _binary_type(op, left, right, token.position)
                left = Binary(op, left, right, kind, token.position)
            if power == _CMP and (after := self.infix()) is not None and after[1] == _CMP:
                raise FormulaError(
                    "comparisons cannot be chained; combine them with 'and'", self.peek().position
                )
        self.depth -= 1
        return left

    def prefix(self, min_power: int) -> Node:
        token = self.advance()
        kind, value, pos = token.kind, token.value, token.position
        if kind == "number":
            return Literal(value, "number", pos)
        if kind == "string":
            return Literal(value, "string", pos)
        if kind == "keyword" and value in ("true", "false"):
            return Literal(value == "true", "boolean", pos)
        if kind == "keyword" and value == "null":
            return Literal(None, "any", pos)
        if kind == "keyword" and value == "not":
            if min_power > _NOT:
                raise FormulaError("'not' needs parentheses here, as in (not x)", pos)
            operand = self.expression(_NOT)
            _check(operand, BOOL, "'not' operand")
            return Unary("not", operand, "boolean", pos)
        if kind == "op" and value == "-":
            operand = self.expression(_NEG)
            _check(operand, NUM, "'-' operand")
            if isinstance(operand, Literal) and isinstance(operand.value, float):
                return Literal(-operand.value, "number", pos)
            return Unary("-", operand, "number", pos)
        if kind == "op" and value == "(":
            inner = self.expression(0)
            self.close(pos, "")
            return inner
        if kind == "name" and self.is_op("("):
            return self.call(token)
        if kind in ("name", "quoted"):
            self.references.add(value)
            return Name(value, self.name_types.get(value, "any"), pos)
        raise FormulaError(f"expected an expression, found {token.describe()}", pos)

    def close(self, opened_at: int, where: str) -> None:
        token = self.advance()
        if token.kind == "op" and token.value == ")":
            return
        if token.kind == "end":
            raise FormulaError(f"unclosed '('{where}", opened_at)
        expected = "')'" if not where else "',' or ')'"
        message = f"expected {expected}{where}, found {token.describe()}"
        raise FormulaError(message, token.position)

    def call(self, name: _Token) -> Call:
        spec = FUNCTIONS.get(name.value)
        if spec is None:
            raise FormulaError(_unknown_function(name.value), name.position)
        opened_at = self.advance().position
        args: list[Node] = []
        if self.is_op(")"):
            self.advance()
        else:
            while True:
                args.append(self.expression(0))
                if self.is_op(","):
                    self.advance()
                    continue
                self.close(opened_at, f" in {name.value}()")
                break
        count, low, high = len(args), spec.min_args, spec.max_args
        if count < low or (high is not None and count > high):
            if high is None:
                wanted = f"at least {low}"
            else:
                wanted = str(low) if low == high else f"{low} or {high}"
            plural = "" if wanted.endswith(" 1") or wanted == "1" else "s"
            message = f"{name.value}() takes {wanted} argument{plural}, got {count}"
            raise FormulaError(message, name.position)
        kind = spec.infer(name.value, tuple(args), name.position)
        return Call(name.value, tuple(args), kind, name.position)

    def in_list(self, operand: Node, negated: bool, position: int) -> InList:
        opened = self.advance()
        if not (opened.kind == "op" and opened.value == "("):
            raise FormulaError(
                f"expected '(' after 'in', found {opened.describe()}", opened.position
            )
        items: list[Literal] = []
        while True:
            item = self.expression(0)
            if not isinstance(item, Literal):
                raise FormulaError("'in' lists hold literal values only", item.position)
            if item.value is None:
                raise FormulaError("null never matches in 'in'; use is_null(x)", item.position)
            if items and item.type != items[0].type:
                raise FormulaError(
                    f"'in' list mixes {items[0].type} and {item.type}", item.position
                )
            items.append(item)
            if not self.is_op(","):
                break
            self.advance()
        self.close(opened.position, " in the 'in' list")
        if operand.type not in ("any", items[0].type):
            raise FormulaError(
                f"cannot look up {operand.type} in a list of {items[0].type}", position
            )
        return InList(operand, tuple(items), negated, "boolean", position)


def _unknown_function(name: str) -> str:
    """Point at the intended function: typos and wrong case are the usual culprits."""
    lowered = {key.lower(): key for key in FUNCTIONS}
    close = difflib.get_close_matches(name.lower(), list(lowered), n=1, cutoff=0.6)
    if close:
        return f"unknown function '{name}'; did you mean '{lowered[close[0]]}'?"
    return f"unknown function '{name}'; known functions: {', '.join(sorted(FUNCTIONS))}"


# --- evaluation ------------------------------------------------------------------------------

_COMPARE_OPS: dict[str, Callable[[Any, Any], Any]] = {
    "==": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}


def _domain(left: Node, lvalues: pd.Series, right: Node, rvalues: pd.Series) -> str:
    """Where two operands meet: numbers win over text (CSV), datetimes over text (literals)."""
    kinds = {
        left.type if left.type != "any" else _runtime_kind(lvalues),
        right.type if right.type != "any" else _runtime_kind(rvalues),
    }
    if len(kinds) == 1:
        return kinds.pop()
    for kind in ("number", "datetime"):
        if kind in kinds:
            return kind
    return "string"


def _boolean(values: np.ndarray, null: np.ndarray, index: pd.Index) -> pd.Series:
    return pd.Series(pd.arrays.BooleanArray(values & ~null, null), index=index)


def _compare(op: str, kind: str, left: pd.Series, right: pd.Series) -> pd.Series:
    """SQL comparison: null where either side is null."""
    a, b = _coerce(left, kind), _coerce(right, kind)
    null = (a.isna() | b.isna()).to_numpy()
    if kind == "number":
        values = _COMPARE_OPS[op](a.to_numpy(), b.to_numpy())
    else:
        values = _COMPARE_OPS[op](a, b)
        values = np.asarray(pd.Series(values).to_numpy(dtype=bool, na_value=False))
    return _boolean(values, null, left.index)


def _arithmetic(op: str, left: pd.Series, right: pd.Series) -> pd.Series:
    a, b = _as_number(left).to_numpy(), _as_number(right).to_numpy()
    with np.errstate(all="ignore"):
        if op == "+":
            result = a + b
        elif op == "-":
            result = a - b
        elif op == "*":
            result = a * b
        else:
            result = a / b if op == "/" else np.mod(a, b)
            result[b == 0] = np.nan
    return pd.Series(result, index=left.index)


class _Evaluator:
    """Evaluates one tree over one batch; each name is resolved at most once."""

    def __init__(self, resolve: Callable[[str], pd.Series], index: pd.Index) -> None:
        self.resolve = resolve
        self.index = index
        self.names: dict[str, pd.Series] = {}

    def name(self, node: Name) -> pd.Series:
        if node.name not in self.names:
            values = self.resolve(node.name)
            if len(values) != len(self.index):
                raise ValueError(
                    f"column {node.name!r} has {len(values)} rows, expected {len(self.index)}"
                )
            if values.index is not self.index:
                values = values.set_axis(self.index)
            self.names[node.name] = _coerce(values, node.type)
        return self.names[node.name]

    def literal(self, node: Literal) -> pd.Series:
        size, value = len(self.index), node.value
        if isinstance(value, str):
            return _arrow_text(pa.repeat(pa.scalar(value, pa.string()), size), self.index)
        if isinstance(value, bool):
            flags = np.full(size, value)
            return _boolean(flags, np.zeros(size, dtype=bool), self.index)
        # numbers, and null (NaN converts to a null of whatever type the context needs)
        return pd.Series(np.full(size, np.nan if value is None else value), index=self.index)

    def eval(self, node: Node) -> pd.Series:
        match node:
            case Literal():
                return self.literal(node)
            case Name():
                return self.name(node)
            case Unary(op="-"):
                return -_as_number(self.eval(node.operand))
            case Unary():
                return ~_as_boolean(self.eval(node.operand))
            case Binary(op="and" | "or"):
                left, right = _as_boolean(self.eval(node.left)), _as_boolean(self.eval(node.right))
                return left & right if node.op == "and" else left | right
            case Binary(op=op) if op in _COMPARE:
                left, right = self.eval(node.left), self.eval(node.right)
                return _compare(op, _domain(node.left, left, node.right, right), left, right)
            case Binary():
                left, right = self.eval(node.left), self.eval(node.right)
                kind = node.type
                if kind == "any":  # both sides unknown: join only when both are text
                    both_text = {_runtime_kind(left), _runtime_kind(right)} == {"string"}
                    kind = "string" if both_text else "number"
                if kind == "string":
                    return _as_string(left) + _as_string(right)
                return _arithmetic(node.op, left, right)
            case InList():
                return self.in_list(node)
            case Call():
                args = [self.eval(arg) for arg in node.args]
                return FUNCTIONS[node.function].apply(node.args, args, node.type)
        raise TypeError(f"not a formula node: {node!r}")  # pragma: no cover

    def in_list(self, node: InList) -> pd.Series:
        values = self.eval(node.operand)
        kind = node.items[0].type
        converted = _coerce(values, kind)
        wanted = [item.value for item in node.items]
        found = np.asarray(converted.isin(wanted).to_numpy(dtype=bool, na_value=False))
        null = converted.isna().to_numpy()
        return _boolean(~found if node.negated else found, null, self.index)


# --- public API ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Formula:
    """A parsed formula: immutable, built once per mapping, evaluated once per batch."""

    text: str
    references: frozenset[str]
    result_type: str
    tree: Node = field(repr=False, compare=False)

    def __str__(self) -> str:
        return self.text

    def evaluate(self, resolve: Callable[[str], pd.Series], index: pd.Index) -> pd.Series:
        """The formula over a batch; ``resolve(name)`` gives each referenced column."""
        result = _Evaluator(resolve, index).eval(self.tree)
        return _coerce(result, self.result_type)


def parse_formula(text: str, *, name_types: Mapping[str, str] | None = None) -> Formula:
    """Parse and type-check ``text``; raises :class:`FormulaError` with the offending position."""
    types = dict(name_types or {})
    unknown = {kind for kind in types.values() if kind not in TYPES}
    if unknown:
        raise ValueError(f"unknown name types {sorted(unknown)}; expected one of {sorted(TYPES)}")
    parser = _Parser(text, types)
    tree = parser.parse()
    return Formula(text, frozenset(parser.references), tree.type, tree)
