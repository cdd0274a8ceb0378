"""UpKeep specifics beyond the shared contract: the session life cycle and the client-side
incremental filter."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from integration_platform_tests.contract_servers.vendor_harnesses import UpKeepHarness


@pytest.fixture
def upkeep(tmp_path: Path) -> Iterator[UpKeepHarness]:
    harness = UpKeepHarness(tmp_path)
    yield harness
    harness.close()


def test_session_is_opened_once_renewed_on_401_and_closed(upkeep: UpKeepHarness) -> None:
    connector = upkeep.connector()
    assert len([r for p in connector.read_work_orders(page_size=10) for r in p.frame["id"]]) == 23
    logins = [r for r in upkeep.server.requests if r.path.endswith("/auth")]
    assert len(logins) == 1
    assert upkeep.server.data_requests()[0].headers["session-token"].startswith("r:session")
    upkeep.server.sessions.clear()  # the session expired on UpKeep's side
    list(connector.read_work_orders(page_size=10))  # logs in again, once
    assert len([r for r in upkeep.server.requests if r.path.endswith("/auth")]) == 2
    assert connector.health_check().ok
    connector.close()
    assert upkeep.server.logouts == 1 and not upkeep.server.sessions
    assert upkeep.server.requests[-1].method == "DELETE"


def test_incremental_reads_filter_on_updated_at_in_the_client(upkeep: UpKeepHarness) -> None:
    connector = upkeep.connector()
    pages = list(connector.read_work_orders(page_size=5))
    # UpKeep lists newest-created first; the pages come out in updatedAt order regardless.
    stamps = [s for p in pages for s in p.frame["updatedAt"]]
    assert stamps == sorted(stamps)
    assert all("updatedAt" not in "".join(r.query) for r in upkeep.server.data_requests())
    assert list(connector.read_work_orders(since=pages[-1].cursor, page_size=5)) == []
