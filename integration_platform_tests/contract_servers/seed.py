"""Realistic maintenance records shared by the contract servers and the SQL contract tables.

Several work orders carry the SAME change timestamp (a bulk status change in the CMMS): with
a page size of 5 the group at positions 3-7 spans the first page boundary, and the last three
orders share the newest timestamp, so an incremental read starts inside a group.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

# Maximo renders dates in the server's time zone, with the offset.
SERVER_OFFSET = timezone(timedelta(hours=-5))
FIRST_CHANGE = datetime(2026, 1, 5, 13, 0, tzinfo=UTC)

_JOBS = [
    ("11430", "CM", 2, "INPRG", "Replace mechanical seal, cooling water pump P-101", "JONES"),
    ("11450", "PM", 3, "APPR", "Quarterly lubrication, boiler feed pump P-204", "SMITH"),
    ("12700", "PM", 3, "WSCH", "Replace filters, air handling unit AHU-3", "BROWN"),
    ("13120", "CM", 1, "INPRG", "Compressor C-2 trips on high discharge temperature", "JONES"),
    ("11430", "INSP", 3, "COMP", "Vibration route, cooling water pumps", "WILSON"),
    ("13170", "CM", 2, "WMATL", "Conveyor CV-7 belt tracking off, replace idlers", "GARCIA"),
    ("12750", "PM", 4, "APPR", "Annual inspection, chiller CH-1 condenser tubes", "BROWN"),
    ("11450", "EM", 1, "INPRG", "Boiler feed pump P-204 leaking at casing", "SMITH"),
    ("13120", "PM", 3, "CLOSE", "Change oil and separator, compressor C-2", "GARCIA"),
    ("12700", "CAL", 3, "COMP", "Calibrate supply air temperature sensor, AHU-3", "WILSON"),
    ("13200", "CM", 2, "WAPPR", "Motor M-12 bearing noise, check alignment", "JONES"),
    ("13170", "LUB", 4, "APPR", "Grease conveyor CV-7 head and tail pulleys", "GARCIA"),
    ("12750", "CM", 2, "INPRG", "Chiller CH-1 low refrigerant alarm", "BROWN"),
    ("11430", "PM", 3, "WSCH", "Replace coupling insert, cooling water pump P-101", "SMITH"),
    ("13250", "INSP", 3, "APPR", "Thermography, main switchboard MSB-1", "WILSON"),
    ("13200", "PM", 4, "COMP", "Motor M-12 insulation resistance test", "JONES"),
    ("12800", "CLN", 4, "APPR", "Clean cooling tower CT-1 basin and strainers", "GARCIA"),
    ("11450", "CM", 2, "CAN", "Duplicate of 1008, cancelled", "SMITH"),
    ("13120", "PDM", 2, "APPR", "Oil analysis trend rising iron, compressor C-2", "WILSON"),
    ("12800", "CM", 1, "INPRG", "Cooling tower CT-1 fan gearbox noise", "BROWN"),
    ("13250", "PM", 3, "WSCH", "Tighten terminations, main switchboard MSB-1", "JONES"),
    ("12700", "CM", 3, "WAPPR", "AHU-3 damper actuator not responding", "GARCIA"),
    ("13170", "PM", 3, "APPR", "Conveyor CV-7 gearbox oil change", "SMITH"),
]

# Minutes after FIRST_CHANGE for each order; equal values are one bulk change.
_CHANGE_MINUTES = [0, 7, 14, 30, 30, 30, 30, 30, 41, 55, 62, 70, 88, 95, 101, 120, 133, 140, 152,
                   167, 180, 180, 180]  # fmt: skip


def maximo_date(moment: datetime) -> str:
    """A timestamp as Maximo renders it: ISO-8601 in the server's zone, with its offset."""
    return moment.astimezone(SERVER_OFFSET).isoformat(timespec="seconds")


def work_orders() -> list[dict[str, object]]:
    """23 work orders at sites BEDFORD and NASHUA, in Maximo's attribute names."""
    orders = []
    for index, (asset, worktype, priority, status, text, lead) in enumerate(_JOBS):
        changed = FIRST_CHANGE + timedelta(minutes=_CHANGE_MINUTES[index])
        reported = changed - timedelta(days=3, hours=index % 5)
        order: dict[str, object] = {
            "wonum": str(1001 + index),
            "siteid": "NASHUA" if index % 6 == 5 else "BEDFORD",
            "orgid": "EAGLENA",
            "description": text,
            "status": status,
            "worktype": worktype,
            "wopriority": priority,
            "assetnum": asset,
            "reportdate": maximo_date(reported),
            "schedstart": maximo_date(reported + timedelta(days=1)),
            "targcompdate": maximo_date(reported + timedelta(days=5)),
            "lead": lead,
            "changedate": maximo_date(changed),
        }
        if status in ("INPRG", "COMP", "CLOSE"):
            order["actstart"] = maximo_date(reported + timedelta(days=1, hours=2))
        if status in ("COMP", "CLOSE"):
            order["actfinish"] = maximo_date(reported + timedelta(days=1, hours=6))
            order["actlabhrs"] = 4.0
            order["actlabcost"] = 340.0
            order["actmatcost"] = 125.5
            order["acttotalcost"] = 465.5
        if worktype == "PM":
            order["pmnum"] = f"PM{asset}"
        orders.append(order)
    return orders


def assets() -> list[dict[str, object]]:
    """The assets the work orders point at."""
    rows = [
        ("11430", "Centrifugal pump P-101, cooling water", "PUMP", "Goulds", 1),
        ("11450", "Boiler feed pump P-204", "PUMP", "Grundfos", 1),
        ("12700", "Air handling unit AHU-3", "HVAC", "Trane", 2),
        ("12750", "Water-cooled chiller CH-1", "CHILLER", "Carrier", 1),
        ("12800", "Cooling tower CT-1", "HVAC", "Baltimore Aircoil", 2),
        ("13120", "Rotary screw compressor C-2", "COMPRESSOR", "Atlas Copco", 1),
        ("13170", "Belt conveyor CV-7", "CONVEYOR", "Dorner", 3),
        ("13200", "Induction motor M-12, 75 kW", "MOTOR", "ABB", 2),
        ("13250", "Main switchboard MSB-1", "ELECTRICAL", "Schneider", 1),
    ]
    result = []
    for index, (assetnum, text, kind, maker, priority) in enumerate(rows):
        changed = FIRST_CHANGE - timedelta(days=30) + timedelta(hours=index * 3)
        result.append(
            {
                "assetnum": assetnum,
                "siteid": "BEDFORD",
                "orgid": "EAGLENA",
                "description": text,
                "assettype": kind,
                "status": "OPERATING",
                "manufacturer": maker,
                "serialnum": f"SN-{assetnum}-{2019 + index % 5}",
                "installdate": maximo_date(datetime(2019 + index % 5, 3, 1, 12, tzinfo=UTC)),
                "priority": priority,
                "location": "BR300" if index < 5 else "BR400",
                "changedate": maximo_date(changed),
            }
        )
    return result


# (pmnum, asset, description, worktype, status, frequency, frequnit, meter (name, every, last))
_Meter = tuple[str, float, float]
_PMS: list[tuple[str, str, str, str, str, int | None, str | None, _Meter | None]] = [
    ("PM1001", "11430", "Quarterly vibration route, P-101", "INSP", "ACTIVE", 3, "MONTHS", None),
    ("PM1002", "11450", "Lubricate bearings, P-204", "LUB", "ACTIVE", 6, "WEEKS", None),
    ("PM1003", "12700", "Replace filters, AHU-3", "PM", "ACTIVE", 90, "DAYS", None),
    ("PM1004", "12750", "Condenser tube inspection, CH-1", "PM", "INACTIVE", 1, "YEARS", None),
    ("PM1005", "13120", "Oil and separator change, C-2", "PM", "ACTIVE", None, None,
     ("RUNHOURS", 4000.0, 16000.0)),
    ("PM1006", "13170", "Grease pulleys, conveyor CV-7", "LUB", "ACTIVE", 1, "MONTHS", None),
    ("PM1007", "13200", "Insulation resistance test, M-12", "PM", "ACTIVE", 1, "YEARS",
     ("RUNHOURS", 8000.0, 24000.0)),
]  # fmt: skip
# Hours after FIRST_CHANGE for each PM; PM1003-PM1005 were changed together (a bulk update).
_PM_CHANGE_HOURS = [-240, -200, -150, -150, -150, -90, -20]


def pms() -> list[dict[str, object]]:
    """Preventive maintenance records (Maximo ``mxpm``): time-based (``frequency`` and
    ``frequnit``), meter-based (a ``pmmeter`` child, no time frequency) and both."""
    records = []
    for index, (pmnum, asset, text, worktype, status, every, unit, meter) in enumerate(_PMS):
        changed = FIRST_CHANGE + timedelta(hours=_PM_CHANGE_HOURS[index])
        last_start = changed - timedelta(days=20 + index)
        record: dict[str, object] = {
            "pmnum": pmnum,
            "siteid": "BEDFORD",
            "orgid": "EAGLENA",
            "description": text,
            "status": status,
            "assetnum": asset,
            "location": "BR300" if index < 5 else "BR400",
            "worktype": worktype,
            "wopriority": 2 + index % 3,
            "usetargetdate": index % 2 == 0,
            "laststartdate": maximo_date(last_start),
            "lastcompdate": maximo_date(last_start + timedelta(hours=6)),
            "changedate": maximo_date(changed),
        }
        if every is not None:
            record["frequency"] = every
            record["frequnit"] = unit
            record["nextdate"] = maximo_date(changed + timedelta(days=30 + index))
        if meter is not None:
            name, interval, last_reading = meter
            record["pmmeter"] = [
                {"metername": name, "frequency": interval, "lastpmwogenread": last_reading}
            ]
        records.append(record)
    return records
