"""What every connector hands back: pages of rows with the cursor after them, and health."""

from __future__ import annotations

import contextvars
import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import dagster as dg

from integration_platform.settings import ConfigError

if TYPE_CHECKING:
    import pandas as pd

    from integration_platform.connectors.cursor import Cursor

TEXT_DTYPE = "string[pyarrow]"
_T = TypeVar("_T")
_END = object()


@dataclass(frozen=True)
class Page:
    """One page of rows as the source sent them, and the cursor that covers them.

    Persist ``cursor`` only after ``frame`` is stored: a crash in between then re-reads the
    page instead of losing it.
    """

    frame: pd.DataFrame
    cursor: Cursor | None
    number: int
    url: str = ""

    def __len__(self) -> int:
        return len(self.frame)


def read_ahead(pages: Iterable[_T]) -> Iterator[_T]:
    """``pages``, each read on a worker thread while the caller works on the one before.

    The caller's work on a page (converting and committing it) then overlaps the wait for
    the next one, and at most one page is read ahead, so memory does not grow. An error
    reading a page is raised here, as raised, when the caller asks for that page. Closing
    this iterator (the caller's loop stopping early or failing) waits for the page being
    read, closes ``pages`` and ends the worker thread: none outlives the read. The worker
    runs with the caller's context variables.
    """
    source = iter(pages)
    context = contextvars.copy_context()
    try:
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="read-ahead") as worker:
            following = worker.submit(context.run, next, source, _END)
            try:
                while (page := following.result()) is not _END:
                    following = worker.submit(context.run, next, source, _END)
                    yield page
            finally:
                following.cancel()
    finally:
        close = getattr(source, "close", None)
        if close is not None:
            close()


@dataclass(frozen=True)
class HealthStatus:
    """The answer of ``health_check()``: never raises, so a schedule can record it."""

    ok: bool
    latency_ms: float
    detail: str


def records_to_frame(
    records: Sequence[Mapping[str, Any]], columns: Iterable[str] = ()
) -> pd.DataFrame:
    """JSON records as a frame of Arrow-backed text, exactly as sent.

    Bronze keeps the source's values; typing happens in the mapping. Text for every column
    also keeps the schema stable across pages (a number missing on one page would otherwise
    turn a column into floats). Declared ``columns`` come first and are always present, because
    systems such as Maximo leave out null attributes. Strings are kept, ``None`` is null, and
    any other value is its compact JSON text (``true``, ``12``, ``1.5``, ``{"a":1}``).

    Columns are built whole by Arrow (a page of a thousand records holds tens of thousands of
    values): only columns holding floats, objects, lists or mixed types are converted value
    by value.
    """
    import pandas as pd

    # The distinct key sequences, in order of first appearance: usually one per page.
    shapes = dict.fromkeys(map(tuple, records))
    names: dict[str, None] = dict.fromkeys(columns)
    for shape in shapes:
        names.update(dict.fromkeys(shape))
    present = set().union(*shapes)
    data = {name: _text_column(records, name, name in present) for name in names}
    return pd.DataFrame(data, index=pd.RangeIndex(len(records)), copy=False)


def _text_column(records: Sequence[Mapping[str, Any]], name: str, present: bool) -> Any:
    """The ``name`` attribute of every record as an Arrow-backed text array."""
    import pandas as pd
    import pyarrow as pa

    if not present:
        return pd.arrays.ArrowStringArray(pa.nulls(len(records), pa.string()))
    return pd.arrays.ArrowStringArray(_arrow_text([record.get(name) for record in records]))


def _arrow_text(values: list[Any]) -> Any:
    """Values as an Arrow string array, each with the text :func:`_as_text` gives it.

    Text and null columns are taken as they are, and integer and boolean columns are cast
    by Arrow (``12``, ``true``: the same text as JSON); floats, objects, lists and mixed
    columns go value by value.
    """
    import pyarrow as pa

    kinds = set(map(type, values))
    kinds.discard(type(None))
    try:
        if kinds <= {str}:
            return pa.array(values, pa.string())
        if kinds == {int}:
            return pa.array(values, pa.int64()).cast(pa.string())
        if kinds == {bool}:
            return pa.array(values, pa.bool_()).cast(pa.string())
    except OverflowError:  # an integer beyond 64 bits
        pass
    return pa.array([_as_text(value) for value in values], pa.string())


def _as_text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def resolve_secret(value: str | None, *, field: str, system: str, required: bool = True) -> str:
    """The value of a credential field, resolving a ``dg.EnvVar`` when used outside a run.

    Inside Dagster the framework has already replaced the EnvVar with its value; a script or
    the CLI constructing a resource directly gets the EnvVar itself.
    """
    if isinstance(value, dg.EnvVar):
        resolved = value.get_value()
        if not resolved and required:
            raise ConfigError(
                f"{system}: field {field!r} reads environment variable {value.env_var_name}, "
                "which is not set; set it (see .env.example)"
            )
        return resolved or ""
    if not value and required:
        raise ConfigError(
            f"{system}: field {field!r} is required for this connection; set it with "
            f"dg.EnvVar (by convention {system.upper()}_{field.upper()})"
        )
    return value or ""
