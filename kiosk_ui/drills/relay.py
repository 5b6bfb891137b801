"""The drill's link to the broker: a TCP relay on loopback that a drill can cut, as the 4G
link of a tent drops (``{"gateway": "offline"}``) and comes back."""

from __future__ import annotations

import contextlib
import logging
import selectors
import socket
import threading

from kiosk_ui.errors import SimulateError

log = logging.getLogger(__name__)


class LinkRelay:
    """A TCP relay on loopback between the agent and the broker; ``cut()`` is the outage.

    While cut, open connections are closed and new ones are accepted and closed at once,
    as when the 4G link of a tent drops.
    """

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self._listener = socket.socket()
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(16)
        self.port = int(self._listener.getsockname()[1])
        self._stop = threading.Event()
        self._online = threading.Event()
        self._online.set()
        self._lock = threading.Lock()
        self._pairs: list[tuple[socket.socket, socket.socket]] = []
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        t = threading.Thread(target=self._accept, name="link-relay", daemon=True)
        t.start()
        self._threads.append(t)

    def cut(self) -> None:
        self._online.clear()
        with self._lock:
            pairs, self._pairs = self._pairs, []
        for a, b in pairs:
            for s in (a, b):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
        log.info("gateway link cut")

    def restore(self) -> None:
        self._online.set()
        log.info("gateway link restored")

    def stop(self, timeout: float = 3.0) -> None:
        self._stop.set()
        self.cut()
        with contextlib.suppress(OSError):
            self._listener.close()
        for t in self._threads:
            t.join(timeout)
        alive = [t.name for t in self._threads if t.is_alive()]
        if alive:
            raise SimulateError(f"relay threads did not stop: {', '.join(alive)}")

    def _accept(self) -> None:
        self._listener.settimeout(0.2)
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            if not self._online.is_set():
                client.close()
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=2.0)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._pairs.append((client, upstream))
            t = threading.Thread(
                target=self._pump, args=(client, upstream), name="link-pump", daemon=True
            )
            t.start()
            self._threads = [x for x in self._threads if x.is_alive()] + [t]

    def _pump(self, a: socket.socket, b: socket.socket) -> None:
        sel = selectors.DefaultSelector()
        a.setblocking(False)
        b.setblocking(False)
        sel.register(a, selectors.EVENT_READ, (a, b))
        sel.register(b, selectors.EVENT_READ, (b, a))
        try:
            while not self._stop.is_set() and self._online.is_set():
                for key, _ in sel.select(0.2):
                    pair: tuple[socket.socket, socket.socket] = key.data  # from, to
                    src, dst = pair
                    data = src.recv(65536)
                    if not data:
                        return
                    dst.setblocking(True)
                    dst.sendall(data)
                    dst.setblocking(False)
        except OSError:
            return
        finally:
            sel.close()
            for s in (a, b):
                with contextlib.suppress(OSError):
                    s.close()
