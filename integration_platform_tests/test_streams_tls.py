"""MQTT over TLS: the collector against a private Mosquitto with a TLS listener.

Certificates are generated per test module with ``cryptography`` (a CA, a server certificate
for 127.0.0.1, a client certificate, and an unrelated CA); passwords are hashed into a
mosquitto password file with ``mosquitto_passwd``. Credentials reach the collector the way the
registry prescribes: the names of environment variables, never the secrets themselves.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from integration_platform.streams.collector import Collector, CollectorConfig
from integration_platform_tests.mqtt_rig import (
    ClientTls,
    ListenerTls,
    Mosquitto,
    Pki,
    RigPublisher,
    RunningCollector,
    make_pki,
    password_file,
    require_mosquitto,
)
from integration_platform_tests.streams_helpers import read_delta_independently, row_keys, wait_for

T0 = datetime(2026, 9, 1, 12, 0, tzinfo=UTC)
SITE = "tls-site"
USER, PASSWORD = "collector", "s3cret-collector"
PUB_USER, PUB_PASSWORD = "gateway", "s3cret-gateway"
MQTT_LOGGER = "integration_platform.streams.mqtt"
CREDENTIALS = (
    "credentials: {username_env: TLS_TEST_MQTT_USER, password_env: TLS_TEST_MQTT_PASSWORD}"
)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    require_mosquitto()
    return make_pki(tmp_path_factory.mktemp("pki"))


def broker_with(folder: Path, pki: Pki, *, client_certs: bool) -> Mosquitto:
    tls = ListenerTls(pki.ca_cert, pki.server_cert, pki.server_key, client_certs)
    users = (
        None if client_certs else password_file(folder, {USER: PASSWORD, PUB_USER: PUB_PASSWORD})
    )
    return Mosquitto(folder / "broker", tls=tls, password_file=users, persistence=False)


def registry_yaml(port: int, tls: str, credentials: str = "") -> str:
    return f"""
site: {SITE}
collector: {{client_id: tls-collector, session_expiry_s: 60}}
devices:
  - device_id: chiller-3
    protocol: mqtt
    endpoint: mqtts://127.0.0.1:{port}
    tls: {tls}
    {credentials}
    sensors:
      - {{sensor_id: supply_temp, type: temperature, unit: degC}}
"""


@pytest.fixture
def config_for(tmp_path: Path, data_dir: Path) -> Iterator:
    def make(text: str) -> CollectorConfig:
        devices = tmp_path / "devices.yaml"
        devices.write_text(text)
        return CollectorConfig(
            devices_file=devices,
            data_dir=data_dir,
            lake_root=str(data_dir / "lake"),
            flush_rows=10,
            flush_seconds=0.2,
            progress_seconds=5.0,
            reload_seconds=0.5,
        )

    yield make


def table_rows(config: CollectorConfig) -> list[tuple]:
    table = Path(config.lake_root) / "telemetry" / "sensor_readings"
    return row_keys(read_delta_independently(table)) if (table / "_delta_log").exists() else []


def publish_readings(publisher: RigPublisher, count: int) -> list[tuple]:
    expected = []
    for i in range(count):
        ts = T0 + timedelta(seconds=i)
        body = {"ts": ts.isoformat(), "value": 6.5 + i, "quality": "good"}
        publisher.publish(f"plant/{SITE}/chiller-3/supply_temp", body)
        expected.append(("chiller-3", "supply_temp", ts.isoformat(), 6.5 + i))
    return expected


@pytest.mark.timeout(60)
def test_ca_verified_server_and_password(
    tmp_path: Path, pki: Pki, config_for, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TLS_TEST_MQTT_USER", USER)
    monkeypatch.setenv("TLS_TEST_MQTT_PASSWORD", PASSWORD)
    with broker_with(tmp_path, pki, client_certs=False) as broker:
        config = config_for(
            registry_yaml(
                broker.port,
                f"{{ca_file: {pki.ca_cert}}}",
                CREDENTIALS,
            )
        )
        with RunningCollector(config):
            with RigPublisher(
                broker.port,
                tls=ClientTls(pki.ca_cert),
                username=PUB_USER,
                password=PUB_PASSWORD,
            ) as publisher:
                expected = publish_readings(publisher, 5)
            assert wait_for(lambda: len(table_rows(config)) >= 5, timeout=20)
        # Logged in as the collector's user, persistent session (c0: clean start off).
        assert f"as tls-collector (p5, c0, k30, u'{USER}')" in broker.log_tail(20_000)
    assert table_rows(config) == expected


@pytest.mark.timeout(60)
def test_client_certificate_authentication(tmp_path: Path, pki: Pki, config_for) -> None:
    with broker_with(tmp_path, pki, client_certs=True) as broker:
        tls = (
            f"{{ca_file: {pki.ca_cert}, cert_file: {pki.client_cert}, key_file: {pki.client_key}}}"
        )
        config = config_for(registry_yaml(broker.port, tls))
        with RunningCollector(config):
            client_tls = ClientTls(pki.ca_cert, pki.client_cert, pki.client_key)
            with RigPublisher(broker.port, tls=client_tls) as publisher:
                expected = publish_readings(publisher, 5)
            assert wait_for(lambda: len(table_rows(config)) >= 5, timeout=20)
        # The broker took the user name from the client certificate's CN.
        assert f"as tls-collector (p5, c0, k30, u'{pki.client_cn}')" in broker.log_tail(20_000)
    assert table_rows(config) == expected


def mqtt_errors(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == MQTT_LOGGER and r.levelno >= logging.ERROR
    ]


@pytest.mark.timeout(60)
def test_wrong_ca_fails_with_a_clear_error(
    tmp_path: Path, pki: Pki, config_for, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=MQTT_LOGGER)
    with broker_with(tmp_path, pki, client_certs=True) as broker:
        tls = (
            f"{{ca_file: {pki.other_ca_cert}, cert_file: {pki.client_cert}, "
            f"key_file: {pki.client_key}}}"
        )
        config = config_for(registry_yaml(broker.port, tls))
        with RunningCollector(config, ready=False) as collector:
            assert wait_for(lambda: mqtt_errors(caplog), timeout=10)
            assert not collector.wait_ready(timeout=0.5)
            stats = collector.mqtt_stats()
            assert stats.connects == 0 and stats.connect_failures >= 1
            assert stats.problems[-1] == mqtt_errors(caplog)[0]  # kept for the status too
    error = mqtt_errors(caplog)[0]
    assert error.startswith(f"MQTT mqtts://127.0.0.1:{broker.port} (devices chiller-3): ")
    assert "TLS certificate verification failed" in error
    assert f"tls.ca_file='{pki.other_ca_cert}'" in error
    assert "CA certificate (PEM) that signed the broker's certificate" in error
    assert len(mqtt_errors(caplog)) == 1  # retried with back-off, not logged on every attempt


@pytest.mark.timeout(60)
def test_wrong_password_names_the_credentials_to_check(
    tmp_path: Path,
    pki: Pki,
    config_for,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    caplog.set_level(logging.INFO, logger=MQTT_LOGGER)
    monkeypatch.setenv("TLS_TEST_MQTT_USER", USER)
    monkeypatch.setenv("TLS_TEST_MQTT_PASSWORD", "not-the-password")
    with broker_with(tmp_path, pki, client_certs=False) as broker:
        config = config_for(
            registry_yaml(
                broker.port,
                f"{{ca_file: {pki.ca_cert}}}",
                CREDENTIALS,
            )
        )
        with RunningCollector(config, ready=False) as collector:
            assert wait_for(lambda: mqtt_errors(caplog), timeout=10)
            assert collector.mqtt_stats().connects == 0
    error = mqtt_errors(caplog)[0]
    assert f"MQTT mqtts://127.0.0.1:{broker.port} (devices chiller-3) refused" in error
    assert "'tls-collector'" in error and "credentials.username_env" in error


def test_unreadable_ca_file_stops_the_start_naming_the_setting(
    tmp_path: Path, pki: Pki, config_for
) -> None:
    from integration_platform.streams.devices import RegistryError

    missing = tmp_path / "no-such-ca.pem"
    config = config_for(registry_yaml(8883, f"{{ca_file: {missing}}}"))
    collector = Collector(config)
    with pytest.raises(RegistryError) as caught:
        collector.run(threading.Event())
    text = str(caught.value)
    assert "MQTT mqtts://127.0.0.1:8883 (devices chiller-3)" in text
    assert f"tls.ca_file='{missing}'" in text and "check that the paths exist" in text
