"""Canonical models: each accepts a realistic record and rejects realistic mistakes."""

from __future__ import annotations

import datetime as dt
from typing import Any

import numpy as np
import pandas as pd
import pandera.pandas as pa
import pytest

from integration_platform.model import (
    CANONICAL_MODELS,
    CURRENCY_CODES,
    Asset,
    ExternalRecord,
    Priority,
    SensorReading,
    SensorType,
    WorkOrder,
    WorkType,
    validate_rows,
)
from integration_platform.model.enums import values

T0 = "2024-03-01T08:00:00Z"
T1 = "2024-03-01T09:30:00+01:00"
T2 = "2024-03-01T12:00:00Z"

GOOD_ROWS: dict[str, dict[str, Any]] = {
    "assets": {
        "asset_id": "AST-0001",
        "source_system": "maximo_plant1",
        "external_id": "P-101",
        "site_id": "PLANT1",
        "name": "Cooling water pump 1",
        "asset_type": "pump",
        "manufacturer": "Grundfos",
        "model": "NB 65-200",
        "serial_number": "SN-778812",
        "installed_at": "2019-06-12T00:00:00Z",
        "status": "operating",
        "condition": "good",
        "criticality": "high",
        "location": "Building A / Line 2",
        "parent_asset_id": None,
        "purchase_cost": 12500.0,
        "currency": "EUR",
        "updated_at": T0,
    },
    "work_orders": {
        "work_order_id": "WO-0001",
        "source_system": "maximo_plant1",
        "external_id": "1001",
        "site_id": "PLANT1",
        "asset_id": "AST-0001",
        "asset_external_id": "P-101",
        "title": "Replace mechanical seal",
        "description": "Seal leaking on drive end",
        "work_type": "corrective",
        "priority": "high",
        "status": "completed",
        "created_at": T0,
        "scheduled_start": T0,
        "due_at": "2024-03-02T08:00:00Z",
        "started_at": T1,
        "completed_at": T2,
        "labor_hours": 3.5,
        "cost_amount": 420.0,
        "currency": "EUR",
        "assigned_to": "j.smith",
        "updated_at": T2,
        "version_token": "rowstamp-88121",
    },
    "maintenance_schedules": {
        "schedule_id": "PM-0001",
        "source_system": "sap_pm",
        "external_id": "MP-4711",
        "site_id": "PLANT1",
        "asset_id": "AST-0001",
        "asset_external_id": "10004711",
        "title": "Quarterly bearing lubrication",
        "description": "Grease DE and NDE bearings",
        "work_type": "lubrication",
        "priority": "medium",
        "status": "active",
        "trigger_type": "time",
        "interval_value": 3,
        "interval_unit": "months",
        "meter_name": None,
        "meter_unit": None,
        "usage_interval": None,
        "condition_metric": None,
        "condition_operator": None,
        "condition_threshold": None,
        "condition_unit": None,
        "estimated_hours": 0.5,
        "last_performed_at": T0,
        "next_due_at": "2024-06-01T08:00:00Z",
        "next_due_meter": None,
        "updated_at": T0,
    },
    "maintenance_tasks": {
        "task_id": "TSK-0001",
        "source_system": "maximo_plant1",
        "external_id": "1001-10",
        "work_order_id": "WO-0001",
        "work_order_external_id": "1001",
        "schedule_id": None,
        "schedule_external_id": None,
        "sequence": 10,
        "description": "Isolate and lock out the pump",
        "status": "completed",
        "estimated_hours": 0.25,
        "actual_hours": 0.3,
        "assigned_to": "j.smith",
        "completed_at": T1,
        "updated_at": T2,
    },
    "sensor_readings": {
        "device_id": "gw-line2",
        "sensor_id": "p101-de-vib",
        "sensor_type": "vibration",
        "ts": T0,
        "value": 4.2,
        "unit": "mm/s",
        "quality": "good",
        "source_protocol": "mqtt",
        "ingested_at": "2024-03-01T08:00:01Z",
    },
    "devices": {
        "device_id": "gw-line2",
        "site_id": "PLANT1",
        "name": "Line 2 vibration gateway",
        "protocol": "mqtt",
        "address": "plant/PLANT1/gw-line2",
        "asset_id": "AST-0001",
        "manufacturer": "Advantech",
        "model": "WISE-4610",
        "firmware_version": "1.4.2",
        "status": "online",
        "last_seen_at": T0,
        "updated_at": T0,
    },
    "sensors": {
        "device_id": "gw-line2",
        "sensor_id": "p101-de-vib",
        "name": "Pump 1 drive-end vibration",
        "sensor_type": "vibration",
        "unit": "mm/s",
        "address": "plant/PLANT1/gw-line2/p101-de-vib",
        "asset_id": "AST-0001",
        "sampling_interval_s": 1.0,
        "valid_min": 0.0,
        "valid_max": 50.0,
        "updated_at": T0,
    },
    "alerts": {
        "alert_id": "ALR-0001",
        "source_system": "platform",
        "external_id": None,
        "site_id": "PLANT1",
        "asset_id": "AST-0001",
        "device_id": "gw-line2",
        "sensor_id": "p101-de-vib",
        "sensor_type": "vibration",
        "rule": "vibration > 7.1 mm/s for 5 min",
        "severity": "high",
        "state": "cleared",
        "message": "Pump 1 drive-end vibration above ISO 10816 zone C",
        "value": 8.3,
        "threshold": 7.1,
        "unit": "mm/s",
        "raised_at": T0,
        "acknowledged_at": T1,
        "cleared_at": T2,
        "work_order_id": "WO-0001",
        "updated_at": T2,
    },
    "parts": {
        "part_id": "PRT-0001",
        "source_system": "sap_s4",
        "external_id": "MAT-300045",
        "part_number": "300045",
        "name": "Mechanical seal 45 mm",
        "description": "Cartridge seal, SiC/SiC, EPDM",
        "category": "seals",
        "unit_of_measure": "each",
        "manufacturer": "John Crane",
        "manufacturer_part_number": "5610-45",
        "unit_cost": 185.0,
        "currency": "EUR",
        "preferred_supplier_id": "SUP-0001",
        "updated_at": T0,
    },
    "inventory_items": {
        "inventory_item_id": "INV-0001",
        "source_system": "sap_s4",
        "external_id": "300045/PLANT1/MAIN",
        "part_id": "PRT-0001",
        "part_number": "300045",
        "site_id": "PLANT1",
        "storeroom": "MAIN",
        "bin_location": "R4-S2",
        "quantity_on_hand": 3,
        "quantity_reserved": 1,
        "reorder_point": 2,
        "reorder_quantity": 4,
        "unit_of_measure": "each",
        "unit_cost": 185.0,
        "currency": "EUR",
        "updated_at": T0,
    },
    "suppliers": {
        "supplier_id": "SUP-0001",
        "source_system": "sap_s4",
        "external_id": "V-100234",
        "name": "Seal Solutions GmbH",
        "status": "active",
        "country": "DE",
        "email": "orders@seal-solutions.example",
        "phone": "+49 30 1234567",
        "tax_id": "DE123456789",
        "edi_id": "SEALSOL01",
        "payment_terms": "NET30",
        "currency": "EUR",
        "updated_at": T0,
    },
    "purchase_orders": {
        "purchase_order_id": "PO-0001",
        "source_system": "sap_s4",
        "external_id": "4500012345",
        "po_number": "4500012345",
        "supplier_id": "SUP-0001",
        "supplier_external_id": "V-100234",
        "site_id": "PLANT1",
        "status": "approved",
        "ordered_at": T0,
        "expected_delivery_at": "2024-03-08T00:00:00Z",
        "total_amount": 740.0,
        "currency": "EUR",
        "work_order_id": "WO-0001",
        "created_at": T0,
        "updated_at": T0,
    },
    "purchase_order_lines": {
        "purchase_order_line_id": "POL-0001",
        "source_system": "sap_s4",
        "external_id": "4500012345/10",
        "purchase_order_id": "PO-0001",
        "line_number": 1,
        "part_id": "PRT-0001",
        "part_number": "300045",
        "description": "Mechanical seal 45 mm",
        "quantity": 4,
        "unit_of_measure": "each",
        "unit_price": 185.0,
        "line_amount": 740.0,
        "currency": "EUR",
        "quantity_received": 0,
        "updated_at": T0,
    },
    "shipments": {
        "shipment_id": "SHP-0001",
        "source_system": "edi_x12",
        "external_id": "ASN-998877",
        "purchase_order_id": "PO-0001",
        "purchase_order_external_id": "4500012345",
        "supplier_id": "SUP-0001",
        "site_id": "PLANT1",
        "status": "delivered",
        "carrier": "DHL",
        "tracking_number": "JD014600006281234567",
        "shipped_at": "2024-03-05T14:00:00Z",
        "expected_at": "2024-03-07T10:00:00Z",
        "delivered_at": "2024-03-07T09:12:00+01:00",
        "updated_at": "2024-03-07T09:15:00Z",
    },
    "invoices": {
        "invoice_id": "INVC-0001",
        "source_system": "edi_x12",
        "external_id": "810-55512",
        "invoice_number": "RE-2024-0312",
        "supplier_id": "SUP-0001",
        "supplier_external_id": "V-100234",
        "purchase_order_id": "PO-0001",
        "status": "paid",
        "issued_at": "2024-03-07T00:00:00Z",
        "due_at": "2024-04-06T00:00:00Z",
        "paid_at": "2024-04-01T10:00:00Z",
        "total_amount": 880.6,
        "tax_amount": 140.6,
        "currency": "EUR",
        "updated_at": "2024-04-01T10:00:00Z",
    },
    "maintenance_events": {
        "event_id": "msg_2Yx8v1",
        "source_system": "maximo_plant1",
        "event_type": "status_changed",
        "entity": "work_order",
        "entity_external_id": "1001",
        "occurred_at": T2,
        "received_at": "2024-03-01T12:00:02Z",
        "payload": '{"wonum": "1001", "status": "COMP"}',
    },
}

NON_EXTERNAL = {"sensor_readings", "devices", "sensors", "alerts", "maintenance_events"}


def frame(table: str, *changes: dict[str, Any]) -> pd.DataFrame:
    """The good row of ``table`` once per change set, each with its changes applied."""
    base = GOOD_ROWS[table]
    return pd.DataFrame([{**base, **change} for change in (changes or ({},))])


def reasons(table: str, **change: Any) -> str:
    """The reject reason of the good row of ``table`` after ``change`` ('' if accepted)."""
    result = validate_rows(frame(table, change), CANONICAL_MODELS[table])
    if result.rejected.empty:
        return ""
    return str(result.rejected["reject_reason"].iloc[0])


# --- the registry and the declarations -------------------------------------------------------


def test_registry_names_every_entity_in_snake_case_plural() -> None:
    assert set(CANONICAL_MODELS) == set(GOOD_ROWS)
    assert CANONICAL_MODELS["work_orders"] is WorkOrder
    assert CANONICAL_MODELS["assets"] is Asset
    assert CANONICAL_MODELS["sensor_readings"] is SensorReading
    for name in CANONICAL_MODELS:
        assert name == name.lower() and name.endswith("s") and " " not in name


@pytest.mark.parametrize("table", sorted(CANONICAL_MODELS))
def test_every_model_and_field_is_documented(table: str) -> None:
    model = CANONICAL_MODELS[table]
    assert model.__doc__ and len(model.__doc__.split()) >= 10
    undocumented = [
        name
        for name, column in model.to_schema().columns.items()
        if not (column.description and len(column.description) > 10)
    ]
    assert undocumented == []


@pytest.mark.parametrize("table", sorted(CANONICAL_MODELS))
def test_external_records_keep_source_system_and_external_id(table: str) -> None:
    model = CANONICAL_MODELS[table]
    columns = model.to_schema().columns
    assert "source_system" in columns or table in {"sensor_readings", "devices", "sensors"}
    if table in NON_EXTERNAL:
        return
    assert issubclass(model, ExternalRecord)
    assert not columns["source_system"].nullable
    assert not columns["external_id"].nullable
    assert "source_system" in reasons(table, source_system=None)
    assert reasons(table, external_id=None) == "external_id: missing"
    assert reasons(table, external_id="   ") == "external_id: blank"


def test_work_order_columns_are_the_contract() -> None:
    columns = WorkOrder.to_schema().columns
    required = [
        "work_order_id",
        "source_system",
        "external_id",
        "site_id",
        "asset_id",
        "asset_external_id",
        "title",
        "description",
        "work_type",
        "priority",
        "status",
        "created_at",
        "scheduled_start",
        "due_at",
        "started_at",
        "completed_at",
        "labor_hours",
        "cost_amount",
        "currency",
        "assigned_to",
        "updated_at",
        "version_token",
    ]
    assert [c for c in columns if c in required] == sorted(required, key=list(columns).index)
    assert set(required) <= set(columns)
    extras = set(columns) - set(required)
    assert all(columns[c].nullable for c in extras)
    not_null = {c for c in required if not columns[c].nullable}
    assert not_null == {
        "work_order_id",
        "source_system",
        "external_id",
        "site_id",
        "title",
        "work_type",
        "priority",
        "status",
        "created_at",
        "updated_at",
    }
    assert columns["work_order_id"].unique
    for name in ("created_at", "scheduled_start", "due_at", "started_at", "completed_at"):
        assert str(columns[name].dtype) == "datetime64[ns, UTC]"


def test_asset_columns_are_the_contract() -> None:
    columns = Asset.to_schema().columns
    assert list(columns) == [
        "source_system",
        "external_id",
        "asset_id",
        "site_id",
        "name",
        "asset_type",
        "manufacturer",
        "model",
        "serial_number",
        "installed_at",
        "status",
        "condition",
        "criticality",
        "location",
        "parent_asset_id",
        "purchase_cost",
        "currency",
        "updated_at",
    ]
    assert columns["asset_id"].unique
    assert columns["condition"].nullable and not columns["status"].nullable


def test_sensor_reading_columns_match_the_telemetry_table() -> None:
    columns = SensorReading.to_schema().columns
    assert list(columns) == [
        "device_id",
        "sensor_id",
        "sensor_type",
        "ts",
        "value",
        "unit",
        "quality",
        "source_protocol",
        "ingested_at",
    ]
    assert "date" not in columns


def test_enums_are_strings_from_the_domain() -> None:
    assert values(WorkType) == [
        "preventive",
        "corrective",
        "predictive",
        "emergency",
        "inspection",
        "calibration",
        "cleaning",
        "lubrication",
    ]
    assert values(Priority) == ["critical", "high", "medium", "low"]
    assert WorkType.CORRECTIVE == "corrective"
    assert set(values(SensorType)) == {"temperature", "vibration", "pressure", "flow", "humidity"}


def test_currency_codes_are_iso_4217() -> None:
    assert {"EUR", "USD", "GBP", "JPY", "CHF", "CNY", "INR", "BRL"} <= CURRENCY_CODES
    assert "HRK" in CURRENCY_CODES  # withdrawn 2023, still on historical invoices
    assert not {"EURO", "eur", "XXX", "XTS", "XAU", "BTC"} & CURRENCY_CODES
    assert all(len(code) == 3 and code.isupper() for code in CURRENCY_CODES)


# --- good rows ---------------------------------------------------------------------------------


@pytest.mark.parametrize("table", sorted(CANONICAL_MODELS))
def test_model_accepts_a_realistic_record(table: str) -> None:
    model = CANONICAL_MODELS[table]
    result = validate_rows(frame(table), model)
    assert result.rejected.empty, result.rejected.get("reject_reason")
    assert len(result.valid) == 1
    validated = model.validate(frame(table))  # pandera alone agrees
    assert len(validated) == 1


def test_offset_timestamps_are_converted_to_utc() -> None:
    valid = validate_rows(frame("work_orders"), WorkOrder).valid
    assert valid["started_at"].iloc[0] == pd.Timestamp("2024-03-01T08:30:00Z")
    assert str(valid["started_at"].dtype) == "datetime64[ns, UTC]"


def test_aware_datetimes_of_any_zone_are_accepted() -> None:
    berlin = pd.Timestamp("2024-03-01 09:00", tz="Europe/Berlin")
    df = frame("sensor_readings", {"ts": berlin}, {"ts": dt.datetime(2024, 3, 1, 8, tzinfo=dt.UTC)})
    valid = validate_rows(df, SensorReading).valid
    assert valid["ts"].tolist() == [pd.Timestamp("2024-03-01T08:00:00Z")] * 2


# --- bad rows ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("table", "change", "expected"),
    [
        (
            "work_orders",
            {"priority": "urgent"},
            "priority: 'urgent' is not one of critical, high, medium, low",
        ),
        ("work_orders", {"work_type": "repair"}, "work_type: 'repair' is not one of preventive"),
        ("work_orders", {"cost_amount": -5}, "cost_amount: -5.0 is negative"),
        ("work_orders", {"labor_hours": "2h"}, "labor_hours: '2h' is not a number"),
        (
            "work_orders",
            {"currency": "EURO"},
            "currency: 'EURO' is not an ISO 4217 currency code (e.g. EUR, USD)",
        ),
        ("work_orders", {"currency": "eur"}, "currency: 'eur' is not an ISO 4217 currency code"),
        ("work_orders", {"currency": None}, "currency: missing for cost_amount"),
        ("work_orders", {"completed_at": T0}, "completed_at: before started_at"),
        (
            "work_orders",
            {"completed_at": None},
            "completed_at: missing for a completed work order",
        ),
        ("work_orders", {"title": ""}, "title: blank"),
        (
            "work_orders",
            {"created_at": "2024-03-01 08:00:00"},
            "created_at: '2024-03-01 08:00:00' has no time zone (add 'Z' for UTC or an "
            "offset such as +01:00)",
        ),
        ("work_orders", {"created_at": "2024-03-01"}, "created_at: '2024-03-01' has no time zone"),
        (
            "work_orders",
            {"updated_at": "last tuesday"},
            "updated_at: 'last tuesday' is not an ISO 8601 timestamp",
        ),
        ("work_orders", {"created_at": None}, "created_at: missing"),
        (
            "assets",
            {"asset_type": "Centrifugal Pump"},
            "asset_type: 'Centrifugal Pump' must be a lowercase code",
        ),
        ("assets", {"status": "running"}, "status: 'running' is not one of operating, standby"),
        ("assets", {"condition": "ok"}, "condition: 'ok' is not one of excellent, good"),
        ("assets", {"purchase_cost": -1.0}, "purchase_cost: -1.0 is negative"),
        ("assets", {"currency": None}, "currency: missing for purchase_cost"),
        (
            "assets",
            {"parent_asset_id": "AST-0001"},
            "parent_asset_id: an asset cannot be its own parent",
        ),
        ("sensor_readings", {"quality": "ok"}, "quality: 'ok' is not one of good, uncertain, bad"),
        ("sensor_readings", {"sensor_type": "Vibration"}, "sensor_type: 'Vibration' must be"),
        ("sensor_readings", {"value": float("inf")}, "value: inf is not a finite number"),
        ("sensor_readings", {"value": None}, "value: missing (only readings of bad quality"),
        (
            "sensor_readings",
            {"ts": pd.Timestamp("2024-03-01 08:00")},
            "ts: 2024-03-01T08:00:00 has no time zone (give it in UTC or with its offset)",
        ),
        ("sensor_readings", {"ts": 1709280000000}, "ts: 1709280000000 is a number, not a"),
        (
            "maintenance_schedules",
            {"interval_value": None},
            "interval_value: required with interval_unit for a time-based schedule",
        ),
        (
            "maintenance_schedules",
            {"trigger_type": "usage"},
            "usage_interval: required with meter_name for a usage-based schedule",
        ),
        (
            "maintenance_schedules",
            {"trigger_type": "condition", "condition_metric": "vibration"},
            "condition_threshold: required with condition_metric and condition_operator",
        ),
        ("maintenance_schedules", {"interval_value": 0}, "interval_value: 0.0 must be greater"),
        (
            "maintenance_tasks",
            {"work_order_id": None, "work_order_external_id": None},
            "work_order_id: a task must belong to a work order or a schedule",
        ),
        ("maintenance_tasks", {"sequence": 1.5}, "sequence: 1.5 is not a whole number"),
        ("devices", {"protocol": "profinet"}, "protocol: 'profinet' is not one of mqtt, opcua"),
        ("devices", {"status": "up"}, "status: 'up' is not one of online, offline, error"),
        ("sensors", {"valid_max": -1.0}, "valid_max: below valid_min"),
        ("alerts", {"cleared_at": None}, "cleared_at: missing for a cleared alert"),
        ("alerts", {"acknowledged_at": "2024-03-01T07:00:00Z"}, "acknowledged_at: before"),
        ("alerts", {"severity": "major"}, "severity: 'major' is not one of critical"),
        ("parts", {"currency": None}, "currency: missing for unit_cost"),
        ("inventory_items", {"quantity_on_hand": -2}, "quantity_on_hand: -2.0 is negative"),
        (
            "suppliers",
            {"country": "Germany"},
            "country: 'Germany' is not an ISO 3166-1 alpha-2 country code",
        ),
        ("purchase_orders", {"status": "open"}, "status: 'open' is not one of draft"),
        ("purchase_order_lines", {"quantity": 0}, "quantity: 0.0 must be greater than 0"),
        ("purchase_order_lines", {"line_number": 0}, "line_number: 0 is below 1"),
        ("shipments", {"delivered_at": "2024-03-01T00:00:00Z"}, "delivered_at: before shipped_at"),
        ("invoices", {"paid_at": None}, "paid_at: missing for a paid invoice"),
        ("invoices", {"tax_amount": 1000.0}, "tax_amount: greater than total_amount"),
        ("invoices", {"currency": None}, "currency: missing"),
        ("maintenance_events", {"payload": "{not json"}, "payload: '{not json' is not valid JSON"),
        ("maintenance_events", {"entity": "ticket"}, "entity: 'ticket' is not one of asset"),
        ("maintenance_events", {"occurred_at": "2024-03-01T12:00"}, "occurred_at: '2024-03-01"),
    ],
)
def test_model_rejects_realistic_mistakes(
    table: str, change: dict[str, Any], expected: str
) -> None:
    result = validate_rows(frame(table, change), CANONICAL_MODELS[table])
    assert len(result.rejected) == 1 and result.valid.empty
    reason = result.rejected["reject_reason"].iloc[0]
    assert reason.startswith(expected), reason
    # only the changed field fails, so the row points at exactly one thing to fix
    assert result.rejected["reject_field"].iloc[0] == expected.split(":")[0]


@pytest.mark.parametrize(
    ("table", "change"),
    [
        ("sensor_readings", {"sensor_type": "oil_particle_count"}),  # extensible sensor types
        ("sensor_readings", {"value": None, "quality": "bad"}),
        ("sensor_readings", {"source_protocol": "sparkplug_b"}),
        ("sensor_readings", {"unit": None}),
        ("work_orders", {"currency": "HRK"}),  # historical currency
        ("work_orders", {"cost_amount": None, "currency": None}),
        ("work_orders", {"status": "in_progress", "completed_at": None}),
        ("work_orders", {"labor_hours": "2.5"}),
        ("assets", {"asset_type": "cooling_tower", "condition": None}),
        (
            "maintenance_schedules",
            {"trigger_type": "usage", "usage_interval": 500, "meter_name": "h"},
        ),
        ("alerts", {"state": "active", "cleared_at": None, "external_id": None}),
        ("maintenance_tasks", {"work_order_id": None, "schedule_external_id": "MP-4711"}),
    ],
)
def test_model_accepts_legitimate_variations(table: str, change: dict[str, Any]) -> None:
    assert reasons(table, **change) == ""


def test_duplicate_sensor_key_is_rejected_on_both_rows() -> None:
    df = frame("sensors", {}, {"name": "duplicate entry"}, {"sensor_id": "p101-nde-vib"})
    result = validate_rows(df, CANONICAL_MODELS["sensors"])
    assert result.rejected.index.tolist() == [0, 1]
    assert result.rejected["reject_field"].tolist() == ["device_id, sensor_id"] * 2
    assert len(result.valid) == 1


def test_pandera_alone_rejects_naive_timestamps_instead_of_assuming_utc() -> None:
    df = frame("work_orders", {"created_at": "2024-03-01 08:00:00"})
    with pytest.raises(pa.errors.SchemaErrors) as excinfo:
        WorkOrder.validate(df, lazy=True)
    cases = excinfo.value.failure_cases
    assert cases.loc[cases["column"] == "created_at", "index"].tolist()[0] == 0


def test_naive_datetime64_column_is_rejected_row_by_row() -> None:
    df = frame("sensor_readings", {}, {})
    df["ts"] = pd.to_datetime(["2024-03-01 08:00", None])
    result = validate_rows(df, SensorReading)
    assert result.rejected.index.tolist() == [0, 1]
    assert result.rejected["reject_reason"].tolist()[0].startswith("ts: ")
    assert "has no time zone" in result.rejected["reject_reason"].iloc[0]
    assert result.rejected["reject_reason"].iloc[1] == "ts: missing"


def test_float_values_keep_their_precision() -> None:
    df = frame("sensor_readings", {"value": "4.25"}, {"value": np.float32(1.5)})
    valid = validate_rows(df, SensorReading).valid
    assert valid["value"].tolist() == [4.25, 1.5]
    assert valid["value"].dtype == np.float64
