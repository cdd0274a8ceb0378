"""Deterministic generator for the sample CMMS (Maximo-style) exports in ``cmms/``.

Run ``python data/samples/generate.py [--out DIR]``. The same seed always writes byte-identical
files: only ``random.Random.random()`` (whose output Python guarantees across versions) is used.
"""

from __future__ import annotations

import argparse
import csv
import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TypeVar
from zoneinfo import ZoneInfo

SEED = 20260131
EXPORT_AT = datetime(2026, 10, 31, 22, 0, tzinfo=UTC)  # extract snapshot time
PERIOD_START = date(2025, 1, 1)
PERIOD_END = date(2026, 10, 31)
N_WORK_ORDERS_TARGET = 3000
ROWSTAMP_START = 48_213_577

T = TypeVar("T")


class Rng:
    """Small RNG built only on ``random()`` so the stream never changes across Python versions."""

    def __init__(self, seed: int) -> None:
        self._r = random.Random(seed)

    def random(self) -> float:
        return self._r.random()

    def uniform(self, lo: float, hi: float) -> float:
        return lo + (hi - lo) * self.random()

    def randint(self, lo: int, hi: int) -> int:
        """Integer in ``[lo, hi]`` inclusive."""
        return lo + min(int(self.random() * (hi - lo + 1)), hi - lo)

    def chance(self, p: float) -> bool:
        return self.random() < p

    def choice(self, items: Sequence[T]) -> T:
        return items[self.randint(0, len(items) - 1)]

    def weighted(self, items: Sequence[T], weights: Sequence[float]) -> T:
        x = self.random() * sum(weights)
        for item, w in zip(items, weights, strict=True):
            x -= w
            if x < 0:
                return item
        return items[-1]

    def gauss(self, mu: float, sigma: float) -> float:
        u1 = max(self.random(), 1e-12)
        u2 = self.random()
        return mu + sigma * math.sqrt(-2.0 * math.log(u1)) * math.cos(2.0 * math.pi * u2)

    def lognormal(self, median: float, sigma: float) -> float:
        return median * math.exp(self.gauss(0.0, sigma))

    def sample(self, items: Sequence[T], k: int) -> list[T]:
        pool = list(items)
        out: list[T] = []
        for _ in range(min(k, len(pool))):
            out.append(pool.pop(self.randint(0, len(pool) - 1)))
        return out


# --------------------------------------------------------------------------------------------
# Reference data
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Site:
    siteid: str
    description: str
    timezone: str
    country: str
    currency: str
    num_base: int  # asset numbers at this site start here
    labor_rate: float  # per hour, site currency
    fx: float  # site currency per USD, for purchase prices
    n_units: int  # main equipment count
    technicians: tuple[str, ...]

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


SITES: tuple[Site, ...] = (
    Site(
        "BEDFORD",
        "Bedford Manufacturing Plant",
        "America/New_York",
        "US",
        "USD",
        1000,
        92.0,
        1.0,
        78,
        ("Mike Sullivan", "Jenna Ortiz", "Tom Gallagher", "Keisha Brown", "Paul Nguyen"),
    ),
    Site(
        "HAMBURG",
        "Hamburg Werk Harburg",
        "Europe/Berlin",
        "DE",
        "EUR",
        2000,
        78.0,
        0.92,
        66,
        ("Jonas Becker", "Lena Hoffmann", "Jürgen Schäfer", "Aylin Demir", "Niklas Wolf"),
    ),
    Site(
        "PUNE",
        "Pune Chakan Plant",
        "Asia/Kolkata",
        "IN",
        "INR",
        3000,
        1150.0,
        83.0,
        60,
        ("Rahul Deshpande", "Priya Kulkarni", "Sandeep Patil", "Anita Joshi"),
    ),
    Site(
        "TEXAS_CITY",
        "Texas City Chemical Works",
        "America/Chicago",
        "US",
        "USD",
        4000,
        84.0,
        1.0,
        64,
        ("Carlos Ramirez", "Dwayne Jackson", "Emily Carter", "Luis Herrera", "Brandon Lee"),
    ),
)


@dataclass(frozen=True)
class AssetType:
    code: str
    prefix: str
    weight: float  # share of main equipment
    names: tuple[str, ...]
    makers: tuple[tuple[str, tuple[str, ...]], ...]
    price_usd: tuple[float, float]
    criticality: tuple[float, float, float, float]  # weights for priority 1..4
    locations: tuple[str, ...]


ASSET_TYPES: dict[str, AssetType] = {
    t.code: t
    for t in (
        AssetType(
            "PUMP",
            "P",
            0.30,
            (
                "Cooling water pump",
                "Chilled water pump",
                "Condenser water pump",
                "Boiler feed pump",
                "Condensate return pump",
                "Process water pump",
                "Fire water pump",
            ),
            (
                ("Grundfos", ("CR 32-4", "NB 65-200/219", "TP 100-250/4", "NBG 125-100-315")),
                ("KSB", ("Etanorm 080-065-200", "Omega 150-360", "Multitec 50/4")),
                ("Sulzer", ("AHLSTAR A22-80", "SNS 40-250")),
                ("Flowserve", ("Durco Mark 3 3x2-10", "HPX 4x3-13")),
            ),
            (6_000, 45_000),
            (0.2, 0.4, 0.3, 0.1),
            ("BLDG1-PUMP-ROOM", "BLDG2-MECH-ROOM", "UTIL-CW-PLANT", "BLDG1-BOILER-HOUSE"),
        ),
        AssetType(
            "COMPRESSOR",
            "C",
            0.10,
            ("Instrument air compressor", "Process air compressor", "Plant air compressor"),
            (
                ("Atlas Copco", ("GA 75 VSD+", "GA 37+", "ZR 160 FF", "GA 110")),
                ("Ingersoll Rand", ("R75n", "R110i", "Nirvana N160")),
                ("Kaeser", ("BSD 72", "CSD 105", "DSD 175")),
            ),
            (40_000, 180_000),
            (0.45, 0.4, 0.15, 0.0),
            ("UTIL-COMP-HOUSE", "BLDG2-MECH-ROOM"),
        ),
        AssetType(
            "CHILLER",
            "CH",
            0.07,
            ("Centrifugal chiller", "Screw chiller", "Process chiller"),
            (
                ("Trane", ("CVHF 800", "RTAC 300", "RTHD C2")),
                ("Carrier", ("30XA 502", "19XR 1250", "30HXC 200")),
                ("Daikin", ("EWAD-TZ 650", "WMC 400 D", "EWWD-VZ 800")),
            ),
            (120_000, 450_000),
            (0.5, 0.35, 0.15, 0.0),
            ("UTIL-CW-PLANT", "BLDG2-MECH-ROOM", "BLDG3-ROOF"),
        ),
        AssetType(
            "AHU",
            "AHU",
            0.14,
            ("Air handling unit", "Make-up air unit", "Clean room AHU"),
            (
                ("Trane", ("M-Series CSAA 030", "Performance Climate Changer")),
                ("Carrier", ("39M 1200", "39CQ 25")),
                ("Daikin", ("D-AHU Professional 12", "Vision AHU 21")),
                ("Systemair", ("Geniox 20", "Topvex TR 12")),
            ),
            (25_000, 140_000),
            (0.1, 0.3, 0.4, 0.2),
            ("BLDG1-ROOF", "BLDG2-ROOF", "BLDG3-ROOF", "BLDG1-AHU-ROOM"),
        ),
        AssetType(
            "BOILER",
            "B",
            0.06,
            ("Steam boiler", "Hot water boiler"),
            (
                ("Bosch", ("Unimat UT-L 26", "Universal UL-S 5000", "Unimat UT-M 64")),
                ("Viessmann", ("Vitomax 200-HS", "Vitocrossal 200 CM2")),
                ("Cleaver-Brooks", ("CBEX Elite 200", "ClearFire CFH 700")),
            ),
            (80_000, 350_000),
            (0.55, 0.35, 0.1, 0.0),
            ("BLDG1-BOILER-HOUSE",),
        ),
        AssetType(
            "CONVEYOR",
            "CV",
            0.15,
            (
                "Packaging line conveyor",
                "Palletizer infeed conveyor",
                "Case conveyor",
                "Raw material belt conveyor",
            ),
            (
                ("Interroll", ("MX 025H", "Conveyor Platform CP")),
                ("Dorner", ("2200 Series", "3200 Series")),
                ("Hytrol", ("E24EZ", "190-ACC")),
                ("Siemens", ("SIMOVE CV 800",)),
            ),
            (8_000, 60_000),
            (0.15, 0.35, 0.35, 0.15),
            ("PROD-LINE-1", "PROD-LINE-2", "PROD-LINE-3", "WAREHOUSE-DOCK"),
        ),
        AssetType(
            "FAN",
            "F",
            0.12,
            ("Exhaust fan", "Process exhaust fan", "Ventilation fan"),
            (
                ("ebm-papst", ("RadiPac K3G400", "RadiCal R3G310")),
                ("Greenheck", ("SQ-120-VG", "CUBE-180")),
                ("Systemair", ("AXC 800", "DVG-H 400")),
                ("Howden", ("Variax 1800",)),
            ),
            (2_500, 25_000),
            (0.05, 0.2, 0.45, 0.3),
            ("BLDG1-ROOF", "BLDG2-ROOF", "BLDG3-ROOF", "PROD-LINE-2"),
        ),
        AssetType(
            "COOLING_TOWER",
            "CT",
            0.06,
            ("Cooling tower cell",),
            (
                ("Baltimore Aircoil", ("Series 3000 S3E", "Series V VTL")),
                ("EVAPCO", ("AT 212", "ESWA 144")),
                ("SPX Marley", ("NC8400", "MD5000")),
            ),
            (60_000, 220_000),
            (0.3, 0.45, 0.25, 0.0),
            ("CT-YARD",),
        ),
        AssetType(
            "MOTOR",
            "M",
            0.0,
            ("Drive motor",),
            (
                ("Siemens", ("1LE1003-1DB23", "1LE1501-2AB53", "1PH8 184")),
                ("ABB", ("M3BP 315SMC 4", "M3AA 132M 4", "M3BP 250SMA 2")),
                ("WEG", ("W22 IE3 200L", "W22 IE4 160M")),
                ("Bosch", ("Rexroth MSK101",)),
            ),
            (1_500, 30_000),
            (0.1, 0.3, 0.4, 0.2),
            (),
        ),
    )
}

# Share of driven equipment that carries its motor (or fan) as a child asset.
CHILD_MOTOR_SHARE = {"PUMP": 0.55, "COMPRESSOR": 0.5, "CONVEYOR": 0.45, "FAN": 0.25}
CHILD_FAN_SHARE = {"AHU": 0.6, "COOLING_TOWER": 0.9}

ASSET_STATUSES = ("OPERATING", "STANDBY", "NOT READY", "BROKEN", "DECOMMISSIONED")
CONDITIONS = ("EXCELLENT", "GOOD", "FAIR", "POOR", "CRITICAL")

ASSET_COLUMNS = (
    "assetnum",
    "siteid",
    "description",
    "assettype",
    "manufacturer",
    "modelnum",
    "serialnum",
    "installdate",
    "status",
    "assetcondition",
    "priority",
    "location",
    "parent",
    "purchaseprice",
    "currency",
    "changedate",
)
WO_COLUMNS = (
    "wonum",
    "siteid",
    "assetnum",
    "description",
    "worktype",
    "wopriority",
    "status",
    "reportdate",
    "schedstart",
    "targcompdate",
    "actstart",
    "actfinish",
    "actlabhrs",
    "actlabcost",
    "currency",
    "lead",
    "changedate",
    "rowstamp",
)
SITE_COLUMNS = ("siteid", "description", "timezone", "country", "currency")
DIRTY_COLUMNS = ("file", "key", "field", "problem")

# Work-order mix for the non-scheduled work types: expected count and eligible asset types.
ADHOC_WORK: dict[str, tuple[int, tuple[str, ...]]] = {
    "CM": (560, tuple(ASSET_TYPES)),
    "EM": (55, ("PUMP", "COMPRESSOR", "CHILLER", "BOILER", "CONVEYOR", "MOTOR")),
    "INSP": (265, tuple(ASSET_TYPES)),
    "PDM": (190, ("PUMP", "COMPRESSOR", "MOTOR", "FAN", "CHILLER")),
    "CLN": (150, ("AHU", "COOLING_TOWER", "CHILLER", "FAN", "CONVEYOR")),
    "CAL": (115, ("BOILER", "COMPRESSOR", "CHILLER")),
}
LUB_TYPES = ("MOTOR", "CONVEYOR", "PUMP", "FAN")

CM_PROBLEMS: dict[str, tuple[str, ...]] = {
    "PUMP": (
        "Mechanical seal leaking",
        "High vibration on pump bearing",
        "Low discharge pressure",
        "Coupling worn - replace",
    ),
    "COMPRESSOR": (
        "Compressor trips on high discharge temperature",
        "Oil carry-over - replace separator",
        "Air-end noise - investigate",
        "Unloader valve sticking",
    ),
    "CHILLER": (
        "Chiller low refrigerant alarm",
        "Condenser approach high - tube fouling",
        "Chiller tripped on low evaporator pressure",
        "Oil pump fault",
    ),
    "AHU": (
        "Supply air temperature not holding setpoint",
        "Belt broken on supply fan",
        "Heating coil valve stuck",
        "Damper actuator failed",
    ),
    "BOILER": (
        "Burner flame failure lockout",
        "Feedwater level control fault",
        "Refractory damage at burner",
        "Safety valve weeping",
    ),
    "CONVEYOR": (
        "Belt tracking off",
        "Gearbox oil leak",
        "Roller seized",
        "Photo-eye misaligned - jams",
    ),
    "MOTOR": (
        "Motor overheating",
        "Motor bearing noise",
        "Insulation resistance low",
        "Terminal box damaged",
    ),
    "FAN": ("Fan imbalance - high vibration", "Fan belt slipping", "Fan motor not starting"),
    "COOLING_TOWER": (
        "Fill media damaged",
        "Drift eliminator missing",
        "Basin leak",
        "Spray nozzle blockage",
    ),
}
EM_PROBLEMS: dict[str, tuple[str, ...]] = {
    "PUMP": ("EMERGENCY: pump failed - no flow", "EMERGENCY: major leak at pump casing"),
    "COMPRESSOR": ("EMERGENCY: compressor down - plant air loss",),
    "CHILLER": ("EMERGENCY: chiller down - process cooling lost",),
    "BOILER": ("EMERGENCY: boiler shutdown - no steam",),
    "CONVEYOR": ("EMERGENCY: conveyor stopped - line down",),
    "MOTOR": ("EMERGENCY: motor burnt out",),
}
PM_TASKS = {
    1: "Monthly PM",
    3: "Quarterly PM",
    6: "Semi-annual PM",
    12: "Annual PM",
}
OTHER_TASKS = {
    "INSP": ("Visual inspection", "Safety inspection", "Operator round findings check"),
    "PDM": ("Vibration analysis", "Thermographic survey", "Oil sample analysis"),
    "CLN": ("Clean coils and filters", "Clean and flush", "Cleaning of drains and basin"),
    "CAL": ("Calibrate pressure gauges", "Calibrate safety instrumentation", "Calibrate sensors"),
    "LUB": ("Lubrication route", "Grease bearings"),
}

# Labor hours: median per work type, multiplier per asset type.
LABOR_MEDIAN = {
    "PM": 3.0,
    "CM": 4.0,
    "EM": 6.0,
    "INSP": 1.0,
    "PDM": 1.5,
    "CLN": 2.5,
    "CAL": 2.0,
    "LUB": 0.75,
}
ASSET_EFFORT = {
    "PUMP": 1.0,
    "COMPRESSOR": 1.5,
    "CHILLER": 1.8,
    "AHU": 1.1,
    "BOILER": 1.6,
    "CONVEYOR": 0.9,
    "MOTOR": 0.8,
    "FAN": 0.7,
    "COOLING_TOWER": 1.3,
}
CM_HEAVY = {"COMPRESSOR": 2.2, "CHILLER": 2.8, "BOILER": 1.6}


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------


def fmt_ts(dt: datetime | None, site: Site) -> str:
    """ISO-8601 in the site's local time with its UTC offset; blank for None."""
    if dt is None:
        return ""
    return dt.astimezone(site.tz).isoformat(timespec="seconds")


def local(day: date, hour: int, minute: int, site: Site) -> datetime:
    """A wall-clock time at a site, as a UTC datetime."""
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=site.tz).astimezone(UTC)


def round5(dt: datetime) -> datetime:
    """Round down to a 5-minute boundary."""
    return dt.replace(minute=dt.minute - dt.minute % 5, second=0, microsecond=0)


def money(x: float) -> str:
    return f"{x:.2f}"


def add_months(day: date, months: int) -> date:
    m = day.month - 1 + months
    y = day.year + m // 12
    m = m % 12 + 1
    return date(y, m, min(day.day, 28))


# --------------------------------------------------------------------------------------------
# Assets
# --------------------------------------------------------------------------------------------


@dataclass
class Asset:
    assetnum: str
    site: Site
    description: str
    assettype: str
    manufacturer: str
    modelnum: str
    serialnum: str
    installdate: date
    status: str
    condition: str
    priority: int
    location: str
    parent: str
    price: float
    changedate: datetime
    children: list[str] = field(default_factory=list)
    overrides: dict[str, str] = field(default_factory=dict)  # deliberate dirt

    def row(self) -> dict[str, str]:
        row = {
            "assetnum": self.assetnum,
            "siteid": self.site.siteid,
            "description": self.description,
            "assettype": self.assettype,
            "manufacturer": self.manufacturer,
            "modelnum": self.modelnum,
            "serialnum": self.serialnum,
            "installdate": self.installdate.isoformat(),
            "status": self.status,
            "assetcondition": self.condition,
            "priority": str(self.priority),
            "location": self.location,
            "parent": self.parent,
            "purchaseprice": money(self.price),
            "currency": self.site.currency,
            "changedate": fmt_ts(self.changedate, self.site),
        }
        row.update(self.overrides)
        return row


def make_asset(
    rng: Rng,
    site: Site,
    type_code: str,
    number: int,
    description: str,
    location: str,
    parent: Asset | None,
) -> Asset:
    """One asset with plausible maker, model, dates, price and condition."""
    at = ASSET_TYPES[type_code]
    maker, models = rng.choice(at.makers)
    install = parent.installdate if parent else date(rng.randint(1998, 2024), 1, 1)
    if not parent:
        install = install + timedelta(days=rng.randint(0, 364))
    elif rng.chance(0.3):  # motor replaced later than the machine it drives
        install = min(install + timedelta(days=rng.randint(400, 4000)), date(2024, 12, 1))
    age = 2026 - install.year
    cond_w = (
        (0.5, 0.4, 0.1, 0.0, 0.0)
        if age < 5
        else (0.1, 0.45, 0.3, 0.12, 0.03)
        if age < 15
        else (0.02, 0.25, 0.4, 0.25, 0.08)
    )
    condition = "" if rng.chance(0.1) else rng.weighted(CONDITIONS, cond_w)
    if parent:
        status = parent.status if rng.chance(0.9) or parent.status == "DECOMMISSIONED" else "BROKEN"
        priority = min(4, parent.priority + (1 if rng.chance(0.3) else 0))
    else:
        status = rng.weighted(ASSET_STATUSES, (0.8, 0.08, 0.04, 0.04, 0.04))
        priority = rng.weighted((1, 2, 3, 4), at.criticality)
    if status == "BROKEN" and condition in ("", "EXCELLENT", "GOOD"):
        condition = "POOR"
    lo, hi = at.price_usd
    price = round(rng.uniform(lo, hi) * site.fx, -1 if site.fx > 10 else 0)
    serial = f"{maker[:2].upper()}{install.year % 100:02d}{rng.randint(100000, 999999)}"
    changed = EXPORT_AT - timedelta(days=rng.uniform(1, 700), minutes=rng.randint(0, 1439))
    return Asset(
        assetnum=f"{at.prefix}-{number}",
        site=site,
        description=description,
        assettype=type_code,
        manufacturer=maker,
        modelnum=rng.choice(models),
        serialnum=serial,
        installdate=install,
        status=status,
        condition=condition,
        priority=priority,
        location=location,
        parent=parent.assetnum if parent else "",
        price=price,
        changedate=round5(changed),
    )


def build_assets(rng: Rng) -> list[Asset]:
    """Main equipment per site, with child motors and fans under driven equipment."""
    assets: list[Asset] = []
    main_types = [c for c, t in ASSET_TYPES.items() if t.weight > 0]
    for site in SITES:
        counters: dict[str, int] = {c: site.num_base for c in ASSET_TYPES}
        name_seq: dict[str, int] = {}

        def next_num(code: str, counters: dict[str, int] = counters) -> int:
            counters[code] += 1
            return counters[code]

        for _ in range(site.n_units):
            code = rng.weighted(main_types, [ASSET_TYPES[c].weight for c in main_types])
            at = ASSET_TYPES[code]
            name = rng.choice(at.names)
            name_seq[name] = name_seq.get(name, 0) + 1
            desc = f"{name} {name_seq[name]}"
            main = make_asset(rng, site, code, next_num(code), desc, rng.choice(at.locations), None)
            assets.append(main)
            if rng.chance(CHILD_MOTOR_SHARE.get(code, 0.0)):
                child = make_asset(
                    rng, site, "MOTOR", next_num("MOTOR"), f"Motor - {desc}", main.location, main
                )
            elif rng.chance(CHILD_FAN_SHARE.get(code, 0.0)):
                label = "Supply fan" if code == "AHU" else "Fan"
                child = make_asset(
                    rng, site, "FAN", next_num("FAN"), f"{label} - {desc}", main.location, main
                )
            else:
                continue
            main.children.append(child.assetnum)
            assets.append(child)
    assets.sort(key=lambda a: (a.site.siteid, a.assetnum.split("-")[0], a.assetnum))
    return assets


# --------------------------------------------------------------------------------------------
# Work orders
# --------------------------------------------------------------------------------------------


@dataclass
class WorkOrder:
    asset: Asset
    worktype: str
    description: str
    priority: int
    reportdate: datetime
    schedstart: datetime | None
    targcompdate: datetime
    status: str = "WAPPR"
    actstart: datetime | None = None
    actfinish: datetime | None = None
    labhrs: float = 0.0
    lead: str = ""
    changedate: datetime | None = None
    wonum: str = ""
    rowstamp: int = 0
    overrides: dict[str, str] = field(default_factory=dict)  # deliberate dirt

    @property
    def site(self) -> Site:
        return self.asset.site

    @property
    def labcost(self) -> float:
        uplift = 1.5 if self.worktype == "EM" else 1.0  # call-out / overtime rate
        return round(self.labhrs * self.site.labor_rate * uplift, 2)

    def row(self) -> dict[str, str]:
        s = self.site
        row = {
            "wonum": self.wonum,
            "siteid": s.siteid,
            "assetnum": self.asset.assetnum,
            "description": self.description,
            "worktype": self.worktype,
            "wopriority": str(self.priority),
            "status": self.status,
            "reportdate": fmt_ts(self.reportdate, s),
            "schedstart": fmt_ts(self.schedstart, s),
            "targcompdate": fmt_ts(self.targcompdate, s),
            "actstart": fmt_ts(self.actstart, s),
            "actfinish": fmt_ts(self.actfinish, s),
            "actlabhrs": money(self.labhrs),
            "actlabcost": money(self.labcost),
            "currency": s.currency,
            "lead": self.lead,
            "changedate": fmt_ts(self.changedate, s),
            "rowstamp": str(self.rowstamp),
        }
        row.update(self.overrides)
        return row


def days_in_period() -> int:
    return (PERIOD_END - PERIOD_START).days


def plan_pm(rng: Rng, assets: list[Asset]) -> list[WorkOrder]:
    """Calendar-based PM (and LUB) work orders generated ahead of their scheduled start."""
    out: list[WorkOrder] = []
    for a in assets:
        if a.parent:  # children are covered by the parent's PM, but get lubrication routes
            freqs: list[tuple[str, int]] = [("LUB", 3)] if rng.chance(0.15) else []
        else:
            months = {
                1: rng.weighted((1, 3), (0.25, 0.75)),
                2: rng.weighted((3, 6), (0.7, 0.3)),
                3: 6,
                4: 12,
            }[a.priority]
            freqs = [("PM", months)]
            if a.assettype in LUB_TYPES and rng.chance(0.07):
                freqs.append(("LUB", 3))
        for wt, months in freqs:
            first = PERIOD_START + timedelta(days=rng.randint(0, months * 30 - 1))
            day = first
            k = 0
            while day <= PERIOD_END + timedelta(days=10):
                due = day + timedelta(days=rng.randint(-2, 2))
                if due.weekday() >= 5:
                    due += timedelta(days=7 - due.weekday())
                sched = local(due, 7, 0, a.site)
                report = round5(sched - timedelta(days=14, hours=rng.uniform(0, 48)))
                window = {1: 5, 3: 10, 6: 14, 12: 21}[months]
                task = PM_TASKS[months] if wt == "PM" else rng.choice(OTHER_TASKS["LUB"])
                desc = f"{task} - {a.description}"
                prio = min(4, a.priority + 1) if wt == "PM" else 4
                if report < EXPORT_AT - timedelta(hours=2) and report.date() >= PERIOD_START:
                    out.append(
                        WorkOrder(
                            a,
                            wt,
                            desc,
                            prio,
                            report,
                            sched,
                            local(due + timedelta(days=window), 17, 0, a.site),
                        )
                    )
                k += 1
                day = add_months(first, months * k)
    return out


def plan_adhoc(rng: Rng, assets: list[Asset]) -> list[WorkOrder]:
    """Corrective, emergency and condition-based work orders at random times."""
    out: list[WorkOrder] = []
    for wt, (count, types) in ADHOC_WORK.items():
        pool = [a for a in assets if a.assettype in types]
        # Corrective work falls more often on poor/broken and critical equipment.
        weights = []
        for a in pool:
            w = 1.0
            if wt in ("CM", "EM"):
                w *= {"POOR": 2.5, "CRITICAL": 4.0, "FAIR": 1.4}.get(a.condition, 1.0)
                w *= 2.0 if a.status == "BROKEN" else 1.0
            weights.append(w)
        for _ in range(count):
            a = rng.weighted(pool, weights)
            s = a.site
            day = PERIOD_START + timedelta(days=rng.randint(0, days_in_period()))
            if wt == "EM":
                report = local(day, rng.randint(0, 23), rng.randint(0, 11) * 5, s)
                prio = 1
                desc = rng.choice(EM_PROBLEMS[a.assettype])
                sched = report
                target = report + timedelta(hours=8)
            else:
                report = local(day, rng.randint(6, 17), rng.randint(0, 11) * 5, s)
                if wt == "CM":
                    prio = rng.weighted((1, 2, 3, 4), (0.1, 0.35, 0.4, 0.15))
                    prio = max(1, min(4, round((prio + a.priority) / 2)))
                    desc = rng.choice(CM_PROBLEMS[a.assettype])
                    lead_days = {1: 0, 2: 1, 3: 3, 4: 7}[prio]
                    target_days = {1: 1, 2: 3, 3: 10, 4: 21}[prio]
                else:
                    prio = rng.weighted((2, 3, 4), (0.2, 0.5, 0.3))
                    desc = f"{rng.choice(OTHER_TASKS[wt])} - {a.description}"
                    lead_days = rng.randint(3, 10)
                    target_days = lead_days + 7
                sched_day = (report + timedelta(days=lead_days)).astimezone(s.tz).date()
                sched = local(sched_day, 7, 0, s)
                if sched < report:
                    sched = round5(report + timedelta(minutes=30))
                target = local(
                    (report + timedelta(days=target_days)).astimezone(s.tz).date(), 16, 0, s
                )
            if report > EXPORT_AT - timedelta(hours=2):
                continue
            out.append(WorkOrder(a, wt, desc, prio, round5(report), sched, target))
    return out


def labor_hours(rng: Rng, wo: WorkOrder) -> float:
    """Labour hours by work type; corrective work on compressors/chillers runs much longer."""
    med = LABOR_MEDIAN[wo.worktype] * ASSET_EFFORT[wo.asset.assettype]
    if wo.worktype in ("CM", "EM"):
        med *= CM_HEAVY.get(wo.asset.assettype, 1.0)
    hrs = rng.lognormal(med, 0.45)
    return max(0.25, round(hrs * 4) / 4)


def simulate(rng: Rng, wo: WorkOrder) -> None:
    """Decide what happened to a work order by the export time: status, actuals, lead."""
    s = wo.site
    hrs = labor_hours(rng, wo)
    crew = 2 if hrs > 8 and rng.chance(0.6) else 1
    elapsed = hrs / crew
    if wo.worktype == "CM" and wo.asset.assettype in CM_HEAVY and rng.chance(0.35):
        elapsed += rng.uniform(24, 24 * 6)  # waiting on parts / specialist between visits
    elif elapsed > 8:
        elapsed += 16 * int(elapsed // 8)  # spreads over several day shifts
    sched = wo.schedstart or wo.reportdate
    if wo.worktype == "EM":
        start = wo.reportdate + timedelta(minutes=rng.randint(10, 90))
    else:
        late = rng.chance(0.13 if wo.worktype == "PM" else 0.2)
        window = (wo.targcompdate - sched).total_seconds() / 3600 - elapsed
        if late:
            delay_h = max(window, 0) + rng.uniform(4, 24 * 20)
        else:
            delay_h = rng.uniform(0, max(window * 0.7, 1))
        start = sched + timedelta(hours=delay_h)
        # Work starts in the day shift.
        loc = start.astimezone(s.tz)
        if loc.hour < 6 or loc.hour > 15:
            start = local(loc.date() + timedelta(days=loc.hour > 15), 7, 0, s)
        start += timedelta(minutes=rng.randint(0, 90))
    start = round5(max(start, wo.reportdate + timedelta(minutes=5)))
    finish = round5(start + timedelta(hours=elapsed)) + timedelta(minutes=5)
    wo.lead = rng.choice(s.technicians)

    backlog = {"PM": 0.08, "CM": 0.06}.get(wo.worktype, 0.04)
    if wo.targcompdate < EXPORT_AT - timedelta(days=120):
        backlog *= 0.15  # old overdue work is mostly cleaned up
    stuck = wo.targcompdate < EXPORT_AT and wo.worktype != "EM" and rng.chance(backlog)
    if stuck and rng.chance(0.7):
        start = EXPORT_AT + timedelta(days=1)  # never started
    if rng.chance(0.03) and wo.worktype != "EM":
        wo.status = "CAN"
        wo.changedate = round5(wo.reportdate + timedelta(days=rng.uniform(0.5, 20)))
        wo.lead = "" if rng.chance(0.5) else wo.lead
    elif finish <= EXPORT_AT and not stuck:
        wo.actstart, wo.actfinish, wo.labhrs = start, finish, hrs
        closed_at = finish + timedelta(days=rng.uniform(2, 30))
        if closed_at <= EXPORT_AT and rng.chance(0.93):
            wo.status = "CLOSE"
            wo.changedate = round5(closed_at)
        else:
            wo.status = "COMP"
            wo.changedate = round5(finish + timedelta(minutes=rng.randint(5, 240)))
    elif start <= EXPORT_AT:
        # Started but not finished (or stuck in backlog after starting).
        wo.actstart = start
        frac = min(1.0, (EXPORT_AT - start).total_seconds() / 3600 / max(elapsed, 0.5))
        wo.labhrs = round(hrs * frac * rng.uniform(0.3, 0.9) * 4) / 4
        wo.status = "WMATL" if wo.worktype == "CM" and rng.chance(0.4) else "INPRG"
        wo.changedate = round5(min(EXPORT_AT, start + timedelta(hours=rng.uniform(0.1, 30))))
    else:
        # Not started: waiting for approval, approved, or scheduled (some overdue backlog).
        age_h = (EXPORT_AT - wo.reportdate).total_seconds() / 3600
        if wo.worktype in ("PM", "LUB"):
            wo.status = rng.weighted(("APPR", "WSCH"), (0.3, 0.7))
        elif age_h < 48:
            wo.status = rng.weighted(("WAPPR", "APPR"), (0.7, 0.3))
        else:
            wo.status = rng.weighted(("WAPPR", "APPR", "WSCH", "WMATL"), (0.15, 0.3, 0.4, 0.15))
        if wo.status == "WAPPR":
            wo.lead = ""
        touched = wo.reportdate + timedelta(hours=rng.uniform(0.1, max(age_h, 0.2)))
        wo.changedate = round5(min(touched, EXPORT_AT))
    assert wo.changedate is not None
    wo.changedate = min(max(wo.changedate, wo.reportdate), EXPORT_AT)
    if wo.lead and rng.chance(0.05):
        wo.lead = ""  # crews without a named lead


# --------------------------------------------------------------------------------------------
# Dirty rows and CDC duplicates
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Dirty:
    file: str
    key: str
    field: str
    problem: str

    def row(self) -> dict[str, str]:
        return {"file": self.file, "key": self.key, "field": self.field, "problem": self.problem}


def dirty_assets(rng: Rng, assets: list[Asset]) -> list[Dirty]:
    """Spoil a few leaf assets (no children) with one problem each."""
    leaves = [a for a in assets if not a.children and a.status != "DECOMMISSIONED"]
    picks = rng.sample(leaves, 6)
    kinds = [
        ("status", "RUNNING", "unknown asset status code 'RUNNING'"),
        ("status", "ACTIVE", "unknown asset status code 'ACTIVE'"),
        ("installdate", "2013-02-30", "unparseable installdate '2013-02-30'"),
        ("installdate", "unknown", "unparseable installdate 'unknown'"),
        ("purchaseprice", None, "negative purchaseprice"),
        ("purchaseprice", None, "negative purchaseprice"),
    ]
    out = []
    for a, (fld, value, problem) in zip(picks, kinds, strict=True):
        a.overrides[fld] = value if value is not None else money(-a.price)
        out.append(Dirty("assets.csv", a.assetnum, fld, problem))
    return out


def dirty_work_orders(rng: Rng, wos: list[WorkOrder], taken: set[str]) -> list[Dirty]:
    """Spoil about 1% of work orders, one problem per row, each kind at least twice."""
    out: list[Dirty] = []

    def pick(n: int, ok: Callable[[WorkOrder], bool] | None = None) -> list[WorkOrder]:
        cands = [w for w in wos if w.wonum not in taken and (ok is None or ok(w))]
        chosen = rng.sample(cands, n)
        taken.update(w.wonum for w in chosen)
        return chosen

    def done(w: WorkOrder) -> bool:
        return w.status in ("COMP", "CLOSE")

    def spoil(w: WorkOrder, fld: str, value: str, problem: str) -> None:
        w.overrides[fld] = value
        out.append(Dirty("work_orders.csv", w.wonum, fld, problem))

    for w in pick(3):
        spoil(w, "status", "DONE", "unknown status code 'DONE'")
    for w in pick(3):
        spoil(w, "worktype", "XX", "unknown worktype 'XX'")
    for w in pick(3):
        spoil(w, "wopriority", "9", "wopriority 9 out of range 1..4")
    for w, (fld, value) in zip(
        pick(4, done),
        [
            ("targcompdate", "31/02/2026"),
            ("targcompdate", "31/02/2026"),
            ("schedstart", "yesterday"),
            ("actstart", "yesterday"),
        ],
        strict=True,
    ):
        spoil(w, fld, value, f"unparseable {fld} '{value}'")
    for w in pick(3, done):
        assert w.actstart is not None
        bad = round5(w.actstart - timedelta(hours=rng.uniform(2, 30)))
        spoil(w, "actfinish", fmt_ts(bad, w.site), "actfinish before actstart")
    for w in pick(3, done):
        spoil(w, "actlabhrs", money(-w.labhrs), "negative actlabhrs")
    for w in pick(3):
        spoil(w, "assetnum", "", "missing assetnum")
    for w in pick(3):
        spoil(w, "reportdate", "", "missing reportdate")
    for w in pick(3, lambda w: done(w) and w.labhrs > 0):
        spoil(w, "currency", "", "actlabcost without currency (blank)")
    for w in pick(3, lambda w: w.status == "COMP"):
        spoil(w, "actfinish", "", "status COMP but actfinish is blank")
    for w in pick(3, lambda w: w.site.currency == "EUR" and w.labhrs > 0):
        spoil(w, "currency", "EURO", "unknown currency code 'EURO'")
    return out


def cdc_duplicates(rng: Rng, wos: list[WorkOrder], taken: set[str]) -> list[WorkOrder]:
    """Earlier versions of some finished work orders, exported again before they completed."""
    cands = [
        w
        for w in wos
        if w.wonum not in taken
        and w.status in ("COMP", "CLOSE")
        and w.actstart is not None
        and w.actstart > EXPORT_AT - timedelta(days=120)
    ]
    olds: list[WorkOrder] = []
    for w in rng.sample(cands, 8):
        taken.add(w.wonum)
        assert w.actstart is not None and w.actfinish is not None
        old = WorkOrder(
            w.asset,
            w.worktype,
            w.description,
            w.priority,
            w.reportdate,
            w.schedstart,
            w.targcompdate,
            wonum=w.wonum,
            lead=w.lead,
        )
        if rng.chance(0.6):
            old.status, old.actstart = "INPRG", w.actstart
            span = (w.actfinish - w.actstart) * rng.uniform(0.1, 0.6)
            old.changedate = round5(w.actstart + span)
            old.labhrs = round(w.labhrs * rng.uniform(0.2, 0.6) * 4) / 4
        else:
            old.status = "APPR"
            old.lead = ""
            old.changedate = round5(w.reportdate + (w.actstart - w.reportdate) / 3)
        old.changedate = max(old.changedate, w.reportdate)
        olds.append(old)
    return olds


# --------------------------------------------------------------------------------------------
# Output
# --------------------------------------------------------------------------------------------


def write_csv(path: Path, columns: Sequence[str], rows: list[dict[str, str]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(columns), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)


def generate(out_dir: Path, seed: int = SEED) -> dict[str, int]:
    """Write all sample files under ``out_dir/cmms``; returns row counts per file."""
    rng = Rng(seed)
    assets = build_assets(rng)
    dirty = dirty_assets(rng, assets)
    bad_assets = {d.key for d in dirty}
    usable = [a for a in assets if a.status != "DECOMMISSIONED" and a.assetnum not in bad_assets]

    wos = plan_pm(rng, usable) + plan_adhoc(rng, usable)
    wos.sort(key=lambda w: (w.reportdate, w.asset.assetnum, w.worktype))
    number = 101_000
    for w in wos:
        number += rng.randint(1, 3)
        w.wonum = f"WO-{number}"
        simulate(rng, w)

    taken: set[str] = set()
    dupes = cdc_duplicates(rng, wos, taken)
    dirty += dirty_work_orders(rng, wos, taken)

    export = wos + dupes
    export.sort(key=lambda w: (w.changedate, w.wonum))
    stamp = ROWSTAMP_START
    for w in export:
        stamp += rng.randint(1, 40)
        w.rowstamp = stamp

    cmms = out_dir / "cmms"
    site_rows = [
        {
            "siteid": s.siteid,
            "description": s.description,
            "timezone": s.timezone,
            "country": s.country,
            "currency": s.currency,
        }
        for s in SITES
    ]
    write_csv(cmms / "sites.csv", SITE_COLUMNS, site_rows)
    write_csv(cmms / "assets.csv", ASSET_COLUMNS, [a.row() for a in assets])
    write_csv(cmms / "work_orders.csv", WO_COLUMNS, [w.row() for w in export])
    write_csv(cmms / "dirty_rows.csv", DIRTY_COLUMNS, [d.row() for d in dirty])
    return {
        "sites.csv": len(site_rows),
        "assets.csv": len(assets),
        "work_orders.csv": len(export),
        "dirty_rows.csv": len(dirty),
    }


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out",
        type=Path,
        default=Path(__file__).resolve().parent,
        help="folder that receives cmms/ (default: next to this script)",
    )
    parser.add_argument("--seed", type=int, default=SEED, help="random seed")
    args = parser.parse_args(argv)
    for name, n in generate(args.out, args.seed).items():
        print(f"{args.out / 'cmms' / name}: {n} rows")


if __name__ == "__main__":
    main()
