"""Pages as connectors build them: records as text frames (edge values included), cursor
marks read by Arrow as pandas reads them, and pages read one ahead of the extraction."""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from integration_platform.connectors.base import Page, _as_text, read_ahead, records_to_frame
from integration_platform.connectors.cursor import Cursor, marks
from integration_platform.connectors.errors import ServerError
from integration_platform.connectors.extract import committed_cursor, extract_to_lake
from integration_platform.lake import DeltaLake

EDGE_RECORDS: list[dict[str, Any]] = [
    {
        "text": "a",
        "whole": 1,
        "flag": True,
        "real": 1.0,
        "object": {"k": "é", "n": [1, 2]},
        "list": [1, "x"],
        "mixed": 1,
        "huge": 2**70,
        "bool_int": True,
    },
    {
        "text": None,
        "whole": -5,
        "flag": False,
        "real": 1e20,
        "object": {},
        "list": [],
        "mixed": "two",
        "huge": None,
        "bool_int": 1,
        "late": "only here",
    },
    {"whole": None, "flag": None, "real": float("nan"), "mixed": None},
]


def value_by_value(records: list[dict[str, Any]], columns: tuple[str, ...]) -> pd.DataFrame:
    """The reference: each value through ``_as_text`` on its own."""
    names = dict.fromkeys(columns)
    for record in records:
        names.update(dict.fromkeys(record))
    data = {
        name: pd.array([_as_text(r.get(name)) for r in records], dtype="string[pyarrow]")
        for name in names
    }
    return pd.DataFrame(data, index=pd.RangeIndex(len(records)))


def test_records_become_the_text_json_gives_them() -> None:
    frame = records_to_frame(EDGE_RECORDS, ("declared", "text"))
    pd.testing.assert_frame_equal(frame, value_by_value(EDGE_RECORDS, ("declared", "text")))
    assert list(frame.columns[:3]) == ["declared", "text", "whole"]
    assert frame.columns[-1] == "late"
    assert set(frame.dtypes.astype(str)) == {"string"}
    column = {name: frame[name].tolist() for name in frame.columns}
    assert column["declared"] == [pd.NA] * 3
    assert column["whole"] == ["1", "-5", pd.NA]
    assert column["flag"] == ["true", "false", pd.NA]
    assert column["real"] == ["1.0", "1e+20", "NaN"]
    assert column["object"] == ['{"k":"é","n":[1,2]}', "{}", pd.NA]
    assert column["list"] == ['[1,"x"]', "[]", pd.NA]
    assert column["mixed"] == ["1", "two", pd.NA]
    assert column["huge"] == [str(2**70), pd.NA, pd.NA]
    assert column["bool_int"] == ["true", "1", pd.NA]


def test_no_records_give_the_declared_columns_and_no_rows() -> None:
    empty = records_to_frame([], ("a", "b"))
    assert list(empty.columns) == ["a", "b"] and len(empty) == 0
    pd.testing.assert_frame_equal(empty, value_by_value([], ("a", "b")))
    assert records_to_frame([]).shape == (0, 0)


@pytest.mark.parametrize(
    "values",
    [
        ["2026-01-05T08:30:00-05:00", "2026-01-05T13:30:00Z", None, "2026-01-05T13:30:00.5+01:00"],
        ["2026-01-05T13:30:00", "2026-01-05T13:30:00Z"],  # one without an offset: UTC
        ["/Date(1501027200000)/", "2026-01-05T13:30:00Z"],  # OData V2
        [None, None],
    ],
)
def test_timestamp_marks_are_utc_instants_whatever_the_text(values: list[str | None]) -> None:
    column = pd.Series(values, dtype="string[pyarrow]", name="changed")
    parsed = marks(column, "timestamp")
    expected = [
        pd.NaT
        if value is None
        else pd.Timestamp(int(value[6:19]), unit="ms", tz="UTC")
        if value.startswith("/Date(")
        else pd.Timestamp(value).tz_localize("UTC")
        if pd.Timestamp(value).tzinfo is None
        else pd.Timestamp(value).tz_convert("UTC")
        for value in values
    ]
    assert str(parsed.dtype.tz) == "UTC" and parsed.name == "changed"
    assert parsed.tolist() == expected


# -- reading ahead ----------------------------------------------------------------------


class Source:
    """A page source that records how far it was read and whether it was closed."""

    def __init__(self, count: int, fail_at: int | None = None) -> None:
        self.count = count
        self.fail_at = fail_at
        self.error = ServerError(system="demo", status=503, detail="down")
        self.produced = 0
        self.closed = False
        self.read = threading.Condition()

    def pages(self) -> Iterator[int]:
        try:
            for number in range(1, self.count + 1):
                if number == self.fail_at:
                    raise self.error
                with self.read:
                    self.produced = number
                    self.read.notify_all()
                yield number
        finally:
            self.closed = True

    def wait_for(self, number: int) -> bool:
        with self.read:
            return self.read.wait_for(lambda: self.produced >= number, timeout=10)


def read_ahead_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("read-ahead")]


def test_pages_are_read_one_ahead_in_order() -> None:
    source = Source(5)
    pages = read_ahead(source.pages())
    assert next(pages) == 1
    assert source.wait_for(2)  # read while the caller holds page 1...
    threading.Event().wait(0.1)
    assert source.produced == 2  # ...and no further
    assert list(pages) == [2, 3, 4, 5]
    assert source.closed and not read_ahead_threads()


def test_an_error_reading_a_page_reaches_the_caller_as_raised() -> None:
    source = Source(5, fail_at=3)
    pages = read_ahead(source.pages())
    assert [next(pages), next(pages)] == [1, 2]
    with pytest.raises(ServerError) as raised:
        next(pages)
    assert raised.value is source.error and raised.value.status == 503
    assert source.closed and not read_ahead_threads()


def test_closing_early_closes_the_source_and_ends_the_thread() -> None:
    source = Source(100)
    pages = read_ahead(source.pages())
    assert next(pages) == 1
    pages.close()
    assert source.closed and source.produced <= 2  # page 2 was being read, or not yet
    assert not read_ahead_threads()


def test_the_source_sees_the_callers_context_variables() -> None:
    run = contextvars.ContextVar("run", default="none")
    run.set("run-7")

    def pages() -> Iterator[str]:
        yield run.get()

    assert list(read_ahead(pages())) == ["run-7"]


def test_a_failed_commit_keeps_the_cursor_of_the_last_committed_page(tmp_path: Path) -> None:
    """Page 2 is read ahead while page 1 is committed; when the run stops after page 1, the
    table's cursor is page 1's and nothing of page 2 is stored."""
    lake = DeltaLake(uri=str(tmp_path / "lake"))
    parts = ["bronze", "demo", "rows"]
    source = Source(3)

    def read_pages(since: Cursor | None) -> Iterator[Page]:
        for number in source.pages():
            frame = records_to_frame([{"id": str(number), "changed": f"2026-01-0{number}"}])
            yield Page(frame=frame, cursor=Cursor(number, frozenset(), "number"), number=number)

    def stop_after_first(page: Any) -> None:
        assert source.wait_for(2)  # page 2 is already read when page 1 is committed
        raise RuntimeError("stopped")

    with pytest.raises(RuntimeError, match="stopped"):
        extract_to_lake(read_pages, lake, parts, run_id="r", on_page=stop_after_first)
    cursor, version = committed_cursor(lake, parts)
    assert cursor == Cursor(1, frozenset(), "number") and version == 0
    assert lake.read(parts)["id"].tolist() == ["1"]
    assert source.closed and not read_ahead_threads()
