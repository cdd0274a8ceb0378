"""The contract every connector meets, run against real systems on this machine.

A connector joins with one ``pytest.param`` in ``HARNESSES`` (and a harness class in
``contract_servers/harness.py``). HTTP connectors run against their vendor's contract server
over loopback; the SQL connector against real PostgreSQL and a SQLite file.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pandas as pd
import pytest

from integration_platform.connectors.cursor import Cursor
from integration_platform.connectors.errors import (
    AuthenticationError,
    BadResponse,
    ServerError,
    Throttled,
)
from integration_platform_tests.contract_servers.harness import ConnectorHarness, SqlHarness
from integration_platform_tests.contract_servers.vendor_harnesses import (
    DynamicsHarness,
    FiixHarness,
    GenericRestHarness,
    HttpContract,
    MaximoContract,
    OracleHarness,
    SapHarness,
    UpKeepHarness,
)

PAGE = 5

HARNESSES = [
    pytest.param("maximo-oslc-apikey", id="maximo-oslc-apikey"),
    pytest.param("maximo-api-maxauth", id="maximo-api-maxauth"),
    pytest.param("sap-v2-basic", id="sap-v2-basic"),
    pytest.param("sap-v4-oauth2", id="sap-v4-oauth2"),
    pytest.param("dynamics", id="dynamics"),
    pytest.param("upkeep", id="upkeep"),
    pytest.param("fiix", id="fiix"),
    pytest.param("oracle", id="oracle"),
    pytest.param("generic-rest-upkeep", id="generic-rest-upkeep"),
    pytest.param("sql-sqlite", id="sql-sqlite"),
    pytest.param("sql-postgres", id="sql-postgres", marks=pytest.mark.postgres),
]


def build(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> ConnectorHarness:
    if kind == "maximo-oslc-apikey":
        return MaximoContract(tmp_path, context_root="/maximo/oslc", auth_method="apikey")
    if kind == "maximo-api-maxauth":
        return MaximoContract(tmp_path, context_root="/maximo/api", auth_method="maxauth")
    if kind == "sap-v2-basic":
        return SapHarness(tmp_path, odata_version="v2", auth_method="basic")
    if kind == "sap-v4-oauth2":
        return SapHarness(tmp_path, odata_version="v4", auth_method="oauth2")
    if kind == "dynamics":
        return DynamicsHarness(tmp_path)
    if kind == "upkeep":
        return UpKeepHarness(tmp_path)
    if kind == "fiix":
        return FiixHarness(tmp_path)
    if kind == "oracle":
        return OracleHarness(tmp_path)
    if kind == "generic-rest-upkeep":
        return GenericRestHarness(tmp_path)
    if kind == "sql-sqlite":
        return SqlHarness(f"sqlite:///{tmp_path / 'source.db'}")
    if kind == "sql-postgres":
        return SqlHarness(request.getfixturevalue("postgres_url"))
    raise AssertionError(kind)


@pytest.fixture(params=HARNESSES)
def harness(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ConnectorHarness]:
    built = build(request.param, tmp_path, request)
    yield built
    built.close()


@pytest.fixture(params=[p for p in HARNESSES if not str(p.values[0]).startswith("sql")])
def http_harness(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[HttpContract]:
    built = build(request.param, tmp_path, request)
    assert isinstance(built, HttpContract)
    yield built
    built.close()


def read_ids(
    harness: ConnectorHarness, connector: object, *, since: Cursor | None = None
) -> tuple[list[str], Cursor | None, int]:
    """Every id read (in order), the final cursor (through its durable JSON form), pages."""
    ids: list[str] = []
    cursor, pages = since, 0
    for page in harness.read(connector, since=since, page_size=PAGE):
        assert 0 < len(page.frame) <= PAGE
        ids.extend(harness.ids(page))
        cursor = page.cursor
        pages += 1
    if cursor is not None:
        cursor = Cursor.from_json(cursor.to_json())
    return ids, cursor, pages


def without_versions(harness: ConnectorHarness, cursor: Cursor) -> set[str]:
    """The canonical ids at the cursor's mark, without row versions."""
    if isinstance(harness, HttpContract):
        return harness.cursor_ids(cursor)
    return {record_id.split("@")[0] for record_id in cursor.ids_at_mark}


# -- every connector -----------------------------------------------------------------------


def test_pagination_reads_every_row_exactly_once(harness: ConnectorHarness) -> None:
    ids, cursor, pages = read_ids(harness, harness.connector())
    assert sorted(ids) == sorted(harness.seeded_ids())
    assert len(ids) == len(set(ids))
    assert pages == 5
    assert cursor is not None
    # The newest three orders share one timestamp: all three are listed at the mark.
    assert without_versions(harness, cursor) == {"BEDFORD/1021", "BEDFORD/1022", "BEDFORD/1023"}


def test_text_columns_are_arrow_backed(harness: ConnectorHarness) -> None:
    page = next(iter(harness.read(harness.connector(), since=None, page_size=PAGE)))
    columns = (
        harness.text_columns if isinstance(harness, HttpContract) else ("wonum", "description")
    )
    for column in columns:
        assert page.frame[column].dtype == pd.StringDtype("pyarrow")


def test_incremental_read_returns_exactly_the_new_rows(harness: ConnectorHarness) -> None:
    connector = harness.connector()
    _, cursor, _ = read_ids(harness, connector)
    assert cursor is not None
    mark = cursor.high_water_mark.to_pydatetime()
    if mark.tzinfo is None:
        mark = mark.replace(tzinfo=pd.Timestamp(0, tz="UTC").tzinfo)
    # Rows committed later but stamped with the SAME timestamp as the mark, and newer rows.
    same = harness.add_work_orders([2001, 2002], changed_at=mark)
    newer = harness.add_work_orders([2003], changed_at=mark + timedelta(minutes=5))

    ids, after, _ = read_ids(harness, connector, since=cursor)
    assert sorted(ids) == sorted(same | newer)
    assert after is not None and without_versions(harness, after) == newer

    again, unchanged, pages = read_ids(harness, connector, since=after)
    assert again == [] and pages == 0 and unchanged == after


def test_resuming_inside_an_equal_timestamp_group_skips_and_repeats_nothing(
    harness: ConnectorHarness,
) -> None:
    connector = harness.connector()
    first = next(iter(harness.read(connector, since=None, page_size=PAGE)))
    # The first page ends inside the group of five orders changed at 13:30 UTC.
    assert first.cursor is not None and len(first.cursor.ids_at_mark) == 2
    cursor = Cursor.from_json(first.cursor.to_json())
    rest, _, _ = read_ids(harness, connector, since=cursor)
    combined = harness.ids(first) + rest
    assert sorted(combined) == sorted(harness.seeded_ids())
    assert len(combined) == len(set(combined))


def test_health_check_ok(harness: ConnectorHarness) -> None:
    status = harness.connector().health_check()
    assert status.ok, status.detail
    assert status.latency_ms >= 0


def test_health_check_fails_when_the_system_is_down(harness: ConnectorHarness) -> None:
    status = harness.unreachable().health_check()
    assert not status.ok
    assert status.detail.split(":")[0].startswith(harness.name)


def test_write_back_is_visible_on_the_next_read(harness: ConnectorHarness) -> None:
    if not harness.writes:
        pytest.skip(f"{harness.name} is read-only")
    assert isinstance(harness, HttpContract)
    connector = harness.connector()
    _, cursor, _ = read_ids(harness, connector)
    created = harness.create(connector, "Investigate seal leak found on vibration route")
    ids, cursor, _ = read_ids(harness, connector, since=cursor)
    assert ids == [created]
    column, value = harness.update_and_expect(connector, created)
    pages = list(harness.read(connector, since=cursor, page_size=PAGE))
    frame = pd.concat([p.frame for p in pages])
    assert harness.column_of(frame, created, column) == [value]


# -- HTTP connectors: retries, errors, limits ----------------------------------------------


def test_throttling_is_retried_honouring_retry_after(http_harness: HttpContract) -> None:
    http_harness.server.throttle_next(1, retry_after="1")
    started = time.monotonic()
    ids, _, _ = read_ids(http_harness, http_harness.connector())
    assert sorted(ids) == sorted(http_harness.seeded_ids())
    assert time.monotonic() - started >= 0.95
    assert http_harness.data_statuses()[:2] == [429, 200]


def test_server_errors_are_retried_within_bounds(http_harness: HttpContract) -> None:
    http_harness.server.fail_next(1, status=500)
    http_harness.server.fail_next(1, status=503)
    ids, _, _ = read_ids(http_harness, http_harness.connector(max_attempts=3))
    assert sorted(ids) == sorted(http_harness.seeded_ids())


def test_persistent_server_errors_give_up_with_server_error(http_harness: HttpContract) -> None:
    http_harness.server.fail_next(10, status=503)
    with pytest.raises(ServerError) as caught:
        read_ids(http_harness, http_harness.connector(max_attempts=3))
    message = str(caught.value)
    assert message.startswith(f"{http_harness.name}: {http_harness.read_method} http://127.0.0.1")
    assert "HTTP 503" in message and "gave up after 3 attempts" in message
    assert http_harness.data_count() == 3


def test_persistent_throttling_gives_up_with_throttled(http_harness: HttpContract) -> None:
    http_harness.server.throttle_next(10, retry_after="0")
    with pytest.raises(Throttled) as caught:
        read_ids(http_harness, http_harness.connector(max_attempts=3))
    assert "HTTP 429" in str(caught.value) and "requests_per_second" in str(caught.value)
    assert http_harness.data_count() == 3


def test_retry_after_beyond_the_limit_fails_at_once(http_harness: HttpContract) -> None:
    http_harness.server.throttle_next(1, retry_after="3600")
    started = time.monotonic()
    with pytest.raises(Throttled) as caught:
        read_ids(http_harness, http_harness.connector(max_retry_after_seconds=60))
    assert time.monotonic() - started < 2
    assert "asks to wait 3600 s" in str(caught.value)
    assert http_harness.data_count() == 1


def test_refused_credentials_name_the_system_and_what_to_check(
    http_harness: HttpContract,
) -> None:
    connector = http_harness.connector(**http_harness.wrong_credentials())
    with pytest.raises(AuthenticationError) as caught:
        read_ids(http_harness, connector)
    message = str(caught.value)
    assert message.startswith(f"{http_harness.name}:") and "HTTP 401" in message
    assert http_harness.auth_marker in message and "Check " in message
    assert not any(secret in message for secret in http_harness.wrong_secrets())
    assert "wrong" not in message.split("Check")[0]
    assert http_harness.refused() == 1  # not retried, not logged in again


def test_malformed_json_is_a_bad_response_naming_the_url(http_harness: HttpContract) -> None:
    http_harness.server.malformed_next(1)
    with pytest.raises(BadResponse) as caught:
        read_ids(http_harness, http_harness.connector())
    message = str(caught.value)
    assert http_harness.read_prefix() in message
    assert "not valid JSON" in message
    assert http_harness.data_count() == 1  # not retried: the same request gets the same body


def test_a_slow_answer_times_out_and_is_retried(http_harness: HttpContract) -> None:
    http_harness.server.slow_next(1, seconds=1.0)
    ids, _, _ = read_ids(http_harness, http_harness.connector(read_timeout_seconds=0.3))
    assert sorted(ids) == sorted(http_harness.seeded_ids())


def test_rate_limit_spaces_requests(http_harness: HttpContract) -> None:
    connector = http_harness.connector(requests_per_second=10, burst=1)
    started = time.monotonic()
    _, _, pages = read_ids(http_harness, connector)
    # Five pages: the first at once, then one every 0.1 s.
    assert pages == 5
    assert time.monotonic() - started >= 0.38


# -- SQL specifics -------------------------------------------------------------------------


def test_sqlite_text_timestamps_in_mixed_formats_are_compared_as_instants(
    tmp_path: Path,
) -> None:
    """SQLite keeps timestamps as text; string comparison would skip ``13:30:00`` rows when
    the cursor is bound as ``13:30:00.000000``."""
    import sqlalchemy as sa

    from integration_platform.connectors.sql import SqlConnector

    url = f"sqlite:///{tmp_path / 'mixed.db'}"
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE readings (id TEXT PRIMARY KEY, changed DATETIME)"))
        conn.execute(
            sa.text(
                "INSERT INTO readings VALUES ('a', '2026-01-05 13:00:00'),"
                " ('b', '2026-01-05 13:30:00'), ('c', '2026-01-05 13:30:00.000000'),"
                " ('d', '2026-01-05 13:30:00.500000'), ('e', '2026-01-05 14:00:00')"
            )
        )
    engine.dispose()
    connector = SqlConnector(url=url)
    first = next(
        iter(
            connector.read_table(
                "readings", cursor_column="changed", key_columns=["id"], page_size=2
            )
        )
    )
    assert first.frame["id"].tolist() == ["a", "b"]
    rest = connector.read_table(
        "readings", cursor_column="changed", key_columns=["id"], since=first.cursor
    )
    assert [i for page in rest for i in page.frame["id"]] == ["c", "d", "e"]
