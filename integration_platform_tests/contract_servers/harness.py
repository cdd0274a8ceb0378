"""One harness per connector: how the shared contract suite builds, reads and changes it.

A connector joins the suite by adding a harness here and one ``pytest.param`` in
``test_connectors_contract.py``. Capabilities (``http``, ``writes``) decide which contract
tests apply.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

import sqlalchemy as sa

from integration_platform.connectors.base import Page
from integration_platform.connectors.cmms.maximo import MaximoConnector
from integration_platform.connectors.cursor import Cursor
from integration_platform.connectors.sql import SqlConnector
from integration_platform_tests.contract_servers import seed
from integration_platform_tests.contract_servers.maximo import MaximoContractServer

# Fast, bounded retries for tests: the behaviour is the same, the waits are short.
FAST_RETRIES: dict[str, Any] = {
    "max_attempts": 3,
    "backoff_seconds": 0.01,
    "max_backoff_seconds": 0.05,
    "requests_per_second": 0,
}


class ConnectorHarness(ABC):
    """A connector under contract, its system started and seeded with ``seed.work_orders``."""

    name: ClassVar[str]
    http: ClassVar[bool] = False
    writes: ClassVar[bool] = False
    key_fields: ClassVar[tuple[str, str]] = ("siteid", "wonum")

    @abstractmethod
    def connector(self, **overrides: Any) -> Any: ...

    @abstractmethod
    def read(self, connector: Any, *, since: Cursor | None, page_size: int) -> Iterator[Page]: ...

    @abstractmethod
    def add_work_orders(self, numbers: list[int], *, changed_at: datetime) -> set[str]:
        """Store new work orders changed at exactly ``changed_at``; their ids."""

    @abstractmethod
    def unreachable(self) -> Any:
        """A connector whose system is down or absent."""

    def seeded_ids(self) -> set[str]:
        return {f"{o['siteid']}/{o['wonum']}" for o in seed.work_orders()}

    def ids(self, page: Page) -> list[str]:
        frame = page.frame
        return [f"{s}/{w}" for s, w in zip(frame["siteid"], frame["wonum"], strict=True)]

    def close(self) -> None:
        return None


class MaximoHarness(ConnectorHarness):
    name = "maximo"
    http = True
    writes = True

    def __init__(self, tmp_path: Path, *, context_root: str, auth_method: str) -> None:
        self.server = MaximoContractServer(tmp_path / "maximo.db", context_root=context_root)
        self.server.seed().start()
        self.context_root = context_root
        self.auth_method = auth_method
        self._written: dict[str, dict[str, Any]] = {}

    def credentials(self) -> dict[str, Any]:
        if self.auth_method == "apikey":
            return {"auth_method": "apikey", "api_key": self.server.api_keys[0]}
        return {"auth_method": self.auth_method, "username": "maxadmin", "password": "maxadmin"}

    def wrong_credentials(self) -> dict[str, Any]:
        if self.auth_method == "apikey":
            return {"auth_method": "apikey", "api_key": "revoked-key"}
        return {"auth_method": self.auth_method, "username": "maxadmin", "password": "wrong"}

    def connector(self, **overrides: Any) -> MaximoConnector:
        options = {
            "base_url": self.server.base_url,
            "context_root": self.context_root,
            **self.credentials(),
            **FAST_RETRIES,
            **overrides,
        }
        return MaximoConnector(**options)

    def read(self, connector: Any, *, since: Cursor | None, page_size: int) -> Iterator[Page]:
        return connector.read_work_orders(since=since, page_size=page_size)

    def add_work_orders(self, numbers: list[int], *, changed_at: datetime) -> set[str]:
        for number in numbers:
            self.server.put_work_order(
                {
                    "wonum": str(number),
                    "siteid": "BEDFORD",
                    "description": f"Follow-up inspection {number}",
                    "status": "WAPPR",
                    "changedate": seed.maximo_date(changed_at),
                }
            )
        return {f"BEDFORD/{n}" for n in numbers}

    def unreachable(self) -> MaximoConnector:
        connector = self.connector()
        self.server.stop()
        return connector

    def create(self, connector: MaximoConnector, description: str) -> str:
        record = connector.create_work_order(
            {"siteid": "BEDFORD", "description": description, "assetnum": "11430"}
        )
        record_id = f"{record['siteid']}/{record['wonum']}"
        self._written[record_id] = record
        return record_id

    def update(self, connector: MaximoConnector, record_id: str, status: str) -> None:
        record = self._written[record_id]
        updated = connector.update_work_order(
            record["href"], {"status": status}, rowstamp=record["_rowstamp"]
        )
        self._written[record_id] = updated

    def status_field(self) -> str:
        return "status"

    def close(self) -> None:
        self.server.stop()


class SqlHarness(ConnectorHarness):
    """The same work orders in a database table (``changedate`` a real timestamp column)."""

    name = "sql"

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = sa.create_engine(url)
        self.aware = self.engine.dialect.name != "sqlite"
        metadata = sa.MetaData()
        self.table = sa.Table(
            "work_orders",
            metadata,
            sa.Column("siteid", sa.String(8), primary_key=True),
            sa.Column("wonum", sa.String(12), primary_key=True),
            sa.Column("description", sa.String(200)),
            sa.Column("status", sa.String(12)),
            sa.Column("wopriority", sa.Integer),
            sa.Column("changedate", sa.DateTime(timezone=self.aware), nullable=False),
        )
        metadata.create_all(self.engine)
        with self.engine.begin() as conn:
            conn.execute(
                self.table.insert(),
                [
                    {
                        "siteid": o["siteid"],
                        "wonum": o["wonum"],
                        "description": o["description"],
                        "status": o["status"],
                        "wopriority": o["wopriority"],
                        "changedate": self._stamp(datetime.fromisoformat(str(o["changedate"]))),
                    }
                    for o in seed.work_orders()
                ],
            )

    def _stamp(self, moment: datetime) -> datetime:
        moment = moment.astimezone(UTC)
        return moment if self.aware else moment.replace(tzinfo=None)

    def connector(self, **overrides: Any) -> SqlConnector:
        return SqlConnector(
            url=self.url, system_name=f"sql-{self.engine.dialect.name}", **overrides
        )

    def read(self, connector: Any, *, since: Cursor | None, page_size: int) -> Iterator[Page]:
        return connector.read_table(
            "work_orders",
            cursor_column="changedate",
            key_columns=self.key_fields,
            since=since,
            page_size=page_size,
        )

    def add_work_orders(self, numbers: list[int], *, changed_at: datetime) -> set[str]:
        with self.engine.begin() as conn:
            conn.execute(
                self.table.insert(),
                [
                    {
                        "siteid": "BEDFORD",
                        "wonum": str(n),
                        "description": f"Follow-up inspection {n}",
                        "status": "WAPPR",
                        "changedate": self._stamp(changed_at),
                    }
                    for n in numbers
                ],
            )
        return {f"BEDFORD/{n}" for n in numbers}

    def unreachable(self) -> SqlConnector:
        if self.engine.dialect.name == "sqlite":
            url = f"sqlite:///{Path(self.engine.url.database or '.').parent}/missing/dir/x.db"
        else:
            url = self.engine.url.set(port=1).render_as_string(hide_password=False)
        return SqlConnector(url=url, system_name="sql-down", connect_timeout_seconds=2)

    def close(self) -> None:
        self.engine.dispose()
