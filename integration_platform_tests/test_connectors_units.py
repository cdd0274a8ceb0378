"""The pure parts of the connector base: paginators, cursors, redaction, retry arithmetic,
the rate limiter and the registry; and the token-based auth schemes against a loopback API."""

from __future__ import annotations

import hashlib
import hmac
import subprocess
import sys
from collections.abc import Iterator

import pandas as pd
import pytest

from integration_platform.connectors.auth import (
    AUTH_TYPES,
    HmacUrlSignature,
    OAuth2ClientCredentials,
    SessionTokenAuth,
    build_auth,
    sign_url,
)
from integration_platform.connectors.cursor import Cursor, advance, drop_seen
from integration_platform.connectors.errors import AuthenticationError, redact_url
from integration_platform.connectors.pagination import (
    PAGINATORS,
    PageRequest,
    PaginatorError,
    build_paginator,
)
from integration_platform.connectors.registry import CONNECTORS, load_connector
from integration_platform.connectors.rest import (
    RestClient,
    RetryPolicy,
    TokenBucket,
    parse_retry_after,
)
from integration_platform.settings import ConfigError
from integration_platform_tests.contract_servers.token_auth import TokenAuthServer

# -- paginators ----------------------------------------------------------------------------


def test_maximo_paginator_follows_response_info_next_page() -> None:
    paginator = build_paginator("maximo")
    first = paginator.first(PageRequest("http://m/os/mxwo", {"lean": 1}), 50)
    assert first.params == {"lean": 1, "oslc.pageSize": 50}
    body = {
        "member": [{"wonum": "1"}],
        "responseInfo": {"pagenum": 1, "nextPage": {"href": "http://m/os/mxwo?pageno=2"}},
    }
    assert paginator.records(body) == [{"wonum": "1"}]
    following = paginator.next(first, body, paginator.records(body))
    assert following == PageRequest("http://m/os/mxwo?pageno=2", {}, {})
    last = {"member": [], "responseInfo": {"pagenum": 2}}
    assert paginator.next(following, last, []) is None


def test_odata_v2_paginator_reads_d_results_and_next() -> None:
    paginator = build_paginator("odata_v2")
    body = {"d": {"results": [{"MaintenanceOrder": "4000000"}], "__next": "Orders?$skiptoken=1"}}
    request = PageRequest("http://s/Orders")
    assert paginator.records(body)[0]["MaintenanceOrder"] == "4000000"
    assert paginator.next(request, body, []).url == "Orders?$skiptoken=1"  # type: ignore[union-attr]
    assert paginator.next(request, {"d": {"results": []}}, []) is None


def test_odata_v4_paginator_sets_page_size_preference_and_follows_next_link() -> None:
    paginator = build_paginator("odata_v4")
    first = paginator.first(PageRequest("http://d/api/data/v9.2/msdyn_workorders"), 500)
    assert first.headers["Prefer"] == "odata.maxpagesize=500"
    body = {"value": [{"msdyn_name": "WO-1"}], "@odata.nextLink": "http://d/next?$skiptoken=x"}
    following = paginator.next(first, body, paginator.records(body))
    assert following is not None and following.url == "http://d/next?$skiptoken=x"
    assert following.headers["Prefer"] == "odata.maxpagesize=500"


def test_offset_paginator_stops_on_has_more_false_or_a_short_page() -> None:
    paginator = build_paginator("offset", records_path="results", has_more_path=None)
    first = paginator.first(PageRequest("http://u/work-orders"), 2)
    assert first.params == {"limit": 2, "offset": 0}
    second = paginator.next(first, {"results": [{}, {}]}, [{}, {}])
    assert second is not None and second.params["offset"] == 2
    assert paginator.next(second, {"results": [{}]}, [{}]) is None
    oracle = build_paginator("offset")  # items[] + hasMore
    request = oracle.first(PageRequest("http://o/workOrders"), 2)
    assert oracle.next(request, {"items": [{}, {}], "hasMore": False}, [{}, {}]) is None
    assert oracle.next(request, {"items": [{}], "hasMore": True}, [{}]) is not None


def test_cursor_token_paginator_sends_the_token_back() -> None:
    paginator = build_paginator("cursor")
    first = paginator.first(PageRequest("http://x/items"), 100)
    following = paginator.next(first, {"data": [{}], "next_cursor": "abc"}, [{}])
    assert following is not None and following.params == {"limit": 100, "cursor": "abc"}
    assert paginator.next(following, {"data": [{}], "next_cursor": None}, [{}]) is None


def test_paginator_reports_a_body_without_records() -> None:
    with pytest.raises(PaginatorError, match="'member'"):
        build_paginator("maximo").records({"Error": {"message": "x"}})


def test_unknown_names_list_the_known_ones() -> None:
    with pytest.raises(ConfigError, match="odata_v4"):
        build_paginator("odata")
    with pytest.raises(ConfigError, match="oauth2_client_credentials"):
        build_auth("oauth")
    assert set(PAGINATORS) == {"maximo", "odata_v2", "odata_v4", "offset", "cursor"}
    assert set(AUTH_TYPES) == {
        "none",
        "api_key",
        "basic",
        "oauth2_client_credentials",
        "session_token",
        "hmac_url_signature",
    }


# -- cursor --------------------------------------------------------------------------------


def frame(rows: list[tuple[str, str]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["id", "changed"], dtype="string[pyarrow]")


def test_advance_keeps_every_id_at_the_mark_across_pages() -> None:
    first = frame([("1", "2026-01-05T08:00:00-05:00"), ("2", "2026-01-05T08:30:00-05:00")])
    cursor = advance(None, first, cursor_field="changed", key_fields=["id"])
    assert cursor == Cursor(pd.Timestamp("2026-01-05T13:30:00Z"), frozenset({"2"}))
    # Same instant written with another offset: same mark, ids accumulate.
    second = frame([("3", "2026-01-05T13:30:00Z")])
    cursor = advance(cursor, second, cursor_field="changed", key_fields=["id"])
    assert cursor is not None and cursor.ids_at_mark == {"2", "3"}
    newer = frame([("4", "2026-01-05T13:31:00+00:00")])
    cursor = advance(cursor, newer, cursor_field="changed", key_fields=["id"])
    assert cursor is not None and cursor.ids_at_mark == {"4"}


def test_drop_seen_keeps_new_rows_at_the_mark_and_rows_without_a_mark() -> None:
    cursor = Cursor(pd.Timestamp("2026-01-05T13:30:00Z"), frozenset({"2"}))
    page = frame(
        [
            ("1", "2026-01-05T13:00:00Z"),  # older: covered
            ("2", "2026-01-05T08:30:00-05:00"),  # at the mark, seen
            ("5", "2026-01-05T13:30:00Z"),  # at the mark, new
            ("6", "2026-01-05T14:00:00Z"),  # newer
            ("7", None),  # no timestamp: kept, never lost
        ]
    )
    kept = drop_seen(page, cursor, cursor_field="changed", key_fields=["id"])
    assert kept["id"].tolist() == ["5", "6", "7"]


def test_versioned_ids_see_a_second_change_within_the_same_second() -> None:
    page = pd.DataFrame(
        {"id": ["9"], "changed": ["2026-01-05T13:30:00Z"], "rowstamp": ["100"]},
        dtype="string[pyarrow]",
    )
    cursor = advance(
        None, page, cursor_field="changed", key_fields=["id"], version_field="rowstamp"
    )
    assert cursor is not None and cursor.ids_at_mark == {"9@100"}
    changed_again = page.assign(rowstamp=pd.array(["101"], dtype="string[pyarrow]"))
    kept = drop_seen(
        changed_again, cursor, cursor_field="changed", key_fields=["id"], version_field="rowstamp"
    )
    assert len(kept) == 1


def test_cursor_round_trips_through_json() -> None:
    stamp = Cursor(pd.Timestamp("2026-01-05T13:30:00Z"), frozenset({"B/2", "B/1"}))
    assert Cursor.from_json(stamp.to_json()) == stamp
    assert '"ids_at_mark":["B/1","B/2"]' in stamp.to_json()
    number = Cursor(42, frozenset({"x"}), "number")
    assert Cursor.from_json(number.to_json()) == number
    naive = Cursor(pd.Timestamp("2026-01-05 13:30:00"), frozenset())
    assert Cursor.from_json(naive.to_json()) == naive


def test_numeric_marks() -> None:
    page = pd.DataFrame({"id": ["a", "b", "c"], "version": [3, 7, 7]})
    cursor = advance(None, page, cursor_field="version", key_fields=["id"])
    assert cursor == Cursor(7, frozenset({"b", "c"}), "number")
    assert drop_seen(page, cursor, cursor_field="version", key_fields=["id"]).empty


# -- errors, retries, rate limit -----------------------------------------------------------


def test_redact_url_hides_credentials_but_keeps_paging_state() -> None:
    url = (
        "https://ops:hunter2@acme.macmms.com/api/?service=cmms&appKey=AK&accessKey=XK"
        "&signatureMethod=HmacSHA256&$skiptoken=5&apikey=K&access_token=T"
    )
    redacted = redact_url(url)
    for secret in ("hunter2", "=AK", "=XK", "apikey=K", "=T"):
        assert secret not in redacted
    assert "ops:***@" in redacted and "$skiptoken=5" in redacted
    assert "service=cmms" in redacted and "signatureMethod=HmacSHA256" in redacted


def test_retry_after_parsing() -> None:
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # in the past


def test_backoff_is_full_jitter_under_an_exponential_ceiling() -> None:
    policy = RetryPolicy(backoff=0.5, max_backoff=4.0)
    for attempt, ceiling in ((1, 0.5), (2, 1.0), (3, 2.0), (6, 4.0)):
        waits = [policy.backoff_for(attempt) for _ in range(200)]
        assert min(waits) >= 0 and max(waits) <= ceiling
        assert max(waits) > ceiling / 2  # spread across the range, not fixed


def test_token_bucket_spaces_requests_after_the_burst() -> None:
    now = [0.0]
    bucket = TokenBucket(rate=4, burst=2, clock=lambda: now[0])
    assert [bucket.reserve() for _ in range(2)] == [0.0, 0.0]
    assert bucket.reserve() == pytest.approx(0.25)
    assert bucket.reserve() == pytest.approx(0.5)
    now[0] = 10.0  # idle: the bucket refills to the burst, no more
    assert [bucket.reserve() for _ in range(3)] == [0.0, 0.0, pytest.approx(0.25)]
    assert TokenBucket(rate=0).reserve() == 0.0


# -- auth schemes --------------------------------------------------------------------------


def test_hmac_url_signature_signs_the_url_without_its_scheme() -> None:
    client = RestClient(system="fiix", base_url="https://acme.macmms.com", auth=HmacUrlSignature(
        app_key="app", access_key="acc", secret="shh"))  # fmt: skip
    import requests

    prepared = client.session.prepare_request(
        requests.Request("POST", "https://acme.macmms.com/api/?service=cmms")
    )
    client.auth.apply(prepared, client)
    url = str(prepared.url)
    assert "appKey=app" in url and "accessKey=acc" in url and "signatureVersion=1" in url
    expected = hmac.new(b"shh", url.removeprefix("https://").encode(), hashlib.sha256)
    assert prepared.headers["Authorization"] == expected.hexdigest() == sign_url(url, "shh")


@pytest.fixture
def token_server() -> Iterator[TokenAuthServer]:
    server = TokenAuthServer().start()
    yield server
    server.stop()


def client_for(server: TokenAuthServer, auth: object) -> tuple[RestClient, list[str]]:
    client = RestClient(system="upkeep", base_url=f"{server.base_url}/api/v2", auth=auth)  # type: ignore[arg-type]
    seen: list[str] = []
    real = client.transport

    def recording(request):  # type: ignore[no-untyped-def]
        seen.append(f"{request.method} {request.path_url.split('?')[0]}")
        return real(request)

    client.transport = recording  # the I/O seam: every call, logins included, passes here
    return client, seen


def test_oauth2_token_is_cached_and_refreshed_once_on_401(token_server: TokenAuthServer) -> None:
    auth = OAuth2ClientCredentials(
        token_url=f"{token_server.base_url}/oauth2/token",
        client_id="platform",
        client_secret="s3cret",
    )
    client, seen = client_for(token_server, auth)
    paginator = build_paginator("offset", records_path="results", has_more_path=None)
    rows = [r for page, _ in client.paginate("/work-orders", paginator=paginator, page_size=3)
            for r in page]  # fmt: skip
    assert len(rows) == 7 and token_server.logins == 1
    token_server.revoke_tokens()
    client.request("GET", "/work-orders")
    assert token_server.logins == 2
    assert seen[0] == "POST /oauth2/token" and seen.count("POST /oauth2/token") == 2
    assert seen[-3:] == ["GET /api/v2/work-orders", "POST /oauth2/token", "GET /api/v2/work-orders"]


def test_session_token_login_and_refused_login(token_server: TokenAuthServer) -> None:
    auth = SessionTokenAuth(login_path="/auth", username="planner@example.com", password="pa55")
    client, seen = client_for(token_server, auth)
    body = client.json(client.request("GET", "/work-orders", params={"limit": 200}))
    assert len(body["results"]) == 7
    assert seen == ["POST /api/v2/auth", "GET /api/v2/work-orders"]
    wrong = SessionTokenAuth(login_path="/auth", username="planner@example.com", password="no")
    client, _ = client_for(token_server, wrong)
    with pytest.raises(AuthenticationError, match=r"upkeep: POST .*/api/v2/auth answered HTTP 401"):
        client.request("GET", "/work-orders")


# -- registry ------------------------------------------------------------------------------


def test_registry_imports_nothing_until_asked() -> None:
    code = (
        "import sys, integration_platform.connectors.registry as r; "
        "print(sorted(m for m in ('pandas','requests','sqlalchemy','tenacity','dagster') "
        "if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"


@pytest.mark.parametrize("name", sorted(CONNECTORS))
def test_every_registered_connector_loads_as_a_resource(name: str) -> None:
    import dagster as dg

    cls = load_connector(name)
    assert issubclass(cls, dg.ConfigurableResource)
    assert callable(cls.health_check)


def test_unknown_connector_type_lists_the_known_ones() -> None:
    with pytest.raises(ConfigError, match="maximo"):
        load_connector("maximoo")


def test_connector_errors_survive_pickling() -> None:
    import pickle

    from integration_platform.connectors.errors import Throttled

    error = Throttled(system="maximo", method="GET", url="http://m/x?apikey=k", status=429)
    error.attempts = 3
    copy = pickle.loads(pickle.dumps(error))
    assert isinstance(copy, Throttled) and str(copy) == str(error)
    assert "apikey=***" in str(copy)


def test_a_base_url_without_scheme_is_a_config_error_in_the_health_detail() -> None:
    from integration_platform.connectors.cmms.maximo import MaximoConnector

    status = MaximoConnector(base_url="maximo.example.com", api_key="k").health_check()
    assert not status.ok and "check base_url" in status.detail
