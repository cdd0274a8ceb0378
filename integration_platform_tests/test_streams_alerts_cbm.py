"""Critical alerts -> work orders -> completion, against the contract servers of every CMMS
the connectors write work orders to (Maximo, Fiix, UpKeep, SAP, Dynamics) and the outbox."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

from integration_platform.cli import main
from integration_platform.defs.alerts.resources import CbmCmms
from integration_platform.defs.alerts.sensors import cbm_work_orders_critical_alert_sensor
from integration_platform.lake import DeltaLake
from integration_platform.state import SensorAlert, StateDatabase, dispose_engines, make_engine
from integration_platform.state import upgrade as migrate_up
from integration_platform.streams.alerts import AlertEvent
from integration_platform.streams.cbm import (
    WorkOrderGateway,
    WorkOrderLink,
    WorkOrderRequest,
    open_work_orders,
    work_order_reference,
)
from integration_platform.streams.device_state import write_event
from integration_platform_tests.contract_servers.maximo import MaximoContractServer

T0 = datetime(2026, 5, 4, 10, 0, tzinfo=UTC)

CONNECTIONS = """
type: integration_platform.components.ConnectionComponent
attributes:
  connections:
    - name: plant_maximo
      type: maximo
      base_url_env: CBM_TEST_MAXIMO_URL
      auth: {api_key: CBM_TEST_MAXIMO_KEY}
      options:
        context_root: /maximo/oslc
        site_ids: [BEDFORD]
        max_attempts: 2
        backoff_seconds: 0.01
        requests_per_second: 0
      entities: [work_orders]
"""


@pytest.fixture
def maximo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[MaximoContractServer]:
    server = MaximoContractServer(tmp_path / "maximo.db").seed().start()
    monkeypatch.setenv("CBM_TEST_MAXIMO_URL", server.base_url)
    monkeypatch.setenv("CBM_TEST_MAXIMO_KEY", server.api_keys[0])
    yield server
    server.stop()


@pytest.fixture
def state_url(data_dir: Path) -> Iterator[str]:
    url = f"sqlite:///{data_dir / 'state.db'}"
    migrate_up(url)
    yield url
    dispose_engines()


@pytest.fixture
def lake(data_dir: Path) -> DeltaLake:
    """A lake with one condition-based schedule for PUMP-1's vibration."""
    lake = DeltaLake(uri=str(data_dir / "lake"))
    schedules = pd.DataFrame(
        {
            "schedule_id": ["maximo:PM-VIB-1", "maximo:PM-TIME-1"],
            "source_system": ["maximo", "maximo"],
            "external_id": ["PMVIB1", "PMTIME1"],
            "asset_id": ["PUMP-1", "PUMP-1"],
            "asset_external_id": ["PUMP-1", "PUMP-1"],
            "title": ["Bearing check on high vibration", "Quarterly lubrication"],
            "status": ["active", "active"],
            "trigger_type": ["condition", "time"],
            "condition_metric": ["vibration", None],
        }
    )
    lake.write(schedules, ["silver", "maintenance_schedules"])
    return lake


def raise_alert(
    url: str,
    *,
    severity: str = "critical",
    second: int = 0,
    sensor: str = "vib",
    asset: str = "PUMP-1",
) -> str:
    event = AlertEvent(
        kind="raised",
        episode_key=f"pump-1/{sensor}@{(T0 + timedelta(seconds=second)).isoformat()}",
        device_id="pump-1",
        sensor_id=sensor,
        severity=severity,
        value=9.5,
        threshold=7.1 if severity == "critical" else 4.5,
        reading_ts=T0 + timedelta(seconds=second),
        at=T0 + timedelta(seconds=second, milliseconds=30),
        direction="above",
        peak_value=9.5,
        sensor_type="vibration",
        unit="mm/s",
        asset_id=asset,
    )
    engine = make_engine(url)
    with Session(engine) as session, session.begin():
        write_event(session, event)
    engine.dispose()
    return event.episode_key


def alert_row(url: str, key: str) -> SensorAlert:
    engine = make_engine(url)
    try:
        with Session(engine) as session:
            return session.scalar(sa.select(SensorAlert).where(SensorAlert.episode_key == key))
    finally:
        engine.dispose()


def tick(state_url: str, lake: DeltaLake, cmms: CbmCmms) -> str:
    context = dg.build_sensor_context(
        resources={"state": StateDatabase(url=state_url), "cbm_cmms": cmms, "lake": lake}
    )
    result = cbm_work_orders_critical_alert_sensor(context)
    assert isinstance(result, dg.SkipReason)
    return result.skip_message or ""


def created_work_orders(server: MaximoContractServer) -> list[dict]:
    return [w for w in server.store.all("workorder") if str(w.get("externalrefid", ""))]


def maximo_cmms(tmp_path: Path, **overrides: object) -> CbmCmms:
    file = tmp_path / "connections.yaml"
    file.write_text(CONNECTIONS)
    settings: dict[str, object] = {"connection": "plant_maximo", "connections_file": str(file)}
    return CbmCmms(**(settings | overrides))


def test_one_work_order_per_episode_and_the_loop_closes(
    maximo: MaximoContractServer, state_url: str, lake: DeltaLake, tmp_path: Path
) -> None:
    key = raise_alert(state_url)
    # Another sensor: one sensor has one live episode at a time.
    warning = raise_alert(state_url, severity="warning", second=100, sensor="vib-axial")
    cmms = maximo_cmms(tmp_path)

    assert "maximo: 1 work orders created" in tick(state_url, lake, cmms)
    assert "0 work orders created" in tick(state_url, lake, cmms)  # the tick runs again

    (order,) = created_work_orders(maximo)
    assert maximo.count("POST", "/os/mxwo") == 1
    assert order["externalrefid"] == work_order_reference(key)
    assert (order["siteid"], order["assetnum"], order["pmnum"]) == ("BEDFORD", "PUMP-1", "PMVIB1")
    assert key in order["description_longdescription"]
    alert = alert_row(state_url, key)
    assert alert.work_order_id == f"BEDFORD/{order['wonum']}"
    assert (alert.work_order_system, alert.work_order_status) == ("maximo", "WAPPR")
    assert alert.schedule_id == "maximo:PM-VIB-1"
    assert alert.work_order_completed_at is None
    assert alert_row(state_url, warning).work_order_id is None  # only critical episodes

    maximo.put_work_order({**order, "status": "COMP", "actfinish": "2026-05-05T08:30:00+00:00"})
    assert "1 completed" in tick(state_url, lake, cmms)
    alert = alert_row(state_url, key)
    assert alert.work_order_status == "COMP"
    assert alert.work_order_completed_at == datetime(2026, 5, 5, 8, 30, tzinfo=UTC)
    assert "0 completed" in tick(state_url, lake, cmms)  # recorded once


class Crash(BaseException):
    """The process dies between the CMMS call and the link (not an error it handles)."""


def crash_after_create(real: WorkOrderGateway) -> WorkOrderGateway:
    """``real``, except that the process dies right after a work order was created."""

    class CrashAfterCreate:
        system = real.system
        find = real.find
        state = real.state

        def create(self, request: WorkOrderRequest) -> WorkOrderLink:
            real.create(request)
            raise Crash

    return CrashAfterCreate()


def test_crash_between_create_and_link_relinks_instead_of_creating_again(
    maximo: MaximoContractServer, state_url: str, lake: DeltaLake, tmp_path: Path
) -> None:
    key = raise_alert(state_url)
    cmms = maximo_cmms(tmp_path)
    real = cmms.gateway(make_engine(state_url))

    with pytest.raises(Crash):
        open_work_orders(make_engine(state_url), crash_after_create(real), claimant="run-1")
    assert len(created_work_orders(maximo)) == 1
    claimed = alert_row(state_url, key)
    assert claimed.work_order_id is None and claimed.work_order_claimed_by == "run-1"

    # Within the claim's lease another tick leaves the episode alone.
    assert "0 work orders created" in tick(state_url, lake, cmms)
    # Once the lease has passed: found by its reference and linked, not created again.
    message = tick(state_url, lake, maximo_cmms(tmp_path, claim_lease_seconds=0))
    assert "0 work orders created, 1 re-linked" in message
    (order,) = created_work_orders(maximo)
    assert maximo.count("POST", "/os/mxwo") == 1
    assert alert_row(state_url, key).work_order_id == f"BEDFORD/{order['wonum']}"


def test_without_a_cmms_the_outbox_runs_the_loop(
    state_url: str, lake: DeltaLake, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    monkeypatch.delenv("CBM_CMMS_CONNECTION", raising=False)
    monkeypatch.setenv("INTEGRATION_PLATFORM_DB_URL", state_url)
    key = raise_alert(state_url)
    assert "outbox: 1 work orders created" in tick(state_url, lake, CbmCmms())
    assert "0 work orders created" in tick(state_url, lake, CbmCmms())
    reference = work_order_reference(key)
    alert = alert_row(state_url, key)
    assert (alert.work_order_id, alert.work_order_system) == (reference, "outbox")
    assert alert.schedule_id == "maximo:PM-VIB-1"

    assert main(["alerts", "work-orders"]) == 0
    assert reference in capsys.readouterr().out
    assert main(["alerts", "work-orders", "--complete", reference]) == 0
    assert "1 completed" in tick(state_url, lake, CbmCmms())
    assert alert_row(state_url, key).work_order_status == "completed"
    assert main(["alerts", "list", "--json"]) == 0
    (listed,) = map(json.loads, capsys.readouterr().out.splitlines()[-1:])
    assert listed["work_order_completed_at"] is not None


def test_following_takes_turns_so_no_work_order_waits_forever(state_url: str) -> None:
    """More linked work orders than one tick follows (``limit``): each tick reads the least
    recently followed, so a cancelled one that never completes cannot starve the others."""
    from integration_platform.streams.cbm import OutboxGateway, follow_work_orders

    keys = [raise_alert(state_url, second=second, sensor=f"s{second}") for second in range(3)]
    engine = make_engine(state_url)
    outbox = OutboxGateway(engine)
    opened = open_work_orders(engine, outbox, claimant="test")
    assert len(opened.created) == 3

    class Counting:
        system = outbox.system

        def __init__(self) -> None:
            self.read: list[str] = []

        def state(self, link: WorkOrderLink):  # type: ignore[no-untyped-def]
            self.read.append(link.id)
            return outbox.state(link)

    counting = Counting()
    for _ in range(3):
        follow_work_orders(engine, counting, limit=1)  # type: ignore[arg-type]
    engine.dispose()
    assert sorted(counting.read) == sorted(work_order_reference(key) for key in keys)


def test_an_unknown_connection_is_a_clear_error(
    maximo: MaximoContractServer, state_url: str, tmp_path: Path
) -> None:
    from integration_platform.settings import ConfigError

    with pytest.raises(ConfigError, match="no connection of that name"):
        maximo_cmms(tmp_path, connection="nope").gateway(make_engine(state_url))


def test_work_order_quotes_the_value_that_made_the_episode_critical() -> None:
    from integration_platform.streams.cbm import request_for

    alert = SensorAlert(
        episode_key="pump-1/vib@2026-05-04T10:00:00Z",
        device_id="pump-1",
        sensor_id="vib",
        sensor_type="vibration",
        asset_id="PUMP-1",
        unit="mm/s",
        direction="above",
        severity="critical",
        value=5.2,
        threshold=4.5,
        reading_ts=T0,
        severity_history=[
            {"severity": "warning", "threshold": 4.5, "value": 5.2, "reading_ts": T0.isoformat()},
            {
                "severity": "critical",
                "threshold": 7.1,
                "value": 9.5,
                "reading_ts": (T0 + timedelta(seconds=2)).isoformat(),
            },
        ],
    )
    request = request_for(alert, None)
    assert "(9.5 mm/s)" in request.title
    assert "critical limit 7.1" in request.description
    assert (T0 + timedelta(seconds=2)).isoformat() in request.description


# -- the other CMMS: Fiix, UpKeep, SAP (V2 and V4), Dynamics 365 -------------------------


def plain(row: dict) -> dict:
    """A stored row without the store's bookkeeping (``_version``, ``_key``...); Dataverse
    lookup columns (``_..._value``) stay."""
    return {k: v for k, v in row.items() if not k.startswith("_") or k.endswith("_value")}


class Cmms:
    """A vendor's contract server as these tests use it: its connection declaration, the
    asset id an alert carries, where the reference is in a work order, how a technician
    completes one, and the statuses before and after."""

    system: str
    connection_type: str
    env: dict[str, str]
    auth: str
    options: str = ""
    settings: dict[str, str] = {}
    alert_asset: str
    open_status: str
    done_status: str

    def __init__(self, tmp_path: Path) -> None:
        raise NotImplementedError

    def declaration(self) -> str:
        options = "{max_attempts: 2, backoff_seconds: 0.01, requests_per_second: 0"
        options += f", {self.options}}}" if self.options else "}"
        return f"""
type: integration_platform.components.ConnectionComponent
attributes:
  connections:
    - name: plant_{self.system}
      type: {self.connection_type}
      base_url_env: CBM_TEST_URL
      auth: {self.auth}
      options: {options}
      page_size: 100
      entities: [work_orders]
"""

    def rows(self) -> list[dict]:
        raise NotImplementedError

    def carries(self, row: dict, reference: str) -> bool:
        raise NotImplementedError

    def link_id(self, row: dict) -> str:
        raise NotImplementedError

    def check(self, row: dict, key: str) -> None:
        """What else the created work order must hold (asset, texts)."""

    def complete(self, row: dict, at: datetime) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        self.server.stop()


class FiixCmms(Cmms):
    system = connection_type = "fiix"
    auth = "{app_key: CBM_TEST_KEY, access_key: CBM_TEST_ACCESS, api_secret: CBM_TEST_SECRET}"
    settings = {"site_id": "1"}
    alert_asset = "fiix:500"  # canonical form: the gateway strips its own system's prefix
    open_status, done_status = "1", "6"

    def __init__(self, tmp_path: Path) -> None:
        from integration_platform_tests.contract_servers.fiix import FiixContractServer

        self.server = FiixContractServer(tmp_path / "fiix.db").seed().start()
        self.env = {
            "CBM_TEST_KEY": self.server.app_key,
            "CBM_TEST_ACCESS": self.server.access_key,
            "CBM_TEST_SECRET": self.server.secret,
        }

    def rows(self) -> list[dict]:
        return self.server.store.all("workorder")

    def carries(self, row: dict, reference: str) -> bool:
        return row.get("strCode") == reference

    def link_id(self, row: dict) -> str:
        return str(row["id"])

    def check(self, row: dict, key: str) -> None:
        assert (row["intSiteID"], row["strAssetIds"], row["intPriorityID"]) == (1, "500", 1)
        assert key in row["strDescription"]

    def complete(self, row: dict, at: datetime) -> None:
        from integration_platform_tests.contract_servers.fiix import epoch_ms

        done = {"intWorkOrderStatusID": 6, "dtmDateCompleted": epoch_ms(at)}
        self.server.put("workorder", {**plain(row), **done})


class UpKeepCmms(Cmms):
    system = connection_type = "upkeep"
    auth = "{email: CBM_TEST_KEY, password: CBM_TEST_SECRET}"
    alert_asset = "as11430"
    open_status, done_status = "open", "complete"

    def __init__(self, tmp_path: Path) -> None:
        from integration_platform_tests.contract_servers.upkeep import UpKeepContractServer

        self.server = UpKeepContractServer(tmp_path / "upkeep.db").seed().start()
        self.env = {"CBM_TEST_KEY": self.server.email, "CBM_TEST_SECRET": self.server.password}

    def rows(self) -> list[dict]:
        return self.server.store.all("workorder")

    def carries(self, row: dict, reference: str) -> bool:
        return str(row.get("title")).startswith(f"{reference} CBM: vibration critical")

    def link_id(self, row: dict) -> str:
        return row["id"]

    def check(self, row: dict, key: str) -> None:
        assert (row["asset"], row["priority"]) == ("as11430", 3)
        assert key in row["description"]

    def complete(self, row: dict, at: datetime) -> None:
        from integration_platform_tests.contract_servers.upkeep import upkeep_time

        done = {"status": "complete", "completedDate": upkeep_time(at)}
        self.server.put_order({**plain(row), **done})


class SapCmms(Cmms):
    system = connection_type = "sap"
    auth = "{username: CBM_TEST_KEY, password: CBM_TEST_SECRET}"
    options = "auth_method: basic, sap_client: '100'"
    alert_asset = "10011430"
    open_status, done_status = "CRTD", "REL CNF"

    def __init__(self, tmp_path: Path) -> None:
        from integration_platform_tests.contract_servers.sap import SapContractServer

        self.server = SapContractServer(tmp_path / "sap.db").seed().start()
        self.env = {"CBM_TEST_KEY": "INTEGRATION", "CBM_TEST_SECRET": "Welcome1"}

    def rows(self) -> list[dict]:
        return self.server.store.all("order")

    def carries(self, row: dict, reference: str) -> bool:
        return str(row.get("MaintenanceOrderDesc")).startswith(f"{reference} CBM: ")

    def link_id(self, row: dict) -> str:
        return row["MaintenanceOrder"]

    def check(self, row: dict, key: str) -> None:
        assert len(row["MaintenanceOrderDesc"]) <= 40
        assert (row["MaintenanceOrderType"], row["Equipment"], row["MaintPriority"]) == (
            "PM01",
            "10011430",
            "1",
        )

    def complete(self, row: dict, at: datetime) -> None:
        done = {"SystemStatusText": "REL CNF", "MainWorkCompletedDateTime": at.isoformat()}
        self.server.put_order({**plain(row), **done})


class SapV4Cmms(SapCmms):
    options = "auth_method: basic, sap_client: '100', odata_version: v4"


class DynamicsCmms(Cmms):
    system = connection_type = "dynamics"
    auth = "{client_id: CBM_TEST_KEY, client_secret: CBM_TEST_SECRET}"
    options = "token_url: /contoso-tenant/oauth2/v2.0/token"
    open_status, done_status = "690970000", "690970003"

    def __init__(self, tmp_path: Path) -> None:
        from integration_platform_tests.contract_servers.dynamics import (
            DynamicsContractServer,
            customer_asset_id,
            guid,
        )

        self.server = DynamicsContractServer(tmp_path / "dataverse.db").seed().start()
        self.env = {
            "CBM_TEST_KEY": self.server.client_id,
            "CBM_TEST_SECRET": self.server.client_secret,
        }
        self.account = guid("account", "BEDFORD")
        self.settings = {"site_id": self.account, "work_type": guid("msdyn_workordertype", "CM")}
        self.alert_asset = customer_asset_id("11430")

    def rows(self) -> list[dict]:
        return self.server.store.all("workorder")

    def carries(self, row: dict, reference: str) -> bool:
        from integration_platform.streams.cbm import dynamics_work_order_id

        return row["msdyn_workorderid"] == dynamics_work_order_id(reference)

    def link_id(self, row: dict) -> str:
        return row["msdyn_workorderid"]

    def check(self, row: dict, key: str) -> None:
        assert row["_msdyn_serviceaccount_value"] == self.account
        assert row["_msdyn_customerasset_value"] == self.alert_asset
        assert key in row["msdyn_workordersummary"]

    def complete(self, row: dict, at: datetime) -> None:
        from integration_platform_tests.contract_servers.odata import v4_date

        done = {"msdyn_systemstatus": 690970003, "msdyn_completedon": v4_date(at)}
        self.server.put_order({**plain(row), **done})


@pytest.fixture(
    params=[FiixCmms, UpKeepCmms, SapCmms, SapV4Cmms, DynamicsCmms],
    ids=["fiix", "upkeep", "sap", "sap-v4", "dynamics"],
)
def vendor(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Cmms]:
    cmms = request.param(tmp_path)
    monkeypatch.setenv("CBM_TEST_URL", cmms.server.base_url)
    for name, value in cmms.env.items():
        monkeypatch.setenv(name, value)
    yield cmms
    cmms.stop()


def vendor_cmms(vendor: Cmms, tmp_path: Path, **overrides: object) -> CbmCmms:
    file = tmp_path / "connections.yaml"
    file.write_text(vendor.declaration())
    settings = {"connection": f"plant_{vendor.system}", "connections_file": str(file)}
    return CbmCmms(**(settings | vendor.settings | overrides))


def test_other_cmms_one_work_order_per_episode_and_the_loop_closes(
    vendor: Cmms, state_url: str, lake: DeltaLake, tmp_path: Path
) -> None:
    seeded = len(vendor.rows())
    key = raise_alert(state_url, asset=vendor.alert_asset)
    reference = work_order_reference(key)
    cmms = vendor_cmms(vendor, tmp_path)

    assert f"{vendor.system}: 1 work orders created" in tick(state_url, lake, cmms)
    assert "0 work orders created" in tick(state_url, lake, cmms)  # the tick runs again

    assert len(vendor.rows()) == seeded + 1
    (order,) = [row for row in vendor.rows() if vendor.carries(row, reference)]
    vendor.check(order, key)
    alert = alert_row(state_url, key)
    assert (alert.work_order_id, alert.work_order_system) == (vendor.link_id(order), vendor.system)
    assert (alert.work_order_reference, alert.work_order_status) == (reference, vendor.open_status)
    assert alert.work_order_completed_at is None

    finished = datetime(2026, 5, 5, 8, 30, tzinfo=UTC)
    vendor.complete(order, finished)
    assert "1 completed" in tick(state_url, lake, cmms)
    alert = alert_row(state_url, key)
    assert alert.work_order_status == vendor.done_status
    assert alert.work_order_completed_at == finished
    assert "0 completed" in tick(state_url, lake, cmms)  # recorded once


def test_other_cmms_crash_between_create_and_link_relinks_instead_of_creating_again(
    vendor: Cmms, state_url: str, lake: DeltaLake, tmp_path: Path
) -> None:
    seeded = len(vendor.rows())
    key = raise_alert(state_url, asset=vendor.alert_asset)
    reference = work_order_reference(key)
    cmms = vendor_cmms(vendor, tmp_path)

    with pytest.raises(Crash):
        open_work_orders(
            make_engine(state_url), crash_after_create(cmms.gateway(None)), claimant="run-1"
        )
    assert len(vendor.rows()) == seeded + 1
    assert alert_row(state_url, key).work_order_id is None

    message = tick(state_url, lake, vendor_cmms(vendor, tmp_path, claim_lease_seconds=0))
    assert "0 work orders created, 1 re-linked" in message
    assert len(vendor.rows()) == seeded + 1
    (order,) = [row for row in vendor.rows() if vendor.carries(row, reference)]
    assert alert_row(state_url, key).work_order_id == vendor.link_id(order)


def test_a_connection_that_cannot_take_work_orders_is_a_clear_error(
    state_url: str, tmp_path: Path
) -> None:
    from integration_platform.settings import ConfigError

    file = tmp_path / "connections.yaml"
    file.write_text(
        f"""
type: integration_platform.components.ConnectionComponent
attributes:
  connections:
    - name: plant_db
      type: sql
      base_url: sqlite:///{tmp_path / "plant.db"}
      entities:
        - name: work_orders
          read: read_table
          options: {{table: work_orders, cursor_column: changedate}}
"""
    )
    cmms = CbmCmms(connection="plant_db", connections_file=str(file))
    with pytest.raises(ConfigError, match="'sql' connection, which cannot take") as error:
        cmms.gateway(make_engine(state_url))
    assert "type dynamics, fiix, maximo, sap, upkeep (or unset it" in str(error.value)


@pytest.mark.parametrize(
    ("vendor_class", "settings", "message"),
    [
        (FiixCmms, {"site_id": ""}, r"CBM_CMMS_SITE_ID to the id \(intSiteID\) .* \(unset\)"),
        (FiixCmms, {"work_type": "Corrective"}, r"CBM_CMMS_WORK_TYPE to .* \(got 'Corrective'\)"),
        (DynamicsCmms, {"priority": "Urgent"}, "set CBM_CMMS_PRIORITY to the id \\(GUID\\)"),
    ],
)
def test_gateway_settings_are_checked_and_name_their_variable(
    vendor_class: type[Cmms],
    settings: dict[str, str],
    message: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from integration_platform.settings import ConfigError

    for name in ("CBM_CMMS_SITE_ID", "CBM_CMMS_WORK_TYPE", "CBM_CMMS_PRIORITY"):
        monkeypatch.delenv(name, raising=False)
    cmms = vendor_class(tmp_path)
    try:
        monkeypatch.setenv("CBM_TEST_URL", cmms.server.base_url)
        for name, value in cmms.env.items():
            monkeypatch.setenv(name, value)
        with pytest.raises(ConfigError, match=message):
            vendor_cmms(cmms, tmp_path, **settings).gateway(None)
    finally:
        cmms.stop()


def test_dataverse_refuses_a_second_work_order_with_the_same_reference(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The Dynamics work order's id is derived from the reference: two creators racing past
    an expired claim still make one row."""
    from integration_platform.connectors.errors import Conflict
    from integration_platform.streams.cbm import request_for

    dynamics = DynamicsCmms(tmp_path)
    try:
        monkeypatch.setenv("CBM_TEST_URL", dynamics.server.base_url)
        for name, value in dynamics.env.items():
            monkeypatch.setenv(name, value)
        gateway = vendor_cmms(dynamics, tmp_path).gateway(None)
        alert = SensorAlert(
            episode_key="pump-1/vib@2026-05-04T10:00:00Z",
            device_id="pump-1",
            sensor_id="vib",
            asset_id=dynamics.alert_asset,
            direction="above",
            value=9.5,
            threshold=7.1,
            reading_ts=T0,
        )
        request = request_for(alert, None)
        seeded = len(dynamics.rows())
        first = gateway.create(request)
        with pytest.raises(Conflict):
            gateway.create(request)
        assert len(dynamics.rows()) == seeded + 1
        assert gateway.find(request.reference) == first
    finally:
        dynamics.stop()


@pytest.mark.parametrize(
    ("status", "done"),
    [("CRTD", False), ("REL PCNF", False), ("REL CNF NMAT", True), ("TECO", True), ("DLFL", False)],
)
def test_sap_work_is_done_when_the_status_line_holds_a_done_code(status: str, done: bool) -> None:
    from integration_platform.streams.cbm import SapGateway

    assert SapGateway(None).completed(status) is done
