"""Harnesses of the maintenance-schedule contract: each connector that reads schedules, against
its vendor's contract server seeded from ``seed.pms()``.

Every vendor names its schedules its own way (Maximo PMs, Fiix scheduled maintenance, SAP
maintenance plans, UpKeep preventive maintenance, Dynamics agreement booking setups); a
harness translates them to the seed's PM number. No connector writes schedules, so a change
is made in the vendor's own store, as a planner would make it, stamped with the current time:
the next incremental read must return that schedule alone, which checks the vendor's
modified-time filter (or the client-side one) end to end.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from integration_platform_tests.contract_servers import seed
from integration_platform_tests.contract_servers.entity_harnesses import EntityContract, now
from integration_platform_tests.contract_servers.vendor_harnesses import (
    DynamicsHarness,
    FiixHarness,
    MaximoContract,
    SapHarness,
    UpKeepHarness,
)

CHANGED_PM = "PM1002"
CHANGED_TEXT = "Lubricate bearings, P-204 (synthetic grease, every 4 weeks)"


def seed_pm(pmnum: str) -> dict[str, Any]:
    return next(pm for pm in seed.pms() if pm["pmnum"] == pmnum)


class ScheduleContract(EntityContract):
    """A connector's maintenance schedules under contract."""

    entity = "maintenance_schedules"

    def seeded_numbers(self) -> set[str]:
        return {str(pm["pmnum"]) for pm in seed.pms()}

    def change(self, pmnum: str, text: str) -> None:
        """Describe schedule ``pmnum`` with ``text`` in the vendor's system, changed now."""
        self.store_changed({**seed_pm(pmnum), "description": text})

    def store_changed(self, pm: Mapping[str, Any]) -> None:
        raise NotImplementedError


class MaximoSchedules(ScheduleContract):
    """Maximo PMs (``mxpm``), read on ``changedate`` like work orders."""

    name = "maximo"
    number_column = "pmnum"
    text_column = "description"
    resource = "/os/mxpm?"

    def __init__(self, tmp_path: Path) -> None:
        super().__init__(
            MaximoContract(tmp_path, context_root="/maximo/oslc", auth_method="apikey")
        )

    def store_changed(self, pm: Mapping[str, Any]) -> None:
        self.harness.server.put_pm({**pm, "changedate": seed.maximo_date(now())})


class FiixSchedules(ScheduleContract):
    """Fiix ``ScheduledMaintenance``, read on ``dtmUpdatedDate`` (epoch ms)."""

    name = "fiix"
    number_column = "strCode"
    text_column = "strDescription"
    resource = "/api/?service=cmms"

    def __init__(self, tmp_path: Path) -> None:
        harness = FiixHarness(tmp_path)
        super().__init__(harness)
        self.fiix = harness.fiix

    def store_changed(self, pm: Mapping[str, Any]) -> None:
        # The seed's schedules are objects 900, 901, ... in seed order.
        object_id = 900 + [p["pmnum"] for p in seed.pms()].index(pm["pmnum"])
        record = self.fiix.fiix_schedule(object_id, pm, changed=now())
        self.harness.server.put("scheduledmaintenance", record)


class SapPlans(ScheduleContract):
    """SAP maintenance plans (API_MAINTENANCEPLAN) with their cycles and items expanded."""

    name = "sap"
    number_column = "MaintenancePlan"
    text_column = "MaintenancePlanDesc"

    def __init__(self, tmp_path: Path, *, odata_version: str, auth_method: str) -> None:
        harness = SapHarness(tmp_path, odata_version=odata_version, auth_method=auth_method)
        super().__init__(harness)
        self.sap = harness.sap
        self.canon = {self.sap.plan_number(str(pm["pmnum"])): str(pm["pmnum"]) for pm in seed.pms()}
        self.resource = (
            "/API_MAINTENANCEPLAN/MaintenancePlan?"
            if odata_version == "v2"
            else "/api_maintenanceplan/0001/MaintenancePlan?"
        )

    def store_changed(self, pm: Mapping[str, Any]) -> None:
        self.harness.server.put_plan(self.sap.sap_plan(pm, changed=now()))


class UpKeepSchedules(ScheduleContract):
    """UpKeep preventive maintenance, scanned and ordered on ``updatedAt`` in the client."""

    name = "upkeep"
    number_column = "id"
    text_column = "title"
    resource = "/api/v2/preventative-maintenance?"

    def __init__(self, tmp_path: Path) -> None:
        harness = UpKeepHarness(tmp_path)
        super().__init__(harness)
        self.upkeep = harness.upkeep
        self.canon = {str(pm["pmnum"]).lower(): str(pm["pmnum"]) for pm in seed.pms()}

    def store_changed(self, pm: Mapping[str, Any]) -> None:
        self.harness.server.put_pm(self.upkeep.upkeep_pm(pm, changed=now()))


class DynamicsSchedules(ScheduleContract):
    """Field Service agreement booking setups, read on ``modifiedon``. Only PMs with a
    calendar frequency have one: Field Service recurrences are calendar-based."""

    name = "dynamics"
    number_column = "msdyn_agreementbookingsetupid"
    text_column = "msdyn_name"
    resource = "/msdyn_agreementbookingsetups?"

    def __init__(self, tmp_path: Path) -> None:
        harness = DynamicsHarness(tmp_path)
        super().__init__(harness)
        self.dynamics = harness.dynamics
        self.canon = {
            self.dynamics.booking_setup_id(str(pm["pmnum"])): str(pm["pmnum"]) for pm in seed.pms()
        }

    def seeded_numbers(self) -> set[str]:
        return {str(pm["pmnum"]) for pm in seed.pms() if pm.get("frequency") is not None}

    def store_changed(self, pm: Mapping[str, Any]) -> None:
        row = self.dynamics.dataverse_booking_setup(pm, changed=now())
        self.harness.server.put("msdyn_agreementbookingsetups", row)


def build(kind: str, tmp_path: Path) -> ScheduleContract:
    if kind == "maximo":
        return MaximoSchedules(tmp_path)
    if kind == "fiix":
        return FiixSchedules(tmp_path)
    if kind == "sap-v2":
        return SapPlans(tmp_path, odata_version="v2", auth_method="basic")
    if kind == "sap-v4":
        return SapPlans(tmp_path, odata_version="v4", auth_method="oauth2")
    if kind == "upkeep":
        return UpKeepSchedules(tmp_path)
    if kind == "dynamics":
        return DynamicsSchedules(tmp_path)
    raise AssertionError(kind)


SCHEDULE_HARNESSES = ("maximo", "fiix", "sap-v2", "sap-v4", "upkeep", "dynamics")
