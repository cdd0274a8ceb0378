"""Harnesses of the HTTP connectors for the shared contract suite.

Each vendor names its records its own way; a harness translates them to the suite's
canonical ids (``SITE/WONUM`` of ``seed.work_orders``), so one suite checks every connector.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any, ClassVar

from integration_platform.connectors.base import Page
from integration_platform.connectors.cursor import Cursor
from integration_platform_tests.contract_servers import seed
from integration_platform_tests.contract_servers.harness import (
    FAST_RETRIES,
    ConnectorHarness,
    MaximoHarness,
)

SITES = ("BEDFORD", "NASHUA")


class HttpContract(ConnectorHarness):
    """What the suite's HTTP checks need beyond reading: the server's request log and the
    vendor's way of saying things."""

    http = True
    # Two text columns checked to be Arrow-backed.
    text_columns: ClassVar[tuple[str, str]] = ("wonum", "description")
    # Text the vendor puts in an authentication refusal.
    auth_marker: ClassVar[str] = ""
    read_method: ClassVar[str] = "GET"
    server: Any

    def __init__(self) -> None:
        self.canon: dict[str, str] = {}
        self._written: dict[str, dict[str, Any]] = {}

    def read_prefix(self) -> str:
        """How a data read starts in an error message (method and URL up to the query)."""
        raise NotImplementedError

    def wrong_secrets(self) -> tuple[str, ...]:
        """Secrets of ``wrong_credentials`` that no message may show."""
        return ()

    def wrong_credentials(self) -> dict[str, Any]:
        raise NotImplementedError

    def data_statuses(self) -> list[int]:
        return [r.status for r in self.server.data_requests()]

    def data_count(self) -> int:
        return self.server.count(self.read_method)

    def refused(self) -> int:
        return self.server.refused()

    def cursor_ids(self, cursor: Cursor) -> set[str]:
        return {self.canon.get(i.split("@")[0], i.split("@")[0]) for i in cursor.ids_at_mark}

    def create(self, connector: Any, description: str) -> str:
        raise NotImplementedError

    def update_and_expect(self, connector: Any, record_id: str) -> tuple[str, str]:
        """Change the record; the column and the value the next read must show."""
        raise NotImplementedError

    def column_of(self, frame: Any, record_id: str, column: str) -> list[str]:
        ids = self.frame_ids(frame)
        return [v for v, i in zip(frame[column], ids, strict=True) if i == record_id]

    def frame_ids(self, frame: Any) -> list[str]:
        raise NotImplementedError

    def ids(self, page: Page) -> list[str]:
        return self.frame_ids(page.frame)

    def unreachable(self) -> Any:
        connector = self.connector()
        self.server.stop()
        return connector

    def close(self) -> None:
        self.server.stop()


class MaximoContract(MaximoHarness, HttpContract):
    """Maximo's harness with the generic members (its own API predates them)."""

    auth_marker = "BMXAA"

    def __init__(self, tmp_path: Path, *, context_root: str, auth_method: str) -> None:
        HttpContract.__init__(self)
        MaximoHarness.__init__(self, tmp_path, context_root=context_root, auth_method=auth_method)

    def read_prefix(self) -> str:
        return f"GET {self.server.api_url}/os/mxwo?"

    def wrong_secrets(self) -> tuple[str, ...]:
        return ("revoked-key",) if self.auth_method == "apikey" else ()

    def data_statuses(self) -> list[int]:
        return [r.status for r in self.server.requests]

    def data_count(self) -> int:
        return self.server.count()

    def refused(self) -> int:
        return sum(1 for r in self.server.requests if r.status in (401, 403))

    def cursor_ids(self, cursor: Cursor) -> set[str]:
        return {i.split("@")[0] for i in cursor.ids_at_mark}

    def frame_ids(self, frame: Any) -> list[str]:
        return [f"{s}/{w}" for s, w in zip(frame["siteid"], frame["wonum"], strict=True)]

    def ids(self, page: Page) -> list[str]:
        return self.frame_ids(page.frame)

    def update_and_expect(self, connector: Any, record_id: str) -> tuple[str, str]:
        self.update(connector, record_id, "INPRG")
        return "status", "INPRG"

    def unreachable(self) -> Any:
        return MaximoHarness.unreachable(self)

    def close(self) -> None:
        MaximoHarness.close(self)


# -- SAP -----------------------------------------------------------------------------------


class SapHarness(HttpContract):
    name = "sap"
    writes = True
    text_columns = ("MaintenanceOrder", "MaintenanceOrderDesc")

    def __init__(self, tmp_path: Path, *, odata_version: str, auth_method: str) -> None:
        from integration_platform_tests.contract_servers import sap

        super().__init__()
        self.sap = sap
        self.server = sap.SapContractServer(tmp_path / "sap.db").seed().start()
        self.odata_version = odata_version
        self.auth_method = auth_method
        self.auth_marker = "Logon failed" if auth_method == "basic" else "invalid_client"
        for order in seed.work_orders():
            self.canon[sap.order_number(str(order["wonum"]))] = (
                f"{order['siteid']}/{order['wonum']}"
            )

    def credentials(self) -> dict[str, Any]:
        if self.auth_method == "basic":
            return {"auth_method": "basic", "username": "INTEGRATION", "password": "Welcome1"}
        return {
            "auth_method": "oauth2",
            "client_id": self.server.client_id,
            "client_secret": self.server.client_secret,
            "token_url": "/oauth/token",
        }

    def wrong_credentials(self) -> dict[str, Any]:
        if self.auth_method == "basic":
            return {"auth_method": "basic", "username": "INTEGRATION", "password": "Wrong-Pass1"}
        return {**self.credentials(), "client_secret": "leaked-secret"}

    def wrong_secrets(self) -> tuple[str, ...]:
        return ("Wrong-Pass1", "leaked-secret")

    def connector(self, **overrides: Any) -> Any:
        from integration_platform.connectors.erp.sap import SapConnector

        options = {
            "base_url": self.server.base_url,
            "odata_version": self.odata_version,
            "sap_client": "100",
            **self.credentials(),
            **FAST_RETRIES,
            **overrides,
        }
        return SapConnector(**options)

    def read_prefix(self) -> str:
        root = self.sap.ORDERS_V2 if self.odata_version == "v2" else self.sap.ORDERS_V4
        return f"GET {self.server.base_url}{root}/MaintenanceOrder?"

    def read(self, connector: Any, *, since: Cursor | None, page_size: int) -> Iterator[Page]:
        return connector.read_work_orders(since=since, page_size=page_size)

    def add_work_orders(self, numbers: list[int], *, changed_at: datetime) -> set[str]:
        for number in numbers:
            order = follow_up(number, changed_at)
            self.server.put_order(self.sap.sap_order(order))
            self.canon[self.sap.order_number(number)] = f"BEDFORD/{number}"
        return {f"BEDFORD/{n}" for n in numbers}

    def frame_ids(self, frame: Any) -> list[str]:
        return [self.canon.get(o, o) for o in frame["MaintenanceOrder"]]

    def create(self, connector: Any, description: str) -> str:
        record = connector.create_work_order(
            {
                "MaintenanceOrderType": "PM01",
                "MaintenanceOrderDesc": description,
                "MaintenancePlanningPlant": "1010",
                "Equipment": "10011430",
            }
        )
        order = record["MaintenanceOrder"]
        self.canon[order] = f"BEDFORD/{int(order) - self.sap.ORDER_BASE}"
        self._written[self.canon[order]] = record
        return self.canon[order]

    def update_and_expect(self, connector: Any, record_id: str) -> tuple[str, str]:
        record = self._written[record_id]
        text = "Seal replaced; monitor vibration for a week"
        etag = record.get("@odata.etag") or record.get("__metadata", {}).get("etag")
        connector.update_work_order(
            record["MaintenanceOrder"], {"MaintenanceOrderDesc": text}, etag=etag
        )
        return "MaintenanceOrderDesc", text


def follow_up(number: int, changed_at: datetime) -> dict[str, Any]:
    """A new work order in the seed's terms, changed at ``changed_at``."""
    return {
        "wonum": number,
        "siteid": "BEDFORD",
        "description": f"Follow-up inspection {number}",
        "status": "WAPPR",
        "worktype": "CM",
        "changedate": changed_at.isoformat(),
    }


# -- Dynamics 365 / Dataverse --------------------------------------------------------------


class DynamicsHarness(HttpContract):
    name = "dynamics"
    writes = True
    text_columns = ("msdyn_name", "msdyn_workordersummary")
    auth_marker = "invalid_client"

    def __init__(self, tmp_path: Path) -> None:
        from integration_platform_tests.contract_servers import dynamics

        super().__init__()
        self.dynamics = dynamics
        self.server = dynamics.DynamicsContractServer(tmp_path / "dataverse.db").seed().start()
        for order in seed.work_orders():
            record_id = f"{order['siteid']}/{order['wonum']}"
            self.canon[dynamics.work_order_id(record_id)] = record_id

    def credentials(self) -> dict[str, Any]:
        return {
            "client_id": self.server.client_id,
            "client_secret": self.server.client_secret,
            "token_url": self.dynamics.TOKEN_PATH,
        }

    def wrong_credentials(self) -> dict[str, Any]:
        return {**self.credentials(), "client_secret": "expired-secret"}

    def wrong_secrets(self) -> tuple[str, ...]:
        return ("expired-secret",)

    def connector(self, **overrides: Any) -> Any:
        from integration_platform.connectors.erp.dynamics import DynamicsConnector

        options = {"base_url": self.server.base_url, **self.credentials(), **FAST_RETRIES}
        return DynamicsConnector(**{**options, **overrides})

    def read_prefix(self) -> str:
        return f"GET {self.server.api_url}/msdyn_workorders?"

    def read(self, connector: Any, *, since: Cursor | None, page_size: int) -> Iterator[Page]:
        return connector.read_work_orders(since=since, page_size=page_size)

    def add_work_orders(self, numbers: list[int], *, changed_at: datetime) -> set[str]:
        for number in numbers:
            order = follow_up(number, changed_at)
            self.server.put_order(self.dynamics.dataverse_order(order))
            self.canon[self.dynamics.work_order_id(f"BEDFORD/{number}")] = f"BEDFORD/{number}"
        return {f"BEDFORD/{n}" for n in numbers}

    def frame_ids(self, frame: Any) -> list[str]:
        return [self.canon.get(i, i) for i in frame["msdyn_workorderid"]]

    def create(self, connector: Any, description: str) -> str:
        record_id = f"BEDFORD/{3000 + len(self._written)}"
        row = connector.create_work_order(
            {
                "msdyn_workorderid": self.dynamics.work_order_id(record_id),
                "msdyn_workordersummary": description,
            }
        )
        self.canon[row["msdyn_workorderid"]] = record_id
        self._written[record_id] = row
        return record_id

    def update_and_expect(self, connector: Any, record_id: str) -> tuple[str, str]:
        row = self._written[record_id]
        connector.update_work_order(
            row["msdyn_workorderid"], {"msdyn_systemstatus": 690970002}, etag=row["@odata.etag"]
        )
        return "msdyn_systemstatus", "690970002"


# -- UpKeep --------------------------------------------------------------------------------


class UpKeepHarness(HttpContract):
    name = "upkeep"
    writes = True
    text_columns = ("workOrderNo", "title")
    auth_marker = "Invalid email or password"

    def __init__(self, tmp_path: Path) -> None:
        from integration_platform_tests.contract_servers import upkeep

        super().__init__()
        self.upkeep = upkeep
        self.server = upkeep.UpKeepContractServer(tmp_path / "upkeep.db").seed().start()
        for order in seed.work_orders():
            self.canon[f"wo{order['wonum']}"] = f"{order['siteid']}/{order['wonum']}"

    def wrong_credentials(self) -> dict[str, Any]:
        return {"email": self.server.email, "password": "not-the-pass"}

    def wrong_secrets(self) -> tuple[str, ...]:
        return ("not-the-pass",)

    def connector(self, **overrides: Any) -> Any:
        from integration_platform.connectors.cmms.upkeep import UpKeepConnector

        options = {
            "base_url": self.server.base_url,
            "email": self.server.email,
            "password": self.server.password,
            **FAST_RETRIES,
        }
        return UpKeepConnector(**{**options, **overrides})

    def read_prefix(self) -> str:
        return f"GET {self.server.api_url}/work-orders?"

    def read(self, connector: Any, *, since: Cursor | None, page_size: int) -> Iterator[Page]:
        return connector.read_work_orders(since=since, page_size=page_size)

    def add_work_orders(self, numbers: list[int], *, changed_at: datetime) -> set[str]:
        for number in numbers:
            order = follow_up(number, changed_at)
            self.server.put_order(self.upkeep.upkeep_order(order))
            self.canon[f"wo{number}"] = f"BEDFORD/{number}"
        return {f"BEDFORD/{n}" for n in numbers}

    def frame_ids(self, frame: Any) -> list[str]:
        return [self.canon.get(i, i) for i in frame["id"]]

    def create(self, connector: Any, description: str) -> str:
        row = connector.create_work_order(
            {"title": description, "location": "locBEDFORD", "category": "Mechanical"}
        )
        self.canon[row["id"]] = f"BEDFORD/{row['workOrderNo']}"
        self._written[self.canon[row["id"]]] = row
        return self.canon[row["id"]]

    def update_and_expect(self, connector: Any, record_id: str) -> tuple[str, str]:
        connector.update_work_order(self._written[record_id]["id"], {"status": "inProgress"})
        return "status", "inProgress"


# -- Fiix ----------------------------------------------------------------------------------


class FiixHarness(HttpContract):
    name = "fiix"
    writes = True
    text_columns = ("strCode", "strDescription")
    auth_marker = "signature is not valid"
    read_method = "POST"

    def __init__(self, tmp_path: Path) -> None:
        from integration_platform_tests.contract_servers import fiix

        super().__init__()
        self.fiix = fiix
        self.server = fiix.FiixContractServer(tmp_path / "fiix.db").seed().start()
        for order in seed.work_orders():
            self.canon[str(order["wonum"])] = f"{order['siteid']}/{order['wonum']}"

    def credentials(self) -> dict[str, Any]:
        return {
            "app_key": self.server.app_key,
            "access_key": self.server.access_key,
            "api_secret": self.server.secret,
        }

    def wrong_credentials(self) -> dict[str, Any]:
        return {**self.credentials(), "api_secret": "rotated-secret"}

    def wrong_secrets(self) -> tuple[str, ...]:
        return ("rotated-secret", self.server.access_key)

    def connector(self, **overrides: Any) -> Any:
        from integration_platform.connectors.cmms.fiix import FiixConnector

        options = {"base_url": self.server.base_url, **self.credentials(), **FAST_RETRIES}
        return FiixConnector(**{**options, **overrides})

    def read_prefix(self) -> str:
        return f"POST {self.server.api_url}?service=cmms&appKey=***"

    def read(self, connector: Any, *, since: Cursor | None, page_size: int) -> Iterator[Page]:
        return connector.read_work_orders(since=since, page_size=page_size)

    def add_work_orders(self, numbers: list[int], *, changed_at: datetime) -> set[str]:
        for number in numbers:
            order = follow_up(number, changed_at)
            self.server.put("workorder", self.fiix.fiix_order(order))
            self.canon[str(number)] = f"BEDFORD/{number}"
        return {f"BEDFORD/{n}" for n in numbers}

    def frame_ids(self, frame: Any) -> list[str]:
        return [self.canon.get(i, i) for i in frame["id"]]

    def create(self, connector: Any, description: str) -> str:
        row = connector.create_work_order(
            {"strDescription": description, "intSiteID": 1, "strAssetIds": "11430"}
        )
        record_id = f"BEDFORD/{row['id']}"
        self.canon[str(row["id"])] = record_id
        self._written[record_id] = row
        return record_id

    def update_and_expect(self, connector: Any, record_id: str) -> tuple[str, str]:
        connector.update_work_order(self._written[record_id]["id"], {"intWorkOrderStatusID": 4})
        return "intWorkOrderStatusID", "4"


# -- Oracle Fusion -------------------------------------------------------------------------


class OracleHarness(HttpContract):
    name = "oracle"
    writes = True
    text_columns = ("WorkOrderNumber", "WorkOrderDescription")
    auth_marker = "Unauthorized"

    def __init__(self, tmp_path: Path, *, auth_method: str = "basic") -> None:
        from integration_platform_tests.contract_servers import oracle

        super().__init__()
        self.oracle = oracle
        self.auth_method = auth_method
        self.server = oracle.OracleContractServer(tmp_path / "fusion.db").seed().start()
        for order in seed.work_orders():
            self.canon[str(oracle.ID_BASE + int(str(order["wonum"])))] = (
                f"{order['siteid']}/{order['wonum']}"
            )

    def credentials(self) -> dict[str, Any]:
        if self.auth_method == "basic":
            return {"username": self.server.username, "password": self.server.password}
        return {
            "auth_method": "oauth2",
            "client_id": self.server.client_id,
            "client_secret": self.server.client_secret,
            "token_url": "/oauth2/v1/token",
        }

    def wrong_credentials(self) -> dict[str, Any]:
        return {"username": self.server.username, "password": "Expired#1"}

    def wrong_secrets(self) -> tuple[str, ...]:
        return ("Expired#1",)

    def connector(self, **overrides: Any) -> Any:
        from integration_platform.connectors.erp.oracle import OracleConnector

        options = {"base_url": self.server.base_url, **self.credentials(), **FAST_RETRIES}
        return OracleConnector(**{**options, **overrides})

    def read_prefix(self) -> str:
        return f"GET {self.server.resource_url}?"

    def read(self, connector: Any, *, since: Cursor | None, page_size: int) -> Iterator[Page]:
        return connector.read_work_orders(since=since, page_size=page_size)

    def add_work_orders(self, numbers: list[int], *, changed_at: datetime) -> set[str]:
        for number in numbers:
            order = follow_up(number, changed_at)
            self.server.put(self.oracle.oracle_order(order))
            self.canon[str(self.oracle.ID_BASE + number)] = f"BEDFORD/{number}"
        return {f"BEDFORD/{n}" for n in numbers}

    def frame_ids(self, frame: Any) -> list[str]:
        return [self.canon.get(i, i) for i in frame["WorkOrderId"]]

    def create(self, connector: Any, description: str) -> str:
        item = connector.create_work_order(
            {"WorkOrderDescription": description, "OrganizationCode": "BED"}
        )
        record_id = f"BEDFORD/{item['WorkOrderNumber']}"
        self.canon[str(item["WorkOrderId"])] = record_id
        self._written[record_id] = item
        return record_id

    def update_and_expect(self, connector: Any, record_id: str) -> tuple[str, str]:
        item = self._written[record_id]
        connector.update_work_order(item["WorkOrderId"], {"WorkOrderStatusCode": "RELEASED"})
        return "WorkOrderStatusCode", "RELEASED"


# -- generic REST, declared against the UpKeep contract server -----------------------------


class GenericRestHarness(UpKeepHarness):
    """The generic connector configured by fields only, as a user would for UpKeep."""

    name = "upkeep_generic"
    writes = False  # the generic connector reads only

    def connector(self, **overrides: Any) -> Any:
        from integration_platform.connectors.generic_rest import GenericRestConnector

        options: dict[str, Any] = {
            "system_name": "upkeep_generic",
            "base_url": f"{self.server.base_url}/api/v2",
            "auth": "session_token",
            "username": self.server.email,
            "password": self.server.password,
            "auth_options": {
                "login_path": "/auth",
                "token_path": "result/sessionToken",
                "header": "Session-Token",
            },
            "path": "/work-orders",
            "paginator": "offset",
            "paginator_options": {"records_path": "results", "has_more_path": None},
            "key": ["id"],
            "cursor_field": "updatedAt",
            "fields": ["id", "workOrderNo", "title", "status", "updatedAt"],
            **FAST_RETRIES,
        }
        credentials = {k: overrides.pop(k) for k in ("email", "password") if k in overrides}
        if "email" in credentials:
            options["username"] = credentials["email"]
        if "password" in credentials:
            options["password"] = credentials["password"]
        return GenericRestConnector(**{**options, **overrides})
