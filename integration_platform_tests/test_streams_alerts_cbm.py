"""Critical alerts -> work orders (Maximo contract server, local outbox) -> completion."""

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
from integration_platform.streams.cbm import open_work_orders, work_order_reference
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
    url: str, *, severity: str = "critical", second: int = 0, sensor: str = "vib"
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
        asset_id="PUMP-1",
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


def test_crash_between_create_and_link_relinks_instead_of_creating_again(
    maximo: MaximoContractServer, state_url: str, lake: DeltaLake, tmp_path: Path
) -> None:
    key = raise_alert(state_url)
    cmms = maximo_cmms(tmp_path)
    real = cmms.gateway(make_engine(state_url))

    class CrashAfterCreate:
        system = real.system
        find = real.find
        state = real.state

        def create(self, request):
            real.create(request)
            raise Crash

    with pytest.raises(Crash):
        open_work_orders(make_engine(state_url), CrashAfterCreate(), claimant="run-1")
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
