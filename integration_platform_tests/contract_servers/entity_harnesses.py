"""The base of the entity contracts (assets, maintenance schedules): one connector's entity
against its vendor's contract server, translated to the seed's numbers.

An entity contract wraps the connector's work-order harness (same server, same credentials),
so the suite's HTTP checks (faults, refused credentials, health) reach the entity's reads
through the harness's knobs. ``asset_harnesses.py`` and ``schedule_harnesses.py`` hold the
contracts; ``test_connectors_entities.py`` runs the checks every one of them meets, and
:func:`read_all` is how those tests and the write tests read an entity.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any, ClassVar

import pandas as pd

from integration_platform.connectors.base import Page
from integration_platform.connectors.cursor import Cursor
from integration_platform_tests.contract_servers.vendor_harnesses import HttpContract

PAGE = 3  # records per page: every seed spans several pages


class EntityContract:
    """A connector's entity under contract."""

    # The entity as a connection names it: the connector reads it with read_<entity>.
    entity: ClassVar[str]
    name: ClassVar[str]
    # Column holding the record's number (translated through ``canon``), and a text column
    # that changes show in.
    number_column: ClassVar[str]
    text_column: ClassVar[str] = ""
    # Part of the URL of the entity's reads, which an error message must name.
    resource: ClassVar[str] = ""

    def __init__(self, harness: HttpContract) -> None:
        self.harness = harness
        # The vendor's ids -> the seed's numbers.
        self.canon: dict[str, str] = {}

    def connector(self, **overrides: Any) -> Any:
        return self.harness.connector(**overrides)

    def read(self, connector: Any, *, since: Cursor | None, page_size: int) -> Iterator[Page]:
        return getattr(connector, f"read_{self.entity}")(since=since, page_size=page_size)

    def seeded_numbers(self) -> set[str]:
        raise NotImplementedError

    def numbers(self, page: Page) -> list[str]:
        return [self.canon.get(str(v), str(v)) for v in page.frame[self.number_column]]

    def close(self) -> None:
        self.harness.close()


def now() -> datetime:
    """A change time later than every seeded one (the seeds are in the past)."""
    return datetime.now(UTC).replace(microsecond=0)


def read_all(
    contract: EntityContract,
    connector: Any,
    *,
    since: Cursor | None = None,
    page_size: int = PAGE,
) -> tuple[list[str], pd.DataFrame, Cursor | None]:
    """Every page after ``since``: the seed's numbers in read order, the rows, and the final
    cursor (through its JSON form, as a run stores it). A connector yields no empty page."""
    numbers: list[str] = []
    frames = []
    cursor = since
    for page in contract.read(connector, since=since, page_size=page_size):
        assert len(page.frame) > 0
        numbers += contract.numbers(page)
        frames.append(page.frame)
        cursor = page.cursor
    if cursor is not None:
        cursor = Cursor.from_json(cursor.to_json())
    rows = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    return numbers, rows, cursor
