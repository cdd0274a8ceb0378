"""Mapping of a Maximo-style CMMS export (work orders, assets, sites) to the canonical model.

The code tables follow Maximo's defaults (status WAPPR..CLOSE, work types PM/CM/EM/...,
priority 1 = most urgent). Dates without a UTC offset are read in the site's time zone.
The result keeps ``_source_file`` and ``_source_line`` so every rejected record points back
at the export line it came from.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from integration_platform.mapping.columns import (
    collect_rejects,
    map_codes,
    parse_numbers,
    parse_timestamps,
)

WORK_ORDER_STATUS = {
    "WAPPR": "scheduled",
    "APPR": "scheduled",
    "WSCH": "scheduled",
    "INPRG": "in_progress",
    "WMATL": "on_hold",
    "COMP": "completed",
    "CLOSE": "completed",
    "CAN": "cancelled",
}
WORK_TYPE = {
    "PM": "preventive",
    "CM": "corrective",
    "EM": "emergency",
    "PDM": "predictive",
    "INSP": "inspection",
    "CAL": "calibration",
    "CLN": "cleaning",
    "LUB": "lubrication",
}
PRIORITY = {"1": "critical", "2": "high", "3": "medium", "4": "low"}
ASSET_STATUS = {
    "OPERATING": "operating",
    "STANDBY": "standby",
    "NOT READY": "out_of_service",
    "BROKEN": "out_of_service",
    "DECOMMISSIONED": "decommissioned",
}
ASSET_CONDITION = {name.upper(): name for name in ("excellent", "good", "fair", "poor", "critical")}
ASSET_TYPE = {
    "PUMP": "pump",
    "COMPRESSOR": "compressor",
    "CHILLER": "chiller",
    "AHU": "hvac",
    "BOILER": "boiler",
    "CONVEYOR": "conveyor",
    "MOTOR": "motor",
    "FAN": "fan",
    "COOLING_TOWER": "cooling_tower",
}
LINEAGE_COLUMNS = ["_source_file", "_source_line"]

# target field -> (source columns, transform): the mapping table shown in the Dagster UI and
# the column lineage from bronze to silver.
WORK_ORDER_FIELDS: dict[str, tuple[list[str], str]] = {
    "work_order_id": (["siteid", "wonum"], "`<system>:<siteid>:<wonum>`"),
    "source_system": ([], "the extract's system name"),
    "external_id": (["wonum"], "copy"),
    "site_id": (["siteid"], "copy"),
    "asset_id": (["siteid", "assetnum"], "`<system>:<siteid>:<assetnum>`; required"),
    "asset_external_id": (["assetnum"], "copy"),
    "title": (["description"], "copy"),
    "description": ([], "not exported"),
    "work_type": (["worktype"], "code table PM/CM/EM/PDM/INSP/CAL/CLN/LUB"),
    "priority": (["wopriority"], "code table 1..4 -> critical..low"),
    "status": (["status"], "code table WAPPR..CLOSE"),
    "created_at": (["reportdate", "siteid"], "ISO-8601 -> UTC (site zone if no offset)"),
    "scheduled_start": (["schedstart", "siteid"], "ISO-8601 -> UTC"),
    "due_at": (["targcompdate", "siteid"], "ISO-8601 -> UTC"),
    "started_at": (["actstart", "siteid"], "ISO-8601 -> UTC"),
    "completed_at": (["actfinish", "siteid"], "ISO-8601 -> UTC"),
    "labor_hours": (["actlabhrs"], "decimal"),
    "cost_amount": (["actlabcost"], "decimal"),
    "currency": (["currency"], "trim, upper"),
    "assigned_to": (["lead"], "copy"),
    "updated_at": (["changedate", "siteid"], "ISO-8601 -> UTC"),
    "version_token": (["rowstamp"], "copy; newest rowstamp wins among duplicates"),
}
ASSET_FIELDS: dict[str, tuple[list[str], str]] = {
    "asset_id": (["siteid", "assetnum"], "`<system>:<siteid>:<assetnum>`"),
    "source_system": ([], "the extract's system name"),
    "external_id": (["assetnum"], "copy"),
    "site_id": (["siteid"], "copy"),
    "name": (["description"], "copy"),
    "asset_type": (["assettype"], "code table PUMP, AHU -> hvac, ..."),
    "manufacturer": (["manufacturer"], "copy"),
    "model": (["modelnum"], "copy"),
    "serial_number": (["serialnum"], "copy"),
    "installed_at": (["installdate", "siteid"], "ISO-8601 -> UTC (site zone if no offset)"),
    "status": (["status"], "code table OPERATING/STANDBY/NOT READY/BROKEN/DECOMMISSIONED"),
    "condition": (["assetcondition"], "lower case"),
    "criticality": (["priority"], "code table 1..4 -> critical..low"),
    "location": (["location"], "copy"),
    "parent_asset_id": (["siteid", "parent"], "`<system>:<siteid>:<parent>`"),
    "purchase_cost": (["purchaseprice"], "decimal"),
    "currency": (["currency"], "trim, upper"),
    "updated_at": (["changedate", "siteid"], "ISO-8601 -> UTC; newest change wins"),
}


@dataclass(frozen=True)
class MappedFrame:
    """Canonical rows (indexed like the input) and the input rows that could not be mapped."""

    mapped: pd.DataFrame
    rejected: pd.DataFrame


def platform_id(source_system: str, site: pd.Series, key: pd.Series) -> pd.Series:
    """Stable platform id ``<system>:<site>:<key>``: Maximo keys are unique per site only."""
    return (source_system + ":" + site.astype("string") + ":" + key.astype("string")).astype(
        "string[pyarrow]"
    )


def latest_version(frame: pd.DataFrame, key: list[str], order: pd.Series) -> pd.DataFrame:
    """Keep the newest export of each record (a record exported twice is normal CDC).

    ``order`` ranks the versions (Maximo's ``rowstamp``, or the change date); rows whose
    order is unknown rank oldest, and among equals the later line in the file wins.
    """
    ranked = frame.assign(_order=order).sort_values("_order", kind="stable")
    return ranked.drop_duplicates(key, keep="last").drop(columns="_order").sort_index()


def _site_timezones(frame: pd.DataFrame, sites: pd.DataFrame) -> pd.Series:
    zones = sites.set_index("siteid")["timezone"]
    return frame["siteid"].map(zones)


def map_work_orders(
    bronze: pd.DataFrame, sites: pd.DataFrame, *, source_system: str
) -> MappedFrame:
    """Work-order export rows to canonical WorkOrder rows plus per-row rejects."""
    rowstamp = pd.to_numeric(bronze["rowstamp"], errors="coerce").fillna(-1)
    frame = latest_version(bronze, ["siteid", "wonum"], rowstamp)
    zones = _site_timezones(frame, sites)
    status, status_reason = map_codes(
        frame["status"], WORK_ORDER_STATUS, field="status", source="status"
    )
    work_type, type_reason = map_codes(
        frame["worktype"], WORK_TYPE, field="work_type", source="worktype"
    )
    priority, priority_reason = map_codes(
        frame["wopriority"], PRIORITY, field="priority", source="wopriority"
    )
    times = {
        target: parse_timestamps(frame[source], field=target, source=source, local_tz=zones)
        for target, source in {
            "created_at": "reportdate",
            "scheduled_start": "schedstart",
            "due_at": "targcompdate",
            "started_at": "actstart",
            "completed_at": "actfinish",
            "updated_at": "changedate",
        }.items()
    }
    hours, hours_reason = parse_numbers(frame["actlabhrs"], field="labor_hours", source="actlabhrs")
    cost, cost_reason = parse_numbers(frame["actlabcost"], field="cost_amount", source="actlabcost")
    missing_asset = frame["assetnum"].isna()
    asset_reason = pd.Series(pd.NA, index=frame.index, dtype="string")
    asset_reason[missing_asset] = "asset_id <- assetnum: empty; every work order needs an asset"
    mapped = pd.DataFrame(
        {
            "work_order_id": platform_id(source_system, frame["siteid"], frame["wonum"]),
            "source_system": source_system,
            "external_id": frame["wonum"],
            "site_id": frame["siteid"],
            "asset_id": platform_id(source_system, frame["siteid"], frame["assetnum"]),
            "asset_external_id": frame["assetnum"],
            "title": frame["description"],
            "description": pd.Series(pd.NA, index=frame.index, dtype="string[pyarrow]"),
            "work_type": work_type,
            "priority": priority,
            "status": status,
            **{target: values for target, (values, _) in times.items()},
            "labor_hours": hours,
            "cost_amount": cost,
            "currency": frame["currency"].str.strip().str.upper(),
            "assigned_to": frame["lead"],
            "version_token": frame["rowstamp"],
        },
        index=frame.index,
    )
    mapped[LINEAGE_COLUMNS] = frame[LINEAGE_COLUMNS]
    rejected = collect_rejects(
        {
            "status": status_reason,
            "work_type": type_reason,
            "priority": priority_reason,
            **{target: reason for target, (_, reason) in times.items()},
            "labor_hours": hours_reason,
            "cost_amount": cost_reason,
            "asset_id": asset_reason,
        }
    )
    return MappedFrame(mapped=mapped.drop(index=rejected.index), rejected=rejected)


def map_assets(bronze: pd.DataFrame, sites: pd.DataFrame, *, source_system: str) -> MappedFrame:
    """Asset export rows to canonical Asset rows plus per-row rejects."""
    changed = pd.to_datetime(bronze["changedate"], utc=True, errors="coerce", format="ISO8601")
    frame = latest_version(
        bronze, ["siteid", "assetnum"], changed.fillna(pd.Timestamp(0, tz="UTC"))
    )
    zones = _site_timezones(frame, sites)
    status, status_reason = map_codes(
        frame["status"], ASSET_STATUS, field="status", source="status"
    )
    condition, condition_reason = map_codes(
        frame["assetcondition"], ASSET_CONDITION, field="condition", source="assetcondition"
    )
    criticality, criticality_reason = map_codes(
        frame["priority"], PRIORITY, field="criticality", source="priority"
    )
    asset_type, type_reason = map_codes(
        frame["assettype"], ASSET_TYPE, field="asset_type", source="assettype"
    )
    installed, installed_reason = parse_timestamps(
        frame["installdate"], field="installed_at", source="installdate", local_tz=zones
    )
    updated, updated_reason = parse_timestamps(
        frame["changedate"], field="updated_at", source="changedate", local_tz=zones
    )
    price, price_reason = parse_numbers(
        frame["purchaseprice"], field="purchase_cost", source="purchaseprice"
    )
    parent = platform_id(source_system, frame["siteid"], frame["parent"])
    mapped = pd.DataFrame(
        {
            "asset_id": platform_id(source_system, frame["siteid"], frame["assetnum"]),
            "source_system": source_system,
            "external_id": frame["assetnum"],
            "site_id": frame["siteid"],
            "name": frame["description"],
            "asset_type": asset_type,
            "manufacturer": frame["manufacturer"],
            "model": frame["modelnum"],
            "serial_number": frame["serialnum"],
            "installed_at": installed,
            "status": status,
            "condition": condition,
            "criticality": criticality,
            "location": frame["location"],
            "parent_asset_id": parent.where(frame["parent"].notna()),
            "purchase_cost": price,
            "currency": frame["currency"].str.strip().str.upper(),
            "updated_at": updated,
        },
        index=frame.index,
    )
    mapped[LINEAGE_COLUMNS] = frame[LINEAGE_COLUMNS]
    rejected = collect_rejects(
        {
            "status": status_reason,
            "condition": condition_reason,
            "criticality": criticality_reason,
            "asset_type": type_reason,
            "installed_at": installed_reason,
            "updated_at": updated_reason,
            "purchase_cost": price_reason,
        }
    )
    return MappedFrame(mapped=mapped.drop(index=rejected.index), rejected=rejected)
