"""``webhooks`` commands: sources, test-send against a live receiver, serve as a real process."""

from __future__ import annotations

import argparse
import base64
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import sqlalchemy as sa

from integration_platform.settings import ConfigError
from integration_platform.state import downgrade, make_engine, upgrade
from integration_platform.webhooks.app import create_app
from integration_platform.webhooks.cli import add_webhook_commands
from integration_platform.webhooks.server import check_configuration
from integration_platform.webhooks.sources import WebhookSources, fingerprint
from integration_platform.webhooks.testing import running_server

SECRET = "whsec_" + base64.b64encode(b"cli-test-secret-0123456789").decode()
RAW_SECRET = "raw-cli-secret"
ENV = {
    "WEBHOOK_SOURCES": "maximo,legacy",
    "WEBHOOK_MAXIMO_SECRETS": SECRET,
    "WEBHOOK_LEGACY_SECRETS": RAW_SECRET,
    "WEBHOOK_LEGACY_SCHEME": "sha256",
}
# The same wiring the top-level command uses: the handler returns the exit status.
CLI = (
    "import argparse, sys\n"
    "from integration_platform.webhooks.cli import add_webhook_commands\n"
    "parser = argparse.ArgumentParser()\n"
    "add_webhook_commands(parser.add_subparsers())\n"
    "args = parser.parse_args(sys.argv[1:])\n"
    "sys.exit(args.handler(args))\n"
)


def run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    add_webhook_commands(parser.add_subparsers())
    args = parser.parse_args(argv)
    return int(args.handler(args))


@pytest.fixture
def configured(monkeypatch: pytest.MonkeyPatch, data_dir: Path) -> str:
    """Webhook sources in the environment and a migrated embedded state database."""
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    url = f"sqlite:///{data_dir / 'state.db'}"
    monkeypatch.setenv("INTEGRATION_PLATFORM_DB_URL", url)
    upgrade(url)
    return url


@pytest.fixture
def receiver(configured: str) -> Iterator[tuple[str, sa.Engine]]:
    engine = make_engine(configured)
    with running_server(create_app(sources=WebhookSources.from_env(), engine=engine)) as url:
        yield url, engine
    engine.dispose()


def stored(engine: sa.Engine) -> list[tuple[str, str]]:
    with engine.connect() as connection:
        return [
            tuple(row)
            for row in connection.execute(
                sa.text("SELECT cmms_system_id, event_id FROM maintenance_event_hooks ORDER BY id")
            )
        ]


def test_every_command_has_help(capsys: pytest.CaptureFixture[str]) -> None:
    for command in (["serve"], ["sources"], ["test-send"], []):
        with pytest.raises(SystemExit) as done:
            run(["webhooks", *command, "--help"])
        assert done.value.code == 0
    assert "--event-type" in capsys.readouterr().out


def test_sources_lists_schemes_and_fingerprints_never_secrets(
    configured: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(["webhooks", "sources"]) == 0
    out = capsys.readouterr().out
    assert "maximo: scheme=standard format=maximo" in out
    assert "legacy: scheme=sha256 format=common" in out
    assert fingerprint(SECRET) in out and fingerprint(RAW_SECRET) in out
    assert SECRET not in out and RAW_SECRET not in out
    assert base64.b64encode(b"cli-test-secret-0123456789").decode() not in out


def test_missing_secret_names_the_variable(
    configured: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("WEBHOOK_LEGACY_SECRETS")
    with pytest.raises(ConfigError, match="WEBHOOK_LEGACY_SECRETS"):
        run(["webhooks", "sources"])
    with pytest.raises(ConfigError, match="WEBHOOK_LEGACY_SECRETS"):
        check_configuration()


@pytest.mark.parametrize("source", ["maximo", "legacy"])
def test_test_send_signs_with_the_configured_secret(
    source: str,
    receiver: tuple[str, sa.Engine],
    capsys: pytest.CaptureFixture[str],
) -> None:
    url, engine = receiver
    argv = ["webhooks", "test-send", "--source", source, "--url", url, "--event-id", "evt-cli-1"]
    if source == "maximo":
        argv += ["--event-type", "work_order.created", "--entity-id", "1001"]
    assert run(argv) == 0
    assert run(argv) == 0
    out = capsys.readouterr().out
    assert "202" in out and '"accepted"' in out and '"duplicate"' in out
    assert stored(engine) == [(source, "evt-cli-1")]


def test_test_send_reports_a_refusal(
    receiver: tuple[str, sa.Engine],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    url, engine = receiver
    # The sender's secret differs from the receiver's (already loaded) one.
    monkeypatch.setenv("WEBHOOK_MAXIMO_SECRETS", "whsec_" + base64.b64encode(b"x" * 24).decode())
    assert run(["webhooks", "test-send", "--source", "maximo", "--url", url]) == 1
    assert "401" in capsys.readouterr().out
    assert stored(engine) == []


def test_serve_refuses_a_database_behind_the_newest_revision(configured: str) -> None:
    downgrade(configured, "0001")
    with pytest.raises(ConfigError, match="db upgrade"):
        check_configuration()


def test_serve_starts_without_a_reachable_database(
    configured: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv(
        "INTEGRATION_PLATFORM_DB_URL", f"postgresql+psycopg2://postgres@127.0.0.1:{port}/x"
    )
    assert "maximo (standard)" in check_configuration()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_serve_runs_two_workers_that_accept_events(configured: str) -> None:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-c", CLI, "webhooks", "serve", "--port", str(port), "--workers", "2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its own process group: the workers stop with it
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None, process.stdout.read() if process.stdout else ""
            try:
                if requests.get(base + "/healthz", timeout=1).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            assert time.monotonic() < deadline, "the receiver did not come up"
            time.sleep(0.2)
        for number in range(4):
            argv = ["webhooks", "test-send", "--source", "maximo", "--url", base]
            assert run([*argv, "--event-id", f"evt-serve-{number}"]) == 0
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        output, _ = process.communicate(timeout=30)
    assert "webhook sources: maximo (standard), legacy (sha256)" in output
    engine = make_engine(configured)
    try:
        assert len(stored(engine)) == 4
    finally:
        engine.dispose()
