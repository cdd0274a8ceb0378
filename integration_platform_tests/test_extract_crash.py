"""An extraction killed with SIGKILL, then run again, leaves exactly the source's rows.

The extraction runs in a child process (``extract_to_lake`` over ``MaximoConnector``, as the
bronze asset calls it) against the Maximo contract server in this process. The test watches
the table's files, kills the child at a chosen point with SIGKILL (no cleanup, no ``finally``,
no flush), then runs the bronze asset to completion and compares the table with the server.
"""

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from integration_platform.connectors.extract import committed_cursor
from integration_platform.lake import DeltaLake
from integration_platform_tests.contract_servers import seed
from integration_platform_tests.contract_servers.maximo import (
    FIRST_ROWSTAMP,
    MaximoContractServer,
    rest_id,
)
from integration_platform_tests.test_extract import (
    WORK_ORDERS,
    assert_exactly_the_server,
    component,
    materialization,
    maximo_connection,
    run,
    table,
)

# The child: the bronze asset's code path without Dagster around it.
WORKER = """
import sys
from integration_platform.connectors.cmms.maximo import MaximoConnector
from integration_platform.connectors.extract import extract_to_lake
from integration_platform.lake import DeltaLake

base_url, lake_uri, page_size = sys.argv[1], sys.argv[2], int(sys.argv[3])
connector = MaximoConnector(
    base_url=base_url, api_key="contract-api-key", requests_per_second=0, max_attempts=1
)
extract_to_lake(
    lambda since: connector.read_work_orders(since=since, page_size=page_size),
    DeltaLake(uri=lake_uri),
    ["bronze", "maximo", "work_orders"],
    run_id=f"child-{sys.argv[4]}",
)
"""
DEADLINE_SECONDS = 60
# Not a multiple of the 7 rows sharing a change second: groups straddle page boundaries.
PAGE = 30


@pytest.fixture
def lake(data_dir: Path) -> DeltaLake:
    return DeltaLake(uri=str(data_dir / "lake"))


@pytest.fixture
def empty_maximo(tmp_path: Path) -> Iterator[MaximoContractServer]:
    server = MaximoContractServer(db_path=tmp_path / "maximo.db").start()
    yield server
    server.stop()


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, empty_maximo: MaximoContractServer) -> None:
    monkeypatch.setenv("MAXIMO_BASE_URL", empty_maximo.base_url)
    monkeypatch.setenv("MAXIMO_API_KEY", "contract-api-key")


def seed_many(server: MaximoContractServer, count: int) -> None:
    """``count`` work orders in one transaction; every 7 share a change second, so groups of
    equal timestamps straddle page boundaries (and kill points)."""
    rows = []
    for index in range(count):
        wonum, site = str(5000 + index), "BEDFORD" if index % 3 else "NASHUA"
        changed = seed.FIRST_CHANGE + timedelta(seconds=index // 7)
        record = {
            "wonum": wonum,
            "siteid": site,
            "orgid": "EAGLENA",
            "description": f"Replace bearing on pump P-{index % 50}",
            "status": "APPR",
            "worktype": "CM",
            "wopriority": index % 4 + 1,
            "changedate": seed.maximo_date(changed),
        }
        stamp = FIRST_ROWSTAMP + index
        rows.append(("workorder", rest_id([wonum, site]), stamp, json.dumps(record)))
    with sqlite3.connect(server.db_path) as db:
        db.executemany("INSERT INTO records VALUES (?, ?, ?, ?)", rows)


def assert_a_prefix_of_the_source(lake: DeltaLake, server: MaximoContractServer) -> None:
    """The table holds the first rows in read order (change time, then number), once each:
    nothing skipped before the kill point, nothing doubled."""
    rows = table(lake)
    stored = list(zip(rows["siteid"], rows["wonum"], strict=True))
    assert len(stored) == len(set(stored))
    source = sorted(server.store.all("workorder"), key=lambda r: (r["changedate"], int(r["wonum"])))
    assert set(stored) == {(r["siteid"], r["wonum"]) for r in source[: len(stored)]}


def log_dir(lake: DeltaLake) -> Path:
    return Path(lake.table_uri(WORK_ORDERS)) / "_delta_log"


def commits(lake: DeltaLake) -> int:
    """Committed versions (a commit is its log file: written whole, then renamed in)."""
    folder = log_dir(lake)
    return len(list(folder.glob("*.json"))) if folder.is_dir() else 0


def data_files(lake: DeltaLake) -> int:
    folder = Path(lake.table_uri(WORK_ORDERS))
    return len(list(folder.glob("*.parquet"))) if folder.is_dir() else 0


def kill_when(
    server: MaximoContractServer, lake: DeltaLake, page_size: int, ready: Callable[[], bool]
) -> int:
    """Start the child, SIGKILL it as soon as ``ready()``; its exit status."""
    child = subprocess.Popen(
        [sys.executable, "-c", WORKER, server.base_url, lake.root(), str(page_size), "1"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + DEADLINE_SECONDS
    try:
        while not ready():
            if child.poll() is not None:
                pytest.fail(f"the extraction ended before the kill point: {child.stderr.read()}")
            if time.monotonic() > deadline:
                pytest.fail("the extraction did not reach the kill point in time")
            time.sleep(0.002)
        os.kill(child.pid, signal.SIGKILL)
        return child.wait(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(timeout=30)
        assert child.stderr is not None
        child.stderr.close()


def test_killed_while_the_next_page_is_on_the_wire(
    tmp_path: Path, env: Any, empty_maximo: MaximoContractServer, lake: DeltaLake
) -> None:
    """Killed after page 2 is committed, while page 3 is being read: the table holds pages
    1-2 with their cursor, and a re-run adds exactly the rest."""
    maximo = empty_maximo.seed()
    maximo.slow_next(2, seconds=0)
    maximo.slow_next(1, seconds=3)  # holds page 3 back while the child waits for it
    # Page 3 is read ahead while page 2 is committed: kill once the server has the request
    # and page 2's commit is in the log.
    status = kill_when(maximo, lake, 5, lambda: len(maximo.requests) >= 3 and commits(lake) >= 2)
    assert status == -signal.SIGKILL
    assert len(table(lake)) == 10
    cursor, version = committed_cursor(lake, WORK_ORDERS)
    assert version == 1 and cursor is not None

    again = run(component(tmp_path, maximo_connection(maximo)), lake)
    assert again.success
    assert materialization(again)["rows_written"] == 13
    assert_exactly_the_server(lake, maximo)
    assert len(table(lake)) == len(seed.work_orders())


def test_killed_between_data_file_and_commit_twice_then_rerun(
    tmp_path: Path, env: Any, empty_maximo: MaximoContractServer, lake: DeltaLake
) -> None:
    """Killed as soon as the next page's data file exists (its commit may or may not be
    written yet), twice; an orphaned data file is never read, and nothing is lost."""
    seed_many(empty_maximo, 700)
    for target in (4, 11):
        before = commits(lake)
        status = kill_when(empty_maximo, lake, PAGE, lambda t=target: data_files(lake) >= t)
        assert status == -signal.SIGKILL
        assert commits(lake) > before
        assert_a_prefix_of_the_source(lake, empty_maximo)

    final = run(component(tmp_path, maximo_connection(empty_maximo, page_size=PAGE)), lake)
    assert final.success
    assert_exactly_the_server(lake, empty_maximo)
    assert len(table(lake)) == 700
