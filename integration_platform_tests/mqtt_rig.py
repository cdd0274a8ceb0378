"""A private Mosquitto, certificates and a port-aware publisher for broker fault and TLS tests.

The system broker on 127.0.0.1:1883 is shared by every test and must never be stopped or
reconfigured. Tests that stop a broker, or need TLS and passwords, start their own
``mosquitto -c <conf>`` on a free loopback port with a configuration written here, and kill it
by PID afterwards. ``benchmarks/ingest.py`` uses the same broker for its load runs.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import ipaddress
import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from integration_platform.streams.collector import Collector, CollectorConfig

HOST = "127.0.0.1"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def require_mosquitto() -> str:
    """The ``mosquitto`` binary for a private broker; skip without it, except in CI."""
    binary = mosquitto_available()
    if binary is None:
        if os.environ.get("CI"):
            pytest.fail("mosquitto is not installed; CI must provide it (apt install mosquitto)")
        pytest.skip("mosquitto is not installed")
    return binary


def mosquitto_available() -> str | None:
    """Path of the ``mosquitto`` binary, if installed (Debian puts it in /usr/sbin)."""
    return shutil.which("mosquitto") or next(
        (p for p in ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto") if Path(p).exists()),
        None,
    )


# -- certificates --------------------------------------------------------------------------


@dataclass(frozen=True)
class Pki:
    """PEM files: a CA, a server certificate for 127.0.0.1/localhost, a client certificate
    (CN ``client_cn``) signed by that CA, and an unrelated CA (the 'wrong CA')."""

    ca_cert: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    other_ca_cert: Path
    client_cn: str


def make_pki(folder: Path, *, client_cn: str = "collector-1") -> Pki:
    """Generate the certificates with ``cryptography`` (EC P-256 keys: made in milliseconds)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    folder.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
    later = now + dt.timedelta(days=2)

    def name(cn: str) -> x509.Name:
        return x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "integration-platform tests"),
                x509.NameAttribute(NameOID.COMMON_NAME, cn),
            ]
        )

    def write_key(key: Any, path: Path) -> None:
        path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        path.chmod(0o600)

    def ca(cn: str, stem: str) -> tuple[Any, Any, Path]:
        key = ec.generate_private_key(ec.SECP256R1())
        ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
        cert = (
            x509.CertificateBuilder()
            .subject_name(name(cn))
            .issuer_name(name(cn))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now)
            .not_valid_after(later)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(ski, critical=False)
            .sign(key, hashes.SHA256())
        )
        path = folder / f"{stem}.crt"
        path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        return cert, key, path

    def leaf(
        cn: str, stem: str, issuer: Any, issuer_key: Any, *, server: bool
    ) -> tuple[Path, Path]:
        key = ec.generate_private_key(ec.SECP256R1())
        builder = (
            x509.CertificateBuilder()
            .subject_name(name(cn))
            .issuer_name(issuer.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now)
            .not_valid_after(later)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.ExtendedKeyUsage(
                    [ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH]
                ),
                critical=False,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), False
            )
        )
        if server:
            builder = builder.add_extension(
                x509.SubjectAlternativeName(
                    [x509.IPAddress(ipaddress.ip_address(HOST)), x509.DNSName("localhost")]
                ),
                critical=False,
            )
        cert = builder.sign(issuer_key, hashes.SHA256())
        cert_path, key_path = folder / f"{stem}.crt", folder / f"{stem}.key"
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        write_key(key, key_path)
        return cert_path, key_path

    ca_cert, ca_key, ca_path = ca("Test plant CA", "ca")
    server_cert, server_key = leaf("127.0.0.1", "server", ca_cert, ca_key, server=True)
    client_cert, client_key = leaf(client_cn, "client", ca_cert, ca_key, server=False)
    _, _, other_path = ca("Some other CA", "other-ca")
    return Pki(ca_path, server_cert, server_key, client_cert, client_key, other_path, client_cn)


def password_file(folder: Path, users: dict[str, str]) -> Path:
    """A mosquitto password file made with ``mosquitto_passwd -b`` (hashed, never plain)."""
    tool = shutil.which("mosquitto_passwd")
    if tool is None:
        raise FileNotFoundError("mosquitto_passwd is not installed (Debian: mosquitto package)")
    path = folder / "passwords"
    for number, (user, password) in enumerate(users.items()):
        flags = ["-c"] if number == 0 else []
        subprocess.run([tool, *flags, "-b", str(path), user, password], check=True)
    path.chmod(0o600)
    return path


# -- the broker ----------------------------------------------------------------------------


@dataclass(frozen=True)
class ListenerTls:
    """A TLS listener: server certificate and the CA that client certificates must chain to."""

    ca_file: Path
    cert_file: Path
    key_file: Path
    require_certificate: bool = False  # client certificates (use_identity_as_username)


class Mosquitto:
    """One private ``mosquitto`` process on a loopback port; restartable with the same state.

    Persistence is on (saved on a clean stop, SIGTERM), so queued QoS 1 messages of persistent
    sessions survive a restart as in production.
    """

    def __init__(
        self,
        folder: Path,
        *,
        port: int | None = None,
        tls: ListenerTls | None = None,
        password_file: Path | None = None,
        max_queued_messages: int = 100_000,
        max_inflight_messages: int = 20,
        persistence: bool = True,
    ) -> None:
        binary = mosquitto_available()
        if binary is None:
            raise FileNotFoundError("mosquitto is not installed")
        self.binary = binary
        self.folder = folder
        self.folder.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.conf = folder / "mosquitto.conf"
        self.log_path = folder / "mosquitto.log"
        anonymous = password_file is None and not (tls and tls.require_certificate)
        lines = [
            f"listener {self.port} {HOST}",
            f"allow_anonymous {'true' if anonymous else 'false'}",
            f"persistence {'true' if persistence else 'false'}",
            f"persistence_location {folder}/",
            f"max_queued_messages {max_queued_messages}",
            "max_queued_bytes 0",
            f"max_inflight_messages {max_inflight_messages}",
            f"log_dest file {self.log_path}",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "log_type information",
            "connection_messages true",
        ]
        if os.geteuid() == 0:
            lines.insert(0, "user root")  # else mosquitto switches to 'mosquitto' and cannot read
        if password_file is not None:
            lines.append(f"password_file {password_file}")
        if tls is not None:
            lines += [
                f"cafile {tls.ca_file}",
                f"certfile {tls.cert_file}",
                f"keyfile {tls.key_file}",
            ]
            if tls.require_certificate:
                lines += ["require_certificate true", "use_identity_as_username true"]
        self.conf.write_text("\n".join(lines) + "\n")
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"mqtt://{HOST}:{self.port}"

    def start(self, timeout: float = 10.0) -> None:
        if self.process is not None and self.process.poll() is None:
            return
        self.process = subprocess.Popen(
            [self.binary, "-c", str(self.conf)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"mosquitto exited with {self.process.returncode}; log:\n{self.log_tail()}"
                )
            if f"Opening ipv4 listen socket on port {self.port}" in self.log_tail(4000):
                with socket.socket() as sock:
                    if sock.connect_ex((HOST, self.port)) == 0:
                        return
            time.sleep(0.05)
        raise RuntimeError(f"mosquitto did not listen on {self.port}; log:\n{self.log_tail()}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> None:
        """SIGTERM: mosquitto saves its persistence file and exits; SIGKILL loses unsaved state."""
        process = self.process
        if process is None or process.poll() is not None:
            return
        process.send_signal(sig)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def __enter__(self) -> Mosquitto:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


# -- the collector on a thread ---------------------------------------------------------------


class RunningCollector:
    """A collector run on a thread like ``collect`` runs it; stopped cleanly on exit (spool,
    acknowledge, flush). ``ready``: wait until its subscriptions are confirmed."""

    def __init__(self, config: CollectorConfig, *, ready: bool = True) -> None:
        from integration_platform.streams.collector import Collector

        self.collector = Collector(config)
        self.wait_ready = ready
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.collector.run, args=(self.stop,), daemon=True)

    def __enter__(self) -> Collector:
        self.thread.start()
        deadline = time.monotonic() + 5
        while not self.collector.mqtt and time.monotonic() < deadline:
            time.sleep(0.02)
        assert self.collector.mqtt, "the collector started no MQTT session"
        if self.wait_ready:
            assert self.collector.wait_ready(timeout=10), "subscriptions were not confirmed"
        return self.collector

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(timeout=60)
        assert not self.thread.is_alive(), "the collector did not stop within 60 s"


# -- clients -------------------------------------------------------------------------------


@dataclass(frozen=True)
class ClientTls:
    ca_file: Path
    cert_file: Path | None = None
    key_file: Path | None = None


def _client(
    port: int,
    *,
    client_id: str | None = None,
    tls: ClientTls | None = None,
    username: str | None = None,
    password: str | None = None,
) -> Any:
    import paho.mqtt.client as mqtt

    client = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2,
        client_id=client_id or f"pub-{uuid.uuid4().hex[:10]}",
        protocol=mqtt.MQTTv5,
    )
    if username is not None:
        client.username_pw_set(username, password)
    if tls is not None:
        client.tls_set(
            ca_certs=str(tls.ca_file),
            certfile=str(tls.cert_file) if tls.cert_file else None,
            keyfile=str(tls.key_file) if tls.key_file else None,
        )
    client.on_socket_open = _no_delay
    return client


def _no_delay(client: Any, userdata: Any, sock: Any) -> None:
    with contextlib.suppress(OSError, AttributeError):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class RigPublisher:
    """QoS 1 publisher to a private broker. ``publish`` waits for the PUBACK (the broker has
    it); ``publish_many`` keeps up to ``inflight`` messages in flight and waits for all PUBACKs."""

    def __init__(self, port: int, *, inflight: int = 20, **options: Any) -> None:
        self._client = _client(port, **options)
        # publish_many keeps at most ``inflight`` unacknowledged; paho's own window is larger
        # so its internal queue is never used (with 100k pipelined messages paho 2.2 left a
        # third of them queued and never sent).
        self._window = inflight
        self._client.max_inflight_messages_set(inflight * 2)
        self._client.max_queued_messages_set(0)
        self._acked = 0
        self._all_acked = threading.Condition()
        self._client.on_publish = self._on_publish
        self._client.connect(HOST, port)
        self._client.loop_start()
        deadline = time.monotonic() + 10
        while not self._client.is_connected():
            if time.monotonic() > deadline:
                raise TimeoutError(f"publisher: no CONNACK from {HOST}:{port} in 10 s")
            time.sleep(0.01)

    def _on_publish(self, client: Any, userdata: Any, mid: int, reason: Any, props: Any) -> None:
        with self._all_acked:
            self._acked += 1
            self._all_acked.notify_all()

    def publish(self, topic: str, payload: object, *, qos: int = 1) -> None:
        body = payload if isinstance(payload, bytes | str) else json.dumps(payload)
        info = self._client.publish(topic, body, qos=qos)
        info.wait_for_publish(timeout=10)
        if not info.is_published():
            raise TimeoutError(f"no PUBACK for {topic} within 10 s")

    def publish_many(self, messages: Iterable[tuple[str, bytes]], timeout: float = 300) -> int:
        """Publish all at QoS 1 without waiting for each; return once every PUBACK is in."""
        with self._all_acked:
            start = self._acked
        count = 0
        deadline = time.monotonic() + timeout
        for topic, body in messages:
            with self._all_acked:
                while count - (self._acked - start) >= self._window:
                    if not self._all_acked.wait(max(0.0, deadline - time.monotonic())):
                        raise TimeoutError(f"no PUBACK for {self._window} messages in flight")
            self._client.publish(topic, body, qos=1)
            count += 1
        with self._all_acked:
            while self._acked - start < count:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"{self._acked - start} of {count} PUBACKs in {timeout} s")
                self._all_acked.wait(remaining)
        return count

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()

    def __enter__(self) -> RigPublisher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# -- a relay that can hold traffic ---------------------------------------------------------


class Relay:
    """TCP relay ``127.0.0.1:<port>`` -> the broker, for faults the broker cannot make itself.

    :meth:`pause` holds every byte in both directions (the client stays connected but hears
    nothing, as behind a stalled link); :meth:`drop` closes every relayed connection, discarding
    what was held; :meth:`resume` forwards again. New connections go to ``target_port``.
    """

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self._listener = socket.create_server((HOST, 0))
        self.port = int(self._listener.getsockname()[1])
        self._paused = threading.Event()
        self._closed = False
        self._pairs: list[tuple[socket.socket, socket.socket, threading.Event]] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, name="relay-accept", daemon=True).start()

    def pause(self) -> None:
        self._paused.set()

    def resume(self) -> None:
        self._paused.clear()

    def drop(self) -> None:
        with self._lock:
            pairs, self._pairs = self._pairs, []
        for client, upstream, dropped in pairs:
            dropped.set()
            for sock in (client, upstream):
                _close(sock)

    def close(self) -> None:
        self._closed = True
        _close(self._listener)
        self.drop()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection((HOST, self.target_port), timeout=2)
                upstream.settimeout(None)
            except OSError:
                _close(client)  # broker down: the client sees the connection fail
                continue
            for sock in (client, upstream):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            dropped = threading.Event()
            with self._lock:
                self._pairs.append((client, upstream, dropped))
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(
                    target=self._pump, args=(src, dst, dropped), name="relay-pump", daemon=True
                ).start()

    def _pump(self, src: socket.socket, dst: socket.socket, dropped: threading.Event) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                while self._paused.is_set():  # hold it
                    if dropped.wait(0.02):
                        return
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                _close(sock)

    def __enter__(self) -> Relay:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(OSError):
        sock.close()
