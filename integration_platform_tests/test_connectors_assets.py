"""Asset writes every connector that writes assets meets, against its contract server.

A connector joins with one name in ``ASSET_HARNESSES`` (``contract_servers/asset_harnesses.py``);
its reads are checked with the other entities in ``test_connectors_entities.py``. Where the
vendor's API allows updates (Maximo ``mxasset`` PATCH by href, SAP equipment, Fiix
``ChangeRequest`` on ``Asset``, Oracle ``installedBaseAssets``, UpKeep ``/assets``, Dynamics
``msdyn_customerassets`` with ``If-Match``), an update must show up, alone and once, on the next
incremental read; where it allows creates (Maximo, UpKeep, Dynamics), so must a created
asset.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from integration_platform.connectors.cursor import Cursor
from integration_platform_tests.contract_servers.asset_harnesses import (
    ASSET_HARNESSES,
    CREATED_TEXT,
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


def test_a_created_asset_is_read_back_alone_on_the_next_incremental_read(
    assets: AssetContract,
) -> None:
    if not assets.creates:
        pytest.skip(f"{assets.name}: assets are created in the system itself")
    connector = assets.connector()
    _, _, cursor = read_all(assets, connector)
    number = assets.create(connector, CREATED_TEXT)
    created, rows, after = read_all(assets, connector, since=cursor)
    assert created == [number]
    assert rows[assets.text_column].tolist() == [CREATED_TEXT]
    assert read_all(assets, connector, since=after)[0] == []
