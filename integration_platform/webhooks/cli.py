"""``integration-platform webhooks ...``: run the receiver, show its sources, send a test event.

Each handler imports what it needs when it runs, so ``--help`` stays instant.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

DEFAULT_PORT = 8080


def add_webhook_commands(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the ``webhooks`` command group to the top-level sub-command parsers."""
    webhooks = subparsers.add_parser(
        "webhooks",
        help="webhook receiver: serve, list sources, send a signed test event, replay dead letters",
        description=(
            "The HMAC-signed webhook receiver (POST /api/v1/hooks/maintenance/events). Sources "
            "come from WEBHOOK_SOURCES and WEBHOOK_<SOURCE>_SECRETS/_SCHEME/_FORMAT; events go "
            "to the state database (INTEGRATION_PLATFORM_DB_URL). See docs/webhooks.md."
        ),
    )
    commands = webhooks.add_subparsers(
        title="webhooks commands", metavar="WEBHOOKS_COMMAND", required=True
    )

    serve = commands.add_parser(
        "serve",
        help="run the receiver (uvicorn)",
        description=(
            "Checks the configured sources and that the state database is migrated, then "
            "listens. Events are committed before they are acknowledged (202)."
        ),
    )
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=DEFAULT_PORT, help="port (default 8080)")
    serve.add_argument(
        "--workers", type=int, default=1, help="worker processes sharing the port (default 1)"
    )
    serve.add_argument("--no-access-log", action="store_true", help="do not log a line per request")
    serve.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    serve.set_defaults(handler=run_serve)

    sources = commands.add_parser(
        "sources",
        help="list configured sources, schemes and secret fingerprints",
        description="Shows each source from WEBHOOK_SOURCES with its signature scheme, message "
        "format, rate limit and a fingerprint per secret (never the secret).",
    )
    sources.set_defaults(handler=run_sources)

    test_send = commands.add_parser(
        "test-send",
        help="sign a sample event with a source's secret and post it",
        description=(
            "Builds a realistic sample event in the source's message format, signs it with the "
            "source's configured secret(s) and posts it; prints the answer. Exit status 0 on a "
            "2xx answer."
        ),
    )
    test_send.add_argument("--source", required=True, help="a source named in WEBHOOK_SOURCES")
    test_send.add_argument(
        "--url",
        default=f"http://127.0.0.1:{DEFAULT_PORT}",
        help="receiver base URL or full endpoint URL (default http://127.0.0.1:8080)",
    )
    test_send.add_argument(
        "--event-type", default="work_order.status_changed", help="event type to send"
    )
    test_send.add_argument("--entity-id", default="WO-1001", help="id of the record concerned")
    test_send.add_argument(
        "--event-id", help="delivery id (default: a new one; repeat one to see a duplicate)"
    )
    test_send.add_argument("--timeout", type=float, default=10.0, help="seconds to wait")
    test_send.set_defaults(handler=run_test_send)

    replay = commands.add_parser(
        "replay",
        help="queue dead-lettered events again",
        description=(
            "Moves events in dead_letter back to pending with a fresh attempt count, so the "
            "next sensor tick processes them. Fix the cause first (mapping, missing record); "
            "the last error is kept in error_message, prefixed 'replayed after:'."
        ),
    )
    replay.add_argument("--source", help="only this source's dead letters")
    replay.add_argument(
        "--event-id",
        action="append",
        default=[],
        help="only this event id (repeat for several)",
    )
    replay.set_defaults(handler=run_replay)


def run_serve(args: argparse.Namespace) -> int:
    from integration_platform.webhooks.server import serve

    serve(
        host=args.host,
        port=args.port,
        workers=args.workers,
        access_log=not args.no_access_log,
        log_level=args.log_level,
    )
    return 0


def run_sources(args: argparse.Namespace) -> int:
    from integration_platform.webhooks.sources import WebhookSources

    for name, source in WebhookSources.from_env().items():
        rate = f"{source.rate_limit:g}/s burst {source.burst}" if source.rate_limit else "none"
        print(
            f"{name}: scheme={source.scheme} format={source.format} rate_limit={rate} "
            f"secrets={', '.join(source.secret_fingerprints)}"
        )
    return 0


def endpoint_url(url: str) -> str:
    """A bare base URL gets the events path; a full endpoint URL is used as given."""
    from integration_platform.webhooks.app import EVENTS_PATH

    parts = urlsplit(url)
    if parts.path in ("", "/"):
        parts = parts._replace(path=EVENTS_PATH)
    return urlunsplit(parts)


def signed_request(
    source_name: str, body: bytes, *, event_id: str | None = None, now: float | None = None
) -> dict[str, str]:
    """Headers that sign ``body`` as ``source_name`` would, with every configured secret."""
    from integration_platform.webhooks import signatures
    from integration_platform.webhooks.sources import WebhookSources

    source = WebhookSources.from_env()[source_name]
    headers = {"Content-Type": "application/json", "X-Webhook-Source": source.name}
    if source.scheme == signatures.STANDARD:
        msg_id = event_id or f"msg_{uuid.uuid4().hex}"
        stamp = int(time.time() if now is None else now)
        headers.update(
            {
                "webhook-id": msg_id,
                "webhook-timestamp": str(stamp),
                "webhook-signature": signatures.sign_standard(msg_id, stamp, body, source.secrets),
            }
        )
    else:
        headers["X-Signature-256"] = signatures.sign_sha256(body, source.secrets[0])
    return headers


@dataclass(frozen=True)
class SentEvent:
    url: str
    status: int
    reason: str
    text: str
    body: bytes
    headers: dict[str, str]

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


def send_test_event(
    source_name: str,
    url: str,
    *,
    event_type: str = "work_order.status_changed",
    entity_id: str = "WO-1001",
    event_id: str | None = None,
    timeout: float = 10.0,
    record: dict[str, Any] | None = None,
) -> SentEvent:
    """Build the sample message, sign it as ``source_name`` and post it (``test-send``).

    ``record`` overrides fields of the sample (for a Maximo message, attributes of the record;
    ``None`` leaves the field out), e.g. to address a work order that exists at a given site.
    """
    import requests

    from integration_platform.settings import ConfigError
    from integration_platform.webhooks.samples import sample_document
    from integration_platform.webhooks.sources import WebhookSources

    sources = WebhookSources.from_env()
    if source_name not in sources:
        raise ConfigError(
            f"--source {source_name!r} is not in WEBHOOK_SOURCES ({', '.join(sources)})"
        )
    source = sources[source_name]
    document = sample_document(source.format, event_type, entity_id)
    if record:
        target = document.get("data") if source.format in ("common", "upkeep") else document
        if source.format == "fiix":
            target = document["object"]
        for key, value in record.items():
            if value is None:
                target.pop(key, None)  # absent, as Maximo leaves out null attributes
            else:
                target[key] = value
    id_field = {"common": "id", "upkeep": "id", "fiix": "eventId"}.get(source.format)
    if event_id and source.scheme != "standard" and id_field:
        document[id_field] = event_id  # without webhook-id the body carries the id
    body = json.dumps(document).encode()
    headers = signed_request(source.name, body, event_id=event_id)
    endpoint = endpoint_url(url)
    answer = requests.post(endpoint, data=body, headers=headers, timeout=timeout)
    return SentEvent(
        endpoint, answer.status_code, answer.reason, answer.text, body, dict(answer.headers)
    )


def run_test_send(args: argparse.Namespace) -> int:
    import requests

    from integration_platform.webhooks.sources import WebhookSources

    source = WebhookSources.from_env().get(args.source)
    if source is not None:
        print(f"POST {endpoint_url(args.url)} ({source.name}, {source.scheme}, {args.event_type})")
    try:
        sent = send_test_event(
            args.source,
            args.url,
            event_type=args.event_type,
            entity_id=args.entity_id,
            event_id=args.event_id,
            timeout=args.timeout,
        )
    except requests.RequestException as exc:
        print(f"request failed: {exc}", file=sys.stderr)
        return 1
    print(f"{sent.status} {sent.reason} ({len(sent.body)} bytes sent)")
    if "Retry-After" in sent.headers:
        print(f"Retry-After: {sent.headers['Retry-After']}")
    print(sent.text)
    return 0 if sent.ok else 1


def run_replay(args: argparse.Namespace) -> int:
    from integration_platform.state.engine import database_url, make_engine
    from integration_platform.webhooks.inbox import replay

    engine = make_engine(database_url())
    try:
        count = replay(engine, source=args.source, event_ids=args.event_id)
    finally:
        engine.dispose()
    scope = f" of {args.source}" if args.source else ""
    print(f"{count} dead-lettered event(s){scope} queued again (status pending)")
    return 0
