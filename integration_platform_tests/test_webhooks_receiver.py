"""The webhook receiver over real HTTP, storing into real SQLite and PostgreSQL inboxes."""

from __future__ import annotations

import base64
import hashlib
import json
import socket
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests
import sqlalchemy as sa
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from integration_platform.state import MaintenanceEventHook, make_engine, upgrade
from integration_platform.webhooks.app import EVENTS_PATH, create_app
from integration_platform.webhooks.samples import sample_document
from integration_platform.webhooks.signatures import sign_sha256, sign_standard
from integration_platform.webhooks.sources import WebhookSources
from integration_platform.webhooks.testing import running_server
from integration_platform_tests.conftest import POSTGRES_ADMIN_URL, require_service

NEW_SECRET = "whsec_" + base64.b64encode(b"new-secret-0123456789abcdef").decode()
OLD_SECRET = "whsec_" + base64.b64encode(b"old-secret-0123456789abcdef").decode()
PLAIN_SECRET = "plain-text-secret"
ENV = {
    "WEBHOOK_SOURCES": "acme,legacy,maximo,upkeep,fiix,slow",
    "WEBHOOK_ACME_SECRETS": f"{NEW_SECRET},{OLD_SECRET}",
    "WEBHOOK_LEGACY_SECRETS": PLAIN_SECRET,
    "WEBHOOK_LEGACY_SCHEME": "sha256",
    "WEBHOOK_MAXIMO_SECRETS": NEW_SECRET,
    "WEBHOOK_UPKEEP_SECRETS": NEW_SECRET,
    "WEBHOOK_FIIX_SECRETS": PLAIN_SECRET,
    "WEBHOOK_FIIX_SCHEME": "sha256",
    "WEBHOOK_SLOW_SECRETS": NEW_SECRET,
    "WEBHOOK_SLOW_RATE_LIMIT": "0.2",
    "WEBHOOK_SLOW_BURST": "2",
}
MAX_BODY = 4096


def key(secret: str) -> bytes:
    if secret.startswith("whsec_"):
        return base64.b64decode(secret[6:])
    return secret.encode()


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
def inbox_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    """A state database migrated to head, shared by the module (rows are cleared per test)."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('inbox') / 'state.db'}"
        upgrade(url)
        yield url
        return
    require_service("PostgreSQL", "127.0.0.1", 5432)
    name = f"ip_test_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = admin.url.set(database=name).render_as_string(hide_password=False)
    try:
        upgrade(url)
        yield url
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(scope="module")
def inbox(inbox_url: str) -> Iterator[sa.Engine]:
    engine = make_engine(inbox_url)
    yield engine
    engine.dispose()


@pytest.fixture(scope="module")
def base_url(inbox: sa.Engine) -> Iterator[str]:
    app = create_app(sources=WebhookSources.from_env(ENV), engine=inbox, max_body_bytes=MAX_BODY)
    with running_server(app) as url:
        yield url


@pytest.fixture(autouse=True)
def empty_inbox(request: pytest.FixtureRequest) -> None:
    if "inbox" in request.fixturenames:
        engine = request.getfixturevalue("inbox")
        with engine.begin() as connection:
            connection.execute(sa.text("DELETE FROM maintenance_event_hooks"))


def rows(engine: sa.Engine) -> list[dict[str, Any]]:
    with engine.connect() as connection:
        table = MaintenanceEventHook.__table__
        result = connection.execute(sa.select(table).order_by(table.c.id)).mappings()
        return [dict(row) for row in result]


def standard_headers(
    body: bytes,
    *,
    source: str | None = "acme",
    secrets: tuple[str, ...] = (NEW_SECRET,),
    msg_id: str | None = None,
    stamp: int | None = None,
) -> dict[str, str]:
    msg_id = msg_id or f"msg_{uuid.uuid4().hex}"
    stamp = int(time.time()) if stamp is None else stamp
    headers = {
        "Content-Type": "application/json",
        "webhook-id": msg_id,
        "webhook-timestamp": str(stamp),
        "webhook-signature": sign_standard(msg_id, stamp, body, [key(s) for s in secrets]),
    }
    if source:
        headers["X-Webhook-Source"] = source
    return headers


def common_body(event_type: str = "work_order.status_changed", **data: Any) -> bytes:
    document = sample_document("common", event_type, "WO-1001")
    document["data"].update(data)
    return json.dumps(document).encode()


def post(base_url: str, body: bytes, headers: dict[str, str], path: str = EVENTS_PATH):
    return requests.post(base_url + path, data=body, headers=headers, timeout=10)


def test_valid_event_is_stored_once_then_acknowledged(base_url: str, inbox: sa.Engine) -> None:
    body = common_body()
    answer = post(base_url, body, standard_headers(body, msg_id="msg_valid_1"))
    assert answer.status_code == 202, answer.text
    assert answer.json() == {"event_id": "msg_valid_1", "status": "accepted"}
    [row] = rows(inbox)
    assert row["cmms_system_id"] == "acme"
    assert row["event_id"] == "msg_valid_1"
    assert row["event_type"] == "work_order.status_changed"
    assert (row["entity_type"], row["entity_external_id"]) == ("work_order", "WO-1001")
    assert row["processing_status"] == "pending"
    assert row["signature_scheme"] == "standard"
    assert row["hmac_signature"].startswith("v1,")
    assert row["event_payload"] == json.loads(body)
    assert row["received_at"] is not None and row["next_attempt_at"] is not None


def test_duplicate_delivery_is_acknowledged_and_not_stored_again(
    base_url: str, inbox: sa.Engine
) -> None:
    body = common_body()
    headers = standard_headers(body, msg_id="msg_dup_1")
    first = post(base_url, body, headers)
    again = post(base_url, body, standard_headers(body, msg_id="msg_dup_1"))  # a later retry
    assert first.status_code == again.status_code == 202
    assert first.json()["status"] == "accepted"
    assert again.json() == {"event_id": "msg_dup_1", "status": "duplicate"}
    assert len(rows(inbox)) == 1


def test_concurrent_redeliveries_store_one_row(base_url: str, inbox: sa.Engine) -> None:
    body = common_body()
    headers = standard_headers(body, msg_id="msg_race_1")
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda _: post(base_url, body, headers), range(16)))
    assert {a.status_code for a in answers} == {202}
    assert sorted(a.json()["status"] for a in answers).count("accepted") == 1
    assert len(rows(inbox)) == 1


def test_same_event_id_from_two_sources_is_two_events(base_url: str, inbox: sa.Engine) -> None:
    body = common_body()
    assert post(base_url, body, standard_headers(body, msg_id="msg_x")).status_code == 202
    upkeep = json.dumps(sample_document("upkeep")).encode()
    headers = standard_headers(upkeep, source="upkeep", msg_id="msg_x")
    assert post(base_url, upkeep, headers).json()["status"] == "accepted"
    assert len(rows(inbox)) == 2


def test_secret_rotation_accepts_old_and_new_while_both_are_configured(
    base_url: str, inbox: sa.Engine
) -> None:
    body = common_body()
    for secrets in [(OLD_SECRET,), (NEW_SECRET,), (OLD_SECRET, NEW_SECRET)]:
        answer = post(base_url, body, standard_headers(body, secrets=secrets))
        assert answer.status_code == 202, (secrets, answer.text)
    assert len(rows(inbox)) == 3


def test_path_names_the_source_as_well(base_url: str, inbox: sa.Engine) -> None:
    body = common_body()
    answer = post(base_url, body, standard_headers(body, source=None), EVENTS_PATH + "/acme")
    assert answer.status_code == 202
    assert rows(inbox)[0]["cmms_system_id"] == "acme"


def test_x_signature_256_scheme(base_url: str, inbox: sa.Engine) -> None:
    document = json.loads(common_body())
    document["id"] = "legacy-evt-7"
    body = json.dumps(document).encode()
    headers = {
        "Content-Type": "application/json; charset=utf-8",
        "X-Webhook-Source": "legacy",
        "X-Signature-256": sign_sha256(body, PLAIN_SECRET.encode()),
    }
    first = post(base_url, body, headers)
    assert first.status_code == 202, first.text
    assert first.json() == {"event_id": "legacy-evt-7", "status": "accepted"}
    assert post(base_url, body, headers).json()["status"] == "duplicate"
    [row] = rows(inbox)
    assert row["signature_scheme"] == "sha256"
    wrong = dict(headers, **{"X-Signature-256": sign_sha256(body, b"another secret")})
    assert post(base_url, body, wrong).status_code == 401


def test_body_signature_without_an_id_deduplicates_by_content(
    base_url: str, inbox: sa.Engine
) -> None:
    body = common_body()
    headers = {
        "Content-Type": "application/json",
        "X-Webhook-Source": "legacy",
        "X-Signature-256": sign_sha256(body, PLAIN_SECRET.encode()),
    }
    first = post(base_url, body, headers).json()
    assert first["event_id"] == "sha256:" + hashlib.sha256(body).hexdigest()
    assert post(base_url, body, headers).json()["status"] == "duplicate"
    assert len(rows(inbox)) == 1


def _forged(body: bytes) -> dict[str, str]:
    headers = standard_headers(body)
    headers["webhook-signature"] = "v1," + base64.b64encode(b"x" * 32).decode()
    return headers


def _tampered(body: bytes) -> tuple[bytes, dict[str, str]]:
    return body.replace(b"WO-1001", b"WO-6666"), standard_headers(body)


def _signed(body: bytes) -> tuple[bytes, dict[str, str]]:
    return body, standard_headers(body)


def _without(name: str):
    def build(body: bytes) -> dict[str, str]:
        headers = standard_headers(body)
        del headers[name]
        return headers

    return build


REJECTIONS: dict[str, tuple[Any, int, str]] = {
    # case: (headers for the body, or (body, headers); expected status, expected error)
    "forged signature": (_forged, 401, "bad_signature"),
    "body changed after signing": (_tampered, 401, "bad_signature"),
    "wrong secret": (
        lambda b: standard_headers(b, secrets=("whsec_" + base64.b64encode(b"guess").decode(),)),
        401,
        "bad_signature",
    ),
    "missing webhook-signature": (_without("webhook-signature"), 401, "missing_headers"),
    "missing webhook-id": (_without("webhook-id"), 401, "missing_headers"),
    "missing webhook-timestamp": (_without("webhook-timestamp"), 401, "missing_headers"),
    "expired timestamp": (
        lambda b: standard_headers(b, stamp=int(time.time()) - 301 - 5),
        401,
        "timestamp_out_of_tolerance",
    ),
    "future timestamp": (
        lambda b: standard_headers(b, stamp=int(time.time()) + 301 + 5),
        401,
        "timestamp_out_of_tolerance",
    ),
    "non-numeric timestamp": (
        lambda b: {**standard_headers(b), "webhook-timestamp": "yesterday"},
        401,
        "bad_headers",
    ),
    "signature of another id": (
        lambda b: {**standard_headers(b), "webhook-id": "msg_other"},
        401,
        "bad_signature",
    ),
    "unknown source": (lambda b: standard_headers(b, source="mallory"), 404, "unknown_source"),
    "no source": (lambda b: standard_headers(b, source=None), 400, "missing_source"),
    "wrong content type": (
        lambda b: {**standard_headers(b), "Content-Type": "text/plain"},
        415,
        "unsupported_media_type",
    ),
    "missing content type": (
        lambda b: {k: v for k, v in standard_headers(b).items() if k != "Content-Type"},
        415,
        "unsupported_media_type",
    ),
    "oversized body": (
        lambda b: _signed(b[:-1] + b', "pad": "' + b"x" * MAX_BODY + b'"}'),
        413,
        "body_too_large",
    ),
    "malformed JSON": (lambda b: _signed(b"{not json"), 400, "malformed_json"),
    "not UTF-8": (lambda b: _signed(b'{"a": "\xff"}'), 400, "malformed_json"),
    "NaN is not JSON": (lambda b: _signed(b'{"a": NaN}'), 400, "malformed_json"),
    "number out of range": (lambda b: _signed(b'{"a": 1e999}'), 400, "malformed_json"),
}


@pytest.mark.parametrize("case", list(REJECTIONS))
def test_rejected_requests_store_nothing(case: str, base_url: str, inbox: sa.Engine) -> None:
    build, status, error = REJECTIONS[case]
    body = common_body()
    built = build(body)
    body, headers = built if isinstance(built, tuple) else (body, built)
    answer = post(base_url, body, headers)
    assert answer.status_code == status, answer.text
    assert answer.json()["error"] == error
    assert rows(inbox) == []


def test_oversized_body_without_content_length_is_cut_off(base_url: str, inbox: sa.Engine) -> None:
    body = common_body()[:-1] + b', "pad": "' + b"x" * MAX_BODY + b'"}'

    def chunks() -> Iterator[bytes]:  # chunked transfer encoding: no Content-Length to check
        for start in range(0, len(body), 1000):
            yield body[start : start + 1000]

    answer = requests.post(
        base_url + EVENTS_PATH, data=chunks(), headers=standard_headers(body), timeout=10
    )
    assert answer.status_code == 413
    assert rows(inbox) == []


@pytest.mark.parametrize(
    ("event_type", "data", "field"),
    [
        ("work_order.exploded", {}, "type"),
        ("work_order.status_changed", {"status": "fixed-ish"}, "data.status"),
        ("work_order.status_changed", {"status": None}, "data.status"),
        ("work_order.updated", {"external_id": ""}, "data.external_id"),
        ("work_order.updated", {"priority": 1}, "data.priority"),
        ("work_order.updated", {"due_at": "2026-11-24T10:00:00"}, "data.due_at"),  # no zone
        ("maintenance_schedule.updated", {"interval_value": -3}, "data.interval_value"),
        ("asset.updated", {"condition": "meh"}, "data.condition"),
    ],
)
def test_invalid_payload_is_422_naming_the_field(
    event_type: str, data: dict[str, Any], field: str, base_url: str, inbox: sa.Engine
) -> None:
    document = sample_document("common", event_type.replace("exploded", "updated"))
    document["type"] = event_type
    document["data"].update(data)
    body = json.dumps(document).encode()
    answer = post(base_url, body, standard_headers(body))
    assert answer.status_code == 422, answer.text
    assert answer.json()["error"] == "invalid_payload"
    assert answer.json()["field"] == field
    assert rows(inbox) == []


@pytest.mark.parametrize(
    ("document", "field"),
    [
        ([1, 2, 3], "(body)"),
        ({"type": "work_order.updated", "data": {"external_id": "x"}}, "timestamp"),
        ({"type": "work_order.updated", "timestamp": "2026-11-24T10:00:00Z"}, "data"),
        (
            {
                "type": "work_order.updated",
                "timestamp": "2026-11-24T10:00:00Z",
                "data": {"external_id": "a\u0000b"},
            },
            "data.external_id",
        ),
    ],
)
def test_malformed_envelopes_are_422(
    document: Any, field: str, base_url: str, inbox: sa.Engine
) -> None:
    body = json.dumps(document).encode()
    answer = post(base_url, body, standard_headers(body))
    assert answer.status_code == 422, answer.text
    assert answer.json()["field"] == field
    assert rows(inbox) == []


def test_lone_surrogate_is_refused_before_the_database(base_url: str, inbox: sa.Engine) -> None:
    body = common_body()[:-2] + b', "note": "\\ud800"}}'
    answer = post(base_url, body, standard_headers(body))
    assert answer.status_code == 422, answer.text
    assert answer.json()["field"] == "data.note"
    assert rows(inbox) == []


def test_rate_limit_answers_429_with_retry_after(base_url: str, inbox: sa.Engine) -> None:
    answers = []
    for _ in range(3):  # burst 2, then one event per 5 s
        body = common_body()
        answers.append(post(base_url, body, standard_headers(body, source="slow")))
    assert [a.status_code for a in answers] == [202, 202, 429]
    assert int(answers[2].headers["Retry-After"]) >= 1
    assert answers[2].json()["error"] == "rate_limited"
    assert len(rows(inbox)) == 2
    # Other sources have buckets of their own.
    body = common_body()
    assert post(base_url, body, standard_headers(body)).status_code == 202


def test_maximo_publish_channel_message(base_url: str, inbox: sa.Engine) -> None:
    record = {
        "wonum": "1001",
        "siteid": "BEDFORD",
        "assetnum": "P-101",
        "status": "COMP",
        "description": "Replace bearing",
        "changedate": "2026-11-24T07:30:00-05:00",
        "_rowstamp": "5521009",
    }
    body = json.dumps({"MXWO": [record]}).encode()
    answer = post(base_url, body, standard_headers(body, source="maximo"))
    assert answer.status_code == 202, answer.text
    [row] = rows(inbox)
    assert row["event_type"] == "work_order.updated"
    assert (row["entity_type"], row["entity_external_id"]) == ("work_order", "BEDFORD:1001")
    occurred = row["occurred_at"]
    assert (occurred.hour, occurred.minute) == (12, 30)  # stored in UTC


def test_upkeep_callback(base_url: str, inbox: sa.Engine) -> None:
    body = json.dumps(sample_document("upkeep", "work_order.status_changed", "Jx8Kq2")).encode()
    answer = post(base_url, body, standard_headers(body, source="upkeep"))
    assert answer.status_code == 202, answer.text
    [row] = rows(inbox)
    assert row["event_type"] == "work_order.status_changed"
    assert row["entity_external_id"] == "Jx8Kq2"


def test_fiix_callback_derives_its_event_id_from_the_record(
    base_url: str, inbox: sa.Engine
) -> None:
    document = sample_document("fiix", "work_order.updated", "4711")
    body = json.dumps(document).encode()
    headers = {
        "Content-Type": "application/json",
        "X-Webhook-Source": "fiix",
        "X-Signature-256": sign_sha256(body, PLAIN_SECRET.encode()),
    }
    answer = post(base_url, body, headers)
    assert answer.status_code == 202, answer.text
    stamp = document["object"]["dtmDateLastModified"]
    assert answer.json()["event_id"] == f"work_order:4711:{stamp}"
    [row] = rows(inbox)
    assert (row["entity_type"], row["entity_external_id"]) == ("work_order", "4711")


def test_vendor_message_in_the_wrong_shape_is_422(base_url: str, inbox: sa.Engine) -> None:
    body = json.dumps({"event": "WORK_ORDER_UPDATED", "data": {"title": "no id"}}).encode()
    answer = post(base_url, body, standard_headers(body, source="upkeep"))
    assert answer.status_code == 422
    assert answer.json()["field"] == "data.id"
    assert rows(inbox) == []


def test_healthz_and_metrics(base_url: str) -> None:
    health = requests.get(base_url + "/healthz", timeout=10)
    assert health.status_code == 200
    assert health.json()["database"] == "ok"
    body = common_body()
    post(base_url, body, standard_headers(body))
    post(base_url, body, {**standard_headers(body), "webhook-signature": "v1,AAAA"})
    text = requests.get(base_url + "/metrics", timeout=10).text
    assert 'webhook_requests_total{source="acme"}' in text
    assert 'webhook_rejected_total{source="acme",reason="bad_signature"}' in text
    assert 'webhook_events_stored_total{source="acme"}' in text
    assert "webhook_request_duration_seconds_bucket{le=" in text
    count = next(
        line
        for line in text.splitlines()
        if line.startswith("webhook_request_duration_seconds_count")
    )
    assert int(count.split()[1]) >= 2


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.postgres
def test_database_down_is_503_and_nothing_is_acknowledged() -> None:
    require_service("PostgreSQL", "127.0.0.1", 5432)
    url = f"postgresql+psycopg2://postgres@127.0.0.1:{closed_port()}/nowhere"
    engine = make_engine(url)
    app = create_app(sources=WebhookSources.from_env(ENV), engine=engine)
    with running_server(app) as down_url:
        body = common_body()
        answer = post(down_url, body, standard_headers(body))
        assert answer.status_code == 503
        assert answer.json()["error"] == "database_unavailable"
        assert int(answer.headers["Retry-After"]) > 0
        health = requests.get(down_url + "/healthz", timeout=10)
        assert health.status_code == 503
    engine.dispose()


def test_sqlite_inbox_in_a_missing_folder_is_503(tmp_path: Path) -> None:
    """A state file that cannot be opened is the same as a database that is down."""
    engine = make_engine(f"sqlite:///{tmp_path / 'elsewhere' / 'state.db'}")
    (tmp_path / "elsewhere").rmdir()
    app = create_app(sources=WebhookSources.from_env(ENV), engine=engine)
    with running_server(app) as url:
        body = common_body()
        answer = post(url, body, standard_headers(body))
        assert answer.status_code == 503, answer.text
    engine.dispose()


# --- property test: arbitrary requests never cause a 5xx or an unsigned row -------------------

FUZZ_SOURCES = ["acme", "legacy", "maximo", "upkeep", "fiix", "mallory", ""]
SCHEME_OF = {"acme": "standard", "maximo": "standard", "upkeep": "standard"}
SCHEME_OF.update({"legacy": "sha256", "fiix": "sha256"})
SECRET_OF = {"acme": NEW_SECRET, "maximo": NEW_SECRET, "upkeep": NEW_SECRET}
SECRET_OF.update({"legacy": PLAIN_SECRET, "fiix": PLAIN_SECRET})
HEADER_TEXT = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=60)
JSON_LEAVES = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
    | st.sampled_from(["\x00", "WO-1001", "completed", "2026-11-24T10:00:00Z", "BEDFORD"])
)
# Valid JSON that PostgreSQL's JSONB refuses.
UNSTORABLE = st.sampled_from(["\x00", "a\x00b", "\ud800", "\udfff x"])
JSON_KEYS = st.text(max_size=12) | st.sampled_from(
    ["type", "timestamp", "data", "external_id", "status", "id", "wonum", "siteid", "event"]
)
JSON_VALUES = st.recursive(
    JSON_LEAVES,
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(JSON_KEYS, children, max_size=5),
    max_leaves=20,
)
ENVELOPES = st.fixed_dictionaries(
    {
        "type": st.sampled_from(
            ["work_order.updated", "work_order.status_changed", "asset.updated", "nope", ""]
        ),
        "timestamp": st.sampled_from(["2026-11-24T10:00:00Z", "2026-11-24", "soon", 0]),
        "data": st.dictionaries(JSON_KEYS, JSON_LEAVES, max_size=6).map(
            lambda data: {"external_id": "WO-1", **data}
        ),
    }
)
FORMAT_OF = {"maximo": "maximo", "upkeep": "upkeep", "fiix": "fiix"}
EVENT_TYPES = ["work_order.updated", "work_order.status_changed", "asset.updated"]


@st.composite
def bodies(draw: st.DrawFn, source: str) -> bytes:
    """Mostly near-valid messages for the source's format, some noise, some JSON edge cases."""
    kind = draw(st.sampled_from(["sample", "sample", "envelope", "json", "binary", "edge"]))
    if kind == "sample":
        document = sample_document(
            FORMAT_OF.get(source, "common"), draw(st.sampled_from(EVENT_TYPES))
        )
        target = document.get("data", document.get("object", document))
        target.update(draw(st.dictionaries(JSON_KEYS, UNSTORABLE | JSON_LEAVES, max_size=3)))
        return json.dumps(document).encode()
    if kind == "envelope":
        return json.dumps(draw(ENVELOPES)).encode()
    if kind == "json":
        return json.dumps(draw(JSON_VALUES)).encode()
    if kind == "binary":
        return draw(st.binary(max_size=300))
    return draw(
        st.sampled_from(
            [b'"\\ud800"', b'{"data": {"x": "\\udfff"}}', b"[" * 5000, b"1e999", b"", b"{}"]
        )
    )


CONTENT_TYPES = st.sampled_from(
    [
        "application/json",
        "application/json",
        "application/cloudevents+json",
        "text/plain",
        None,
        "application/json; charset=latin-1",
    ]
)


def _count(engine: sa.Engine) -> int:
    with engine.connect() as connection:
        return connection.execute(
            sa.select(sa.func.count()).select_from(MaintenanceEventHook.__table__)
        ).scalar_one()


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    source=st.sampled_from(FUZZ_SOURCES),
    in_path=st.booleans(),
    data=st.data(),
    content_type=CONTENT_TYPES,
    signing=st.sampled_from(["valid", "valid", "garbage", "none"]),
    garbage=st.dictionaries(
        st.sampled_from(
            [
                "webhook-id",
                "webhook-timestamp",
                "webhook-signature",
                "X-Signature-256",
                "Content-Length",
            ]
        ),
        HEADER_TEXT,
    ),
)
def test_arbitrary_requests_never_fail_and_store_only_signed_events(
    base_url: str,
    inbox: sa.Engine,
    source: str,
    in_path: bool,
    data: st.DataObject,
    content_type: str | None,
    signing: str,
    garbage: dict[str, str],
) -> None:
    body = data.draw(bodies(source), label="body")
    headers: dict[str, str] = {} if content_type is None else {"Content-Type": content_type}
    path = EVENTS_PATH
    if in_path and source:
        path += "/" + source
    elif source:
        headers["X-Webhook-Source"] = source
    signed = signing == "valid" and source in SCHEME_OF
    if signed and SCHEME_OF[source] == "standard":
        headers.update(standard_headers(body, source=None, secrets=(SECRET_OF[source],)))
        if content_type is None:
            del headers["Content-Type"]
        else:
            headers["Content-Type"] = content_type
    elif signed:
        headers["X-Signature-256"] = sign_sha256(body, key(SECRET_OF[source]))
    elif signing == "garbage":
        headers.update(garbage)
    before = _count(inbox)
    answer = requests.post(base_url + path, data=body, headers=headers, timeout=10)
    stored = _count(inbox) - before
    event(f"HTTP {answer.status_code}")  # shown by --hypothesis-show-statistics
    assert answer.status_code < 500 or answer.status_code == 503, answer.text
    if answer.status_code == 202:
        assert signed
        assert stored == (1 if answer.json()["status"] == "accepted" else 0)
    else:
        assert stored == 0
