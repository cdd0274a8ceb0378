"""Maintenance schedules changed in the source, for every connector that reads them.

A connector joins with one name in ``SCHEDULE_HARNESSES``
(``contract_servers/schedule_harnesses.py``); its reads are checked with the other entities
in ``test_connectors_entities.py``. No connector writes schedules, so the change is made in
the vendor's store as a planner would make it: the next incremental read must return that
schedule alone and once, through the vendor's modified-time filter (or the client-side one).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from integration_platform_tests.contract_servers.entity_harnesses import read_all
from integration_platform_tests.contract_servers.schedule_harnesses import (
    CHANGED_PM,
    CHANGED_TEXT,
    SCHEDULE_HARNESSES,
    ScheduleContract,
    build,
)


@pytest.fixture(params=SCHEDULE_HARNESSES)
def schedules(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ScheduleContract]:
    built = build(request.param, tmp_path)
    yield built
    built.close()


def test_a_schedule_changed_in_the_source_is_read_back_alone(
    schedules: ScheduleContract,
) -> None:
    connector = schedules.connector()
    _, _, cursor = read_all(schedules, connector)
    assert cursor is not None
    schedules.change(CHANGED_PM, CHANGED_TEXT)
    changed, rows, after = read_all(schedules, connector, since=cursor)
    assert changed == [CHANGED_PM]
    assert rows[schedules.text_column].tolist() == [CHANGED_TEXT]
    assert read_all(schedules, connector, since=after)[0] == []
