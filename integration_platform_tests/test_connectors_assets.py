"""The asset contract every connector that reads assets meets, against its contract server.

A connector joins with one name in ``ASSET_HARNESSES`` (``contract_servers/asset_harnesses.py``).
Reads are checked for completeness and exact cursors; where the vendor's API allows updates
(Maximo ``mxasset`` PATCH by href, SAP equipment, Fiix ``ChangeRequest`` on ``Asset``, Oracle
``installedBaseAssets``), an update must show up, alone and once, on the next incremental read.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from integration_platform.connectors.cursor import Cursor
from integration_platform_tests.contract_servers.asset_harnesses import (
    ASSET_HARNESSES,
    UPDATED_ASSET,
    AssetContract,
    build,
)

PAGE = 4


@pytest.fixture(params=ASSET_HARNESSES)
def assets(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[AssetContract]:
    built = build(request.param, tmp_path)
    yield built
    built.close()


def read_all(
    assets: AssetContract, connector: object, *, since: Cursor | None = None
) -> tuple[list[str], pd.DataFrame, Cursor | None]:
    """Asset numbers in read order, the rows, and the final cursor (through its JSON form)."""
    numbers: list[str] = []
    frames = []
    cursor = since
    for page in assets.read(connector, since=since, page_size=PAGE):
        assert len(page.frame) > 0
        numbers += assets.numbers(page)
        frames.append(page.frame)
        cursor = page.cursor
    if cursor is not None:
        cursor = Cursor.from_json(cursor.to_json())
    rows = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    return numbers, rows, cursor


def test_every_asset_is_read_once_and_nothing_after_the_cursor(assets: AssetContract) -> None:
    connector = assets.connector()
    numbers, _, cursor = read_all(assets, connector)
    assert sorted(numbers) == sorted(assets.seeded_numbers())
    assert len(numbers) == len(set(numbers))
    assert cursor is not None
    again, _, after = read_all(assets, connector, since=cursor)
    assert again == [] and after == cursor


def test_resuming_after_the_first_page_repeats_and_skips_nothing(assets: AssetContract) -> None:
    connector = assets.connector()
    first = next(iter(assets.read(connector, since=None, page_size=PAGE)))
    assert first.cursor is not None
    rest, _, _ = read_all(assets, connector, since=Cursor.from_json(first.cursor.to_json()))
    combined = assets.numbers(first) + rest
    assert sorted(combined) == sorted(assets.seeded_numbers())


def test_an_update_is_read_back_alone_on_the_next_incremental_read(
    assets: AssetContract,
) -> None:
    if not assets.writes:
        pytest.skip(f"{assets.name}: assets are read-only")
    connector = assets.connector()
    numbers, rows, cursor = read_all(assets, connector)
    row = rows.iloc[numbers.index(UPDATED_ASSET)].to_dict()
    expected = assets.update(connector, row)
    changed, changed_rows, _ = read_all(assets, connector, since=cursor)
    assert changed == [UPDATED_ASSET]
    assert changed_rows[assets.text_column].tolist() == [expected]
