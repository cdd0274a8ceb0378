"""A loopback TCP relay that can be cut and restored, standing in for a server going down.

Tests put it between a client and a shared service (PostgreSQL, a broker) to take that
service away from one client without stopping it for every other test on the machine. While
cut, live connections are reset and new ones are refused, as when the server process is
gone; restored, new connections go through again.
"""

from __future__ import annotations

import contextlib
import selectors
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager

CHUNK = 65536


class TcpRelay:
    """Forwards ``127.0.0.1:<port>`` to ``target``; :meth:`cut` and :meth:`restore` it."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self._lock = threading.Lock()
        self._pairs: list[tuple[socket.socket, socket.socket]] = []
        self._stop = threading.Event()
        self._listener: socket.socket | None = None
        self.port = self._free_port()
        self.connections = 0
        self._listen()
        self._thread = threading.Thread(target=self._pump, name="tcp-relay", daemon=True)
        self._thread.start()

    @property
    def address(self) -> tuple[str, int]:
        return ("127.0.0.1", self.port)

    @staticmethod
    def _free_port() -> int:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            return sock.getsockname()[1]

    def _listen(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(self.address)
        listener.listen(128)
        listener.setblocking(False)
        with self._lock:
            self._listener = listener

    def cut(self) -> None:
        """Reset every live connection and refuse new ones (the port is closed)."""
        with self._lock:
            listener, self._listener = self._listener, None
            pairs, self._pairs = self._pairs, []
        if listener is not None:
            listener.close()
        for pair in pairs:
            for sock in pair:
                _reset(sock)

    def restore(self) -> None:
        """Accept connections again on the same port."""
        if self._listener is None:
            self._listen()

    def close(self) -> None:
        self._stop.set()
        self.cut()
        self._thread.join(timeout=5)

    def _pump(self) -> None:
        while not self._stop.is_set():
            with self._lock:
                listener = self._listener
                pairs = list(self._pairs)
            selector = selectors.DefaultSelector()
            try:
                if listener is not None:
                    selector.register(listener, selectors.EVENT_READ, None)
                for pair in pairs:
                    for index, sock in enumerate(pair):
                        selector.register(sock, selectors.EVENT_READ, (pair, index))
                for key, _ in selector.select(timeout=0.05):
                    if key.data is None:
                        self._accept(key.fileobj)  # type: ignore[arg-type]
                    else:
                        pair, index = key.data
                        self._forward(pair, index)
            except (OSError, ValueError):
                continue  # a socket was closed by cut() between snapshot and select
            finally:
                selector.close()

    def _accept(self, listener: socket.socket) -> None:
        try:
            client, _ = listener.accept()
        except OSError:
            return
        try:
            upstream = socket.create_connection(self.target, timeout=5)
        except OSError:
            _reset(client)
            return
        for sock in (client, upstream):
            sock.setblocking(True)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self._lock:
            if self._listener is None:  # cut while connecting
                _reset(client)
                _reset(upstream)
                return
            self._pairs.append((client, upstream))
            self.connections += 1

    def _forward(self, pair: tuple[socket.socket, socket.socket], index: int) -> None:
        source, sink = pair[index], pair[1 - index]
        try:
            data = source.recv(CHUNK)
            if data:
                sink.sendall(data)
                return
        except OSError:
            pass
        with self._lock:
            if pair in self._pairs:
                self._pairs.remove(pair)
        for sock in pair:
            _reset(sock)


def _reset(sock: socket.socket) -> None:
    """Close with RST, as a vanished peer would, rather than an orderly FIN."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    with contextlib.suppress(OSError):
        sock.close()


@contextmanager
def tcp_relay(target: tuple[str, int]) -> Iterator[TcpRelay]:
    relay = TcpRelay(target)
    try:
        yield relay
    finally:
        relay.close()
