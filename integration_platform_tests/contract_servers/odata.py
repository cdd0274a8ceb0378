"""The slice of OData query syntax the SAP and Dataverse contract servers understand:
``$filter`` comparisons and ``startswith`` joined by ``and``, ``$orderby``, ``$select``, and
V2/V4 literals."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from integration_platform_tests.contract_servers.vendor_base import parse_instant

_CLAUSE = re.compile(
    r"""\s*(?P<field>[A-Za-z_]\w*)\s+(?P<op>eq|ne|ge|gt|le|lt)\s+
        (?P<value>datetimeoffset'[^']*'|datetime'[^']*'|'(?:[^']|'')*'|[-+:.\w]+)\s*""",
    re.VERBOSE,
)
# startswith(Field,'text'), as V4 writes it; V2 compares the result: ... eq true.
_STARTSWITH = re.compile(
    r"\s*startswith\(\s*(?P<field>[A-Za-z_]\w*)\s*,\s*(?P<value>'(?:[^']|'')*')\s*\)"
    r"(?:\s+eq\s+true)?\s*"
)
V2_DATE = re.compile(r"^/Date\((-?\d+)(?:[+-]\d{4})?\)/$")


class BadQuery(ValueError):
    """A query the service refuses with 400."""


def v2_date(moment: datetime, *, offset: bool = False) -> str:
    """``/Date(ms)/`` (Edm.DateTime) or ``/Date(ms+0000)/`` (Edm.DateTimeOffset)."""
    ms = int(moment.timestamp() * 1000)
    return f"/Date({ms}+0000)/" if offset else f"/Date({ms})/"


def v4_date(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def comparable(value: Any) -> Any:
    """Stored values and literals in one comparable form (dates as UTC datetimes)."""
    if isinstance(value, str):
        match = V2_DATE.match(value)
        if match:
            return datetime.fromtimestamp(int(match[1]) / 1000, UTC)
        if re.match(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}", value):
            return parse_instant(value)
    return value


def literal(text: str) -> Any:
    if text.startswith(("datetimeoffset'", "datetime'")):
        inner = text.split("'", 1)[1][:-1]
        try:
            return parse_instant(inner)
        except ValueError as exc:
            raise BadQuery(f"Invalid date-time literal {text}") from exc
    if text.startswith("'"):
        return text[1:-1].replace("''", "'")
    if re.match(r"^\d{4}-\d{2}-\d{2}(T|$)", text):
        return parse_instant(text if "T" in text else f"{text}T00:00:00")
    try:
        return float(text) if "." in text else int(text)
    except ValueError as exc:
        raise BadQuery(f"Invalid literal {text!r} in $filter") from exc


def parse_filter(text: str, *, v2: bool) -> Callable[[Mapping[str, Any]], bool]:
    """A predicate for ``$filter``; V2 wants typed date literals (``datetimeoffset'...'``),
    a bare ISO date-time there is refused as SAP Gateway does."""
    clauses = []
    for part in re.split(r"\s+and\s+", text.strip()):
        prefix = _STARTSWITH.fullmatch(part)
        if prefix is not None:
            clauses.append((prefix["field"], "startswith", literal(prefix["value"])))
            continue
        match = _CLAUSE.fullmatch(part)
        if match is None:
            raise BadQuery(f"Invalid filter expression near {part!r}")
        raw = match["value"]
        if v2 and re.match(r"^\d{4}-\d{2}-\d{2}T", raw):
            raise BadQuery(f"Invalid token {raw!r}: a date-time needs datetimeoffset'...'")
        clauses.append((match["field"], match["op"], literal(raw)))

    def predicate(record: Mapping[str, Any]) -> bool:
        for name, op, value in clauses:
            if op == "startswith":
                if not str(record.get(name) or "").startswith(value):
                    return False
                continue
            current = comparable(record.get(name))
            if current is None:
                return False
            if isinstance(value, int | float) and not isinstance(current, int | float):
                try:
                    current = float(current)
                except ValueError:
                    return False
            ok = {
                "eq": current == value,
                "ne": current != value,
                "ge": current >= value,
                "gt": current > value,
                "le": current <= value,
                "lt": current < value,
            }[op]
            if not ok:
                return False
        return True

    return predicate


def order_by(records: list[dict[str, Any]], text: str) -> list[dict[str, Any]]:
    for item in reversed([p.strip() for p in text.split(",") if p.strip()]):
        name, _, direction = item.partition(" ")
        descending = direction.strip().lower() == "desc"
        records = sorted(
            records, key=lambda r, n=name: (comparable(r.get(n)) is None, comparable(r.get(n)))
        )
        if descending:
            records.reverse()
    return records


def select(record: Mapping[str, Any], text: str | None, keep: tuple[str, ...] = ()) -> dict:
    if not text:
        return dict(record)
    wanted = {s.strip() for s in text.split(",")} | set(keep)
    # Annotations (@odata.etag, formatted values) come with the selected properties.
    return {k: v for k, v in record.items() if k in wanted or "@" in k}
