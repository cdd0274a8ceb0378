"""A Maximo OSLC/JSON API contract server.

Follows the shape IBM documents for the NextGen REST API: object structures under
``<context root>/os/<name>``, ``lean=1`` JSON (namespaced JSON without it), ``oslc.select``,
``oslc.where`` (``=``, ``!=``, ``>=``, ``<=``, ``>``, ``<``, ``in [...]``, ``like``), an
``oslc.orderBy`` whose attributes must each carry a ``+``/``-`` sign, ``oslc.pageSize`` with
``responseInfo.nextPage.href`` and ``pagenum`` (``totalCount`` with ``collectioncount=1``),
records with ``href`` (``_`` + base64 rest id) and ``_rowstamp``, null attributes left out,
child objects selected with ``child{attr,...}`` (PMs' ``pmmeter`` rows),
``apikey``/``maxauth``/Basic auth answering 401 with a ``BMXAA`` error, creates with
``properties: *`` echo and updates by POST to the href with ``x-method-override: PATCH``.
Data lives in a SQLite file, so a write is visible on the next read.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import sqlite3
import threading
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from integration_platform_tests.contract_servers import seed
from integration_platform_tests.contract_servers.runner import LoopbackServer

# Object structure -> (table, key attributes in rest-id order). Maximo builds the rest id
# from the MBO's unique key: WONUM/SITEID, ASSETNUM/SITEID.
OBJECT_STRUCTURES: dict[str, tuple[str, tuple[str, ...]]] = {
    "mxwo": ("workorder", ("wonum", "siteid")),
    "mxapiwodetail": ("workorder", ("wonum", "siteid")),
    "mxasset": ("asset", ("assetnum", "siteid")),
    "mxapiasset": ("asset", ("assetnum", "siteid")),
    "mxpm": ("pm", ("pmnum", "siteid")),
    "mxapipm": ("pm", ("pmnum", "siteid")),
}
DATE_ATTRIBUTES = frozenset(
    {"changedate", "reportdate", "schedstart", "schedfinish", "targcompdate", "actstart",
     "actfinish", "installdate", "statusdate", "nextdate", "laststartdate", "lastcompdate"}
)  # fmt: skip
FIRST_ROWSTAMP = 1_000_000


def rest_id(values: Iterable[str]) -> str:
    encoded = base64.b64encode("/".join(values).encode()).decode("ascii")
    return "_" + encoded.replace("=", "-")


class MaximoStore:
    """Records in a SQLite file: one row per record, its JSON and its rowstamp."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        with self._connect() as db:
            db.execute(
                "CREATE TABLE IF NOT EXISTS records (tbl TEXT, rest_id TEXT, rowstamp INTEGER,"
                " data TEXT, PRIMARY KEY (tbl, rest_id))"
            )
            db.execute("CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INT)")
            db.execute("INSERT OR IGNORE INTO counters VALUES ('rowstamp', ?)", (FIRST_ROWSTAMP,))

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(self.path, timeout=10, isolation_level=None)

    def _next_rowstamp(self, db: sqlite3.Connection) -> int:
        db.execute("UPDATE counters SET value = value + 1 WHERE name = 'rowstamp'")
        return db.execute("SELECT value FROM counters WHERE name = 'rowstamp'").fetchone()[0]

    def put(self, table: str, key: tuple[str, ...], record: Mapping[str, Any]) -> dict[str, Any]:
        """Insert or replace a record; a new rowstamp each time."""
        values = [str(record[name]) for name in key]
        with self._lock, self._connect() as db:
            db.execute("BEGIN IMMEDIATE")
            stamp = self._next_rowstamp(db)
            data = {name: value for name, value in record.items() if value is not None}
            db.execute(
                "INSERT OR REPLACE INTO records VALUES (?, ?, ?, ?)",
                (table, rest_id(values), stamp, json.dumps(data)),
            )
            db.execute("COMMIT")
        return {**data, "_rowstamp": str(stamp), "_restid": rest_id(values)}

    def get(self, table: str, rid: str) -> dict[str, Any] | None:
        with self._connect() as db:
            row = db.execute(
                "SELECT rowstamp, data FROM records WHERE tbl = ? AND rest_id = ?", (table, rid)
            ).fetchone()
        if row is None:
            return None
        return {**json.loads(row[1]), "_rowstamp": str(row[0]), "_restid": rid}

    def all(self, table: str) -> list[dict[str, Any]]:
        with self._connect() as db:
            rows = db.execute(
                "SELECT rest_id, rowstamp, data FROM records WHERE tbl = ?", (table,)
            ).fetchall()
        # One JSON document for the whole table parses faster than one per record.
        records = json.loads("[" + ",".join(data for _, _, data in rows) + "]")
        for record, (rid, stamp, _) in zip(records, rows, strict=True):
            record["_rowstamp"] = str(stamp)
            record["_restid"] = rid
        return records

    def max_number(self, table: str, attribute: str) -> int:
        numbers = [int(r[attribute]) for r in self.all(table) if str(r[attribute]).isdigit()]
        return max(numbers, default=1000)


@dataclass
class Fault:
    kind: str  # "status" | "malformed" | "delay"
    status: int = 0
    retry_after: str | None = None
    seconds: float = 0.0


@dataclass
class SeenRequest:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    status: int = 0


class BadQuery(ValueError):
    """A query Maximo would refuse with 400."""


@dataclass
class MaximoContractServer:
    """Maximo on 127.0.0.1 backed by ``db_path``; knobs inject faults for the next requests."""

    db_path: Path
    context_root: str = "/maximo/oslc"
    api_keys: tuple[str, ...] = ("contract-api-key",)
    users: Mapping[str, str] = field(default_factory=lambda: {"maxadmin": "maxadmin"})
    public_origin: str | None = None
    requests: list[SeenRequest] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.store = MaximoStore(self.db_path)
        self._faults: deque[Fault] = deque()
        self._lock = threading.Lock()
        root = self.context_root.rstrip("/")
        self.app = Starlette(
            routes=[
                Route(f"{root}/whoami", self._whoami, methods=["GET"]),
                Route(f"{root}/os/{{os}}", self._collection, methods=["GET", "POST"]),
                Route(f"{root}/os/{{os}}/{{rid}}", self._member, methods=["GET", "POST"]),
            ]
        )
        self._runner = LoopbackServer(self._guarded)

    # -- life cycle and knobs --------------------------------------------------------------

    @property
    def base_url(self) -> str:
        return self._runner.base_url

    @property
    def api_url(self) -> str:
        return self.base_url + self.context_root

    def start(self) -> MaximoContractServer:
        self._runner.start()
        return self

    def stop(self) -> None:
        self._runner.stop()

    def seed(self) -> MaximoContractServer:
        for order in seed.work_orders():
            self.put_work_order(order)
        for asset in seed.assets():
            self.store.put("asset", ("assetnum", "siteid"), asset)
        for pm in seed.pms():
            self.put_pm(pm)
        return self

    def put_pm(self, record: Mapping[str, Any]) -> dict[str, Any]:
        """Store a PM as if changed in Maximo (the record's own changedate kept)."""
        return self.store.put("pm", ("pmnum", "siteid"), record)

    def put_asset(self, record: Mapping[str, Any]) -> dict[str, Any]:
        """Store an asset as if changed in Maximo (the record's own changedate kept)."""
        return self.store.put("asset", ("assetnum", "siteid"), record)

    def put_work_order(self, record: Mapping[str, Any]) -> dict[str, Any]:
        """Store a work order as if changed in Maximo (the record's own changedate kept)."""
        return self.store.put("workorder", ("wonum", "siteid"), record)

    def throttle_next(self, count: int, *, retry_after: str | None = "1") -> None:
        """Answer the next ``count`` requests with 429 (and ``Retry-After``)."""
        self._add(count, Fault("status", 429, retry_after))

    def fail_next(self, count: int, *, status: int = 503, retry_after: str | None = None) -> None:
        """Answer the next ``count`` requests with a 5xx."""
        self._add(count, Fault("status", status, retry_after))

    def malformed_next(self, count: int = 1) -> None:
        """Cut the JSON body of the next ``count`` answers short."""
        self._add(count, Fault("malformed"))

    def slow_next(self, count: int, *, seconds: float) -> None:
        """Delay the next ``count`` answers by ``seconds``."""
        self._add(count, Fault("delay", seconds=seconds))

    def _add(self, count: int, fault: Fault) -> None:
        with self._lock:
            self._faults.extend([fault] * count)

    def count(self, method: str = "GET", path_part: str = "/os/") -> int:
        return sum(1 for r in self.requests if r.method == method and path_part in r.path)

    # -- the ASGI entry: record, inject faults, authenticate -------------------------------

    async def _guarded(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        request = Request(scope, receive)
        seen = SeenRequest(
            request.method,
            request.url.path,
            dict(request.query_params),
            {k.lower(): v for k, v in request.headers.items()},
        )
        self.requests.append(seen)
        with self._lock:
            fault = self._faults.popleft() if self._faults else None
        response: Response | None = None
        if fault is not None and fault.kind == "delay":
            await asyncio.sleep(fault.seconds)
        if fault is not None and fault.kind == "status":
            response = self._fault_response(fault)
        if response is None:
            response = self._authenticate(request)
        if response is None:
            await self.app(scope, receive, self._capture(send, seen, fault))
            return
        seen.status = response.status_code
        await response(scope, receive, send)

    def _capture(self, send: Any, seen: SeenRequest, fault: Fault | None) -> Any:
        malformed = fault is not None and fault.kind == "malformed"

        async def wrapped(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                seen.status = message["status"]
                if malformed:
                    headers = [(k, v) for k, v in message["headers"] if k != b"content-length"]
                    message = {**message, "headers": headers}
            elif message["type"] == "http.response.body" and malformed:
                body = message.get("body", b"")
                message = {**message, "body": body[: max(len(body) // 2, 1)] + b"\n<html"}
            await send(message)

        return wrapped

    def _fault_response(self, fault: Fault) -> Response:
        headers = {"Retry-After": fault.retry_after} if fault.retry_after is not None else {}
        if fault.status == 500:
            return self._error(500, "BMXAA0000E", "An internal error occurred.", headers)
        text = {429: "Too Many Requests", 502: "Bad Gateway", 503: "Service Unavailable"}
        return PlainTextResponse(
            text.get(fault.status, "Error"), status_code=fault.status, headers=headers
        )

    def _authenticate(self, request: Request) -> Response | None:
        key = request.headers.get("apikey")
        if key is not None:
            if key in self.api_keys:
                return None
            return self._error(401, "BMXAA0021E", "The API key is not valid.")
        credentials = request.headers.get("maxauth")
        authorization = request.headers.get("authorization", "")
        if credentials is None and authorization.lower().startswith("basic "):
            credentials = authorization[6:]
        if credentials is not None:
            try:
                user, _, password = base64.b64decode(credentials).decode().partition(":")
            except ValueError:
                user, password = "", ""
            if user and self.users.get(user) == password:
                return None
        return self._error(
            401, "BMXAA7901E", "You cannot log in at this time. Contact the system administrator."
        )

    def _error(
        self, status: int, code: str, message: str, headers: Mapping[str, str] | None = None
    ) -> JSONResponse:
        body = {
            "Error": {
                "extendedError": {
                    "moreInfo": {"href": f"{self._origin()}{self.context_root}/error/{code}"}
                },
                "reasonCode": code,
                "message": f"{code} - {message}",
                "statusCode": str(status),
            }
        }
        return JSONResponse(body, status_code=status, headers=dict(headers or {}))

    def _origin(self, request: Request | None = None) -> str:
        if self.public_origin:
            return self.public_origin
        if request is not None:
            return f"{request.url.scheme}://{request.url.netloc}"
        return self.base_url

    # -- endpoints -------------------------------------------------------------------------

    async def _whoami(self, request: Request) -> Response:
        return JSONResponse(
            {
                "personid": "MAXADMIN",
                "loginID": "maxadmin",
                "displayName": "Max Admin",
                "defaultSite": "BEDFORD",
                "insertOrg": "EAGLENA",
                "langcode": "EN",
            }
        )

    def _structure(self, request: Request) -> tuple[str, tuple[str, ...]] | None:
        return OBJECT_STRUCTURES.get(request.path_params["os"].lower())

    async def _collection(self, request: Request) -> Response:
        structure = self._structure(request)
        if structure is None:
            return self._error(404, "BMXAA8727E", "The object structure does not exist.")
        if request.method == "POST":
            return await self._create(request, *structure)
        try:
            return self._query(request, *structure)
        except BadQuery as exc:
            return self._error(400, "BMXAA8742E", str(exc))

    def _query(self, request: Request, table: str, key: tuple[str, ...]) -> Response:
        params = request.query_params
        records = self.store.all(table)
        where = params.get("oslc.where")
        if where:
            clauses = parse_where(where)
            records = [r for r in records if all(c(r) for c in clauses)]
        order = params.get("oslc.orderBy")
        if order:
            records = order_records(records, order)
        lean = params.get("lean") in ("1", "true")
        select = params.get("oslc.select", "*")
        collection = f"{self._origin(request)}{request.url.path}"
        info: dict[str, Any] = {}
        page_size = int(params.get("oslc.pageSize", "0") or 0)
        total = len(records)
        if page_size > 0:
            page = int(params.get("pageno", "1"))
            pages = max((total + page_size - 1) // page_size, 1)
            records = records[(page - 1) * page_size : page * page_size]
            base = {k: v for k, v in params.items() if k != "pageno"}
            info["href"] = f"{collection}?{urlencode({**base, 'pageno': page})}"
            info["pagenum"] = page
            if page < pages:
                info["nextPage"] = {
                    "href": f"{collection}?{urlencode({**base, 'pageno': page + 1})}"
                }
            if page > 1:
                info["previousPage"] = {
                    "href": f"{collection}?{urlencode({**base, 'pageno': page - 1})}"
                }
            if params.get("collectioncount") == "1":
                info["totalCount"], info["totalPages"] = total, pages
        else:
            info["href"] = str(request.url)
            if params.get("collectioncount") == "1":
                info["totalCount"] = total
        wanted = parse_select(select)  # once per page, not once per record
        members = [self._render_selected(r, collection, wanted) for r in records]
        body = {"member": members, "href": collection, "responseInfo": info}
        return JSONResponse(body if lean else namespaced(body))

    def _render(self, record: Mapping[str, Any], collection: str, select: str) -> dict[str, Any]:
        return self._render_selected(record, collection, parse_select(select))

    def _render_selected(
        self,
        record: Mapping[str, Any],
        collection: str,
        wanted: dict[str, tuple[str, ...] | None] | None,
    ) -> dict[str, Any]:
        """A record as Maximo sends it: the selected attributes (``wanted`` from
        :func:`parse_select`), nulls left out, with ``_rowstamp`` and ``href``."""
        out: dict[str, Any] = {}
        for k, v in record.items():
            if v is None or k.startswith("_"):
                continue
            if wanted is not None:
                if k not in wanted:
                    continue
                children = wanted[k]
                if children is not None and isinstance(v, list):
                    v = [{a: row[a] for a in children if row.get(a) is not None} for row in v]
            out[k] = v
        out["_rowstamp"] = record["_rowstamp"]
        out["href"] = f"{collection}/{record['_restid']}"
        return out

    async def _member(self, request: Request) -> Response:
        structure = self._structure(request)
        if structure is None:
            return self._error(404, "BMXAA8727E", "The object structure does not exist.")
        table, key = structure
        rid = request.path_params["rid"]
        record = self.store.get(table, rid)
        collection = f"{self._origin(request)}{request.url.path.rsplit('/', 1)[0]}"
        if record is None:
            return self._error(404, "BMXAA8727E", f"The record {rid} does not exist.")
        if request.method == "GET":
            body = self._render(record, collection, request.query_params.get("oslc.select", "*"))
            return JSONResponse(body)
        if request.headers.get("x-method-override", "").upper() != "PATCH":
            return self._error(
                400, "BMXAA8743E", "POST to a member needs x-method-override (PATCH or MERGE)."
            )
        expected = request.headers.get("if-match")
        if expected is not None and expected.strip('"') != record["_rowstamp"]:
            return self._error(
                412, "BMXAA9549E", "The record has been updated by another user. Refresh it."
            )
        try:
            changes = await request.json()
        except ValueError:
            return self._error(400, "BMXAA8744E", "The request body is not valid JSON.")
        for name in key:
            if name in changes and str(changes[name]) != str(record[name]):
                return self._error(400, "BMXAA4133E", f"Attribute {name} is read-only.")
        merged = {k: v for k, v in record.items() if not k.startswith("_")}
        merged.update(changes)
        merged["changedate"] = seed.maximo_date(datetime.now(UTC).replace(microsecond=0))
        stored = self.store.put(table, key, merged)
        if "properties" not in request.headers:
            return Response(status_code=204)
        return JSONResponse(self._render(stored, collection, request.headers["properties"]))

    async def _create(self, request: Request, table: str, key: tuple[str, ...]) -> Response:
        try:
            record = await request.json()
        except ValueError:
            return self._error(400, "BMXAA8744E", "The request body is not valid JSON.")
        if not record.get("siteid"):
            return self._error(400, "BMXAA4195E", "A value is required for the Site field.")
        number = key[0]
        if not record.get(number):
            record[number] = str(self.store.max_number(table, number) + 1)
        if self.store.get(table, rest_id(str(record[k]) for k in key)) is not None:
            return self._error(400, "BMXAA4129E", f"Record {record[number]} already exists.")
        now = seed.maximo_date(datetime.now(UTC).replace(microsecond=0))
        if table == "workorder":
            record.setdefault("status", "WAPPR")
            record.setdefault("reportdate", now)
        record["changedate"] = now
        stored = self.store.put(table, key, record)
        collection = f"{self._origin(request)}{request.url.path}"
        location = f"{collection}/{stored['_restid']}"
        if "properties" not in request.headers:
            return Response(status_code=201, headers={"Location": location})
        body = self._render(stored, collection, request.headers["properties"])
        return JSONResponse(body, status_code=201, headers={"Location": location})


# -- query language ------------------------------------------------------------------------


def parse_select(select: str) -> dict[str, tuple[str, ...] | None] | None:
    """``oslc.select`` as attribute -> the child attributes selected (``pmmeter{a,b}``; None
    for a plain attribute or ``child{*}``); None when everything is selected."""
    if select.strip() in ("", "*"):
        return None
    wanted: dict[str, tuple[str, ...] | None] = {}
    for match in re.finditer(r"\s*([\w.]+)\s*(?:\{([^}]*)\})?\s*(?:,|$)", select):
        if not match[1]:
            continue
        inner = match[2]
        if inner is None or inner.strip() in ("", "*"):
            wanted[match[1].lower()] = None
        else:
            wanted[match[1].lower()] = tuple(
                a.strip().lower() for a in inner.split(",") if a.strip()
            )
    return wanted


_CLAUSE = re.compile(
    r"""\s*(?P<attr>[A-Za-z_][\w.]*)\s*
        (?:(?P<op>>=|<=|!=|=|>|<)\s*(?P<value>"[^"]*"|-?\d+(?:\.\d+)?)
          |\s+(?P<word>in|like)\s*(?P<wvalue>\[[^\]]*\]|"[^"]*"))
        \s*(?:and\s+|$)""",
    re.IGNORECASE | re.VERBOSE,
)


def parse_where(text: str) -> list[Any]:
    """``oslc.where`` clauses joined by ``and`` as predicates on a record."""
    clauses, position = [], 0
    while position < len(text):
        match = _CLAUSE.match(text, position)
        if match is None:
            raise BadQuery(
                f"oslc.where could not be parsed near {text[position : position + 30]!r}."
            )
        clauses.append(_predicate(match))
        position = match.end()
    return clauses


def _literal(raw: str) -> Any:
    raw = raw.strip()
    return raw[1:-1] if raw.startswith('"') else float(raw)


def _comparable(attr: str, value: Any) -> Any:
    if value is None:
        return None
    if attr.lower() in DATE_ATTRIBUTES:
        try:
            return datetime.fromisoformat(str(value).replace("Z", "+00:00"))
        except ValueError as exc:
            raise BadQuery(f"{value!r} is not a date for attribute {attr}.") from exc
    if isinstance(value, int | float):
        return float(value)
    return value


def _predicate(match: re.Match[str]) -> Any:
    attr = match["attr"].lower()
    if match["op"]:
        op, literal = match["op"], _comparable(attr, _literal(match["value"]))

        def compare(record: Mapping[str, Any]) -> bool:
            value = _comparable(attr, record.get(attr))
            if value is None:
                return False
            if isinstance(literal, float) and not isinstance(value, float):
                value = float(value)
            return {
                "=": value == literal,
                "!=": value != literal,
                ">=": value >= literal,
                "<=": value <= literal,
                ">": value > literal,
                "<": value < literal,
            }[op]

        return compare
    if match["word"].lower() == "in":
        options = {o.strip().strip('"') for o in match["wvalue"].strip("[]").split(",")}
        return lambda record: str(record.get(attr)) in options
    pattern = re.escape(_literal(match["wvalue"])).replace("%", ".*")
    regex = re.compile(f"^{pattern}$", re.IGNORECASE)
    return lambda record: record.get(attr) is not None and bool(regex.match(str(record[attr])))


def order_records(records: list[dict[str, Any]], order: str) -> list[dict[str, Any]]:
    """Sort by ``oslc.orderBy``; an attribute without its sign (an unencoded ``+`` arrives
    as a space) is refused, as Maximo requires the sign."""
    keys = []
    for item in order.split(","):
        if not item or item[0] not in "+-":
            raise BadQuery(
                f"oslc.orderBy attribute {item.strip()!r} must start with + or - "
                "(URL-encode + as %2B)."
            )
        keys.append((item[1:].strip().lower(), item[0] == "-"))
    for attr, descending in reversed(keys):
        present = [r for r in records if r.get(attr) is not None]
        missing = [r for r in records if r.get(attr) is None]
        present.sort(key=lambda r, a=attr: _comparable(a, r[a]), reverse=descending)
        records = present + missing
    return records


def namespaced(body: Mapping[str, Any]) -> dict[str, Any]:
    """The default (not lean) JSON: ``rdfs:member``, ``spi:`` attributes, ``rdf:about``."""

    def member(record: Mapping[str, Any]) -> dict[str, Any]:
        out = {"rdf:about": record["href"]}
        out.update({f"spi:{k}": v for k, v in record.items() if k != "href"})
        return out

    info = body["responseInfo"]
    ns_info: dict[str, Any] = {"rdf:about": info.get("href")}
    if "nextPage" in info:
        ns_info["oslc:nextPage"] = {"rdf:resource": info["nextPage"]["href"]}
    if "pagenum" in info:
        ns_info["oslc:pagenum"] = info["pagenum"]
    return {
        "rdfs:member": [member(r) for r in body["member"]],
        "rdf:about": body["href"],
        "oslc:responseInfo": ns_info,
    }
