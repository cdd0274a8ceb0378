"""The inbox database goes away in the middle of a load, then comes back.

The receiver reaches the real PostgreSQL through a relay that can be cut: cutting it resets
every live connection and refuses new ones, which is what the receiver sees when the server
stops, without stopping PostgreSQL for the rest of the machine. Senders behave like CMMS
webhook senders: they retry whatever was not acknowledged with 202.
"""

from __future__ import annotations

import json
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
import sqlalchemy as sa

from integration_platform.state import make_engine, upgrade
from integration_platform.webhooks.app import EVENTS_PATH, create_app
from integration_platform.webhooks.samples import sample_document
from integration_platform.webhooks.signatures import sign_standard
from integration_platform.webhooks.sources import WebhookSources
from integration_platform.webhooks.testing import running_server
from integration_platform_tests.tcp_relay import tcp_relay
from integration_platform_tests.test_webhooks_receiver import ENV, NEW_SECRET, key

# The load is what matters here, not the per-source rate limit (tested elsewhere).
OUTAGE_ENV = {**ENV, "WEBHOOK_ACME_RATE_LIMIT": "0"}

pytestmark = pytest.mark.postgres

SENDERS = 8
EVENTS_PER_SENDER = 60
OUTAGE_SECONDS = 3.0
GIVE_UP_AFTER_SECONDS = 60.0


class Sender:
    """Posts signed events one after another, retrying each until it is acknowledged."""

    def __init__(self, base_url: str, number: int) -> None:
        self.base_url = base_url
        self.ids = [f"outage-{number}-{i}-{uuid.uuid4().hex[:8]}" for i in range(EVENTS_PER_SENDER)]
        self.acknowledged: list[str] = []
        self.answers: Counter[str] = Counter()

    def run(self) -> None:
        session = requests.Session()
        for index, event_id in enumerate(self.ids):
            body = self._body(index)
            deadline = time.monotonic() + GIVE_UP_AFTER_SECONDS
            while time.monotonic() < deadline:
                try:
                    answer = session.post(
                        self.base_url + EVENTS_PATH,
                        data=body,
                        headers=self._headers(event_id, body),
                        timeout=10,
                    )
                except requests.RequestException:
                    self.answers["connection_error"] += 1
                    time.sleep(0.1)
                    continue
                self.answers[str(answer.status_code)] += 1
                if answer.status_code == 202:
                    self.acknowledged.append(event_id)
                    break
                assert answer.status_code == 503, f"{event_id}: {answer.status_code} {answer.text}"
                time.sleep(min(float(answer.headers.get("Retry-After", "1")), 0.2))

    def _body(self, index: int) -> bytes:
        document = sample_document("common", "work_order.status_changed", f"WO-{index:05d}")
        return json.dumps(document).encode()

    @staticmethod
    def _headers(event_id: str, body: bytes) -> dict[str, str]:
        stamp = int(time.time())
        return {
            "Content-Type": "application/json",
            "X-Webhook-Source": "acme",
            "webhook-id": event_id,
            "webhook-timestamp": str(stamp),
            "webhook-signature": sign_standard(event_id, stamp, body, [key(NEW_SECRET)]),
        }


def stored_event_ids(engine: sa.Engine) -> list[str]:
    with engine.connect() as connection:
        return list(
            connection.execute(
                sa.text(
                    "SELECT event_id FROM maintenance_event_hooks WHERE cmms_system_id = 'acme'"
                )
            ).scalars()
        )


def test_database_stopped_mid_load_loses_nothing_acknowledged(postgres_url: str) -> None:
    upgrade(postgres_url)
    direct = make_engine(postgres_url)
    target = sa.engine.make_url(postgres_url)
    with tcp_relay((target.host or "127.0.0.1", target.port or 5432)) as relay:
        through_relay = target.set(host="127.0.0.1", port=relay.port)
        engine = make_engine(through_relay)
        app = create_app(sources=WebhookSources.from_env(OUTAGE_ENV), engine=engine)
        with running_server(app) as base_url:
            senders = [Sender(base_url, n) for n in range(SENDERS)]
            with ThreadPoolExecutor(SENDERS) as pool:
                futures = [pool.submit(sender.run) for sender in senders]
                total = SENDERS * EVENTS_PER_SENDER
                while sum(len(s.acknowledged) for s in senders) < total // 3:
                    if all(future.done() for future in futures):
                        break
                    time.sleep(0.01)
                relay.cut()
                acknowledged_at_cut = sum(len(s.acknowledged) for s in senders)
                time.sleep(0.5)
                health = requests.get(base_url + "/healthz", timeout=10)
                time.sleep(OUTAGE_SECONDS)
                relay.restore()
                for future in futures:
                    future.result(timeout=GIVE_UP_AFTER_SECONDS * 2)
        engine.dispose()

    answers = sum((s.answers for s in senders), Counter())
    sent = [event_id for s in senders for event_id in s.ids]
    acknowledged = [event_id for s in senders for event_id in s.acknowledged]
    stored = stored_event_ids(direct)
    direct.dispose()

    assert health.status_code == 503, "the receiver must report the lost database"
    assert answers["503"] > 0, f"the outage was never seen by a sender: {answers}"
    assert acknowledged_at_cut < total, "the load ended before the outage began"
    assert sorted(acknowledged) == sorted(sent), f"senders gave up: {answers}"
    assert Counter(stored) == Counter(sent), "every event is stored exactly once"


def test_relay_cut_really_takes_the_database_away(postgres_url: str) -> None:
    """The relay is what makes the outage real: while cut, a fresh connection fails."""
    target = sa.engine.make_url(postgres_url)
    with tcp_relay((target.host or "127.0.0.1", target.port or 5432)) as relay:
        engine = make_engine(target.set(host="127.0.0.1", port=relay.port))
        with engine.connect() as connection:
            assert connection.execute(sa.text("SELECT 1")).scalar() == 1
        relay.cut()
        with pytest.raises(sa.exc.OperationalError), engine.connect() as connection:
            connection.execute(sa.text("SELECT 1"))
        relay.restore()
        with engine.connect() as connection:
            assert connection.execute(sa.text("SELECT 1")).scalar() == 1
        engine.dispose()
