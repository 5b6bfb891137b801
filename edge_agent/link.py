"""The MQTT link: the one module that owns a paho client and the thread that drives it.

One ``Connection`` is one attempt at one broker session: it opens the TCP/TLS socket,
sends CONNECT (MQTT 5, ``clean_start=False`` with a session expiry so the broker keeps the
station's subscriptions across a dropped link), subscribes, and then runs its own select
loop over paho's socket and a wake-up pipe. Everything paho reports (CONNACK, PUBACK with
its reason code, an incoming message, the end of the link) goes back to the owner as a
``LinkEvent`` through the owner's ``post`` function (a queue's ``put``); the owner asks
for publishes with ``publish()``, which hands the request to the network thread, so paho is
only ever touched from that thread.

A publish carries the caller's own ``tag`` (the outbox ``seq``); paho's message id never
leaves this module, because it starts again on every connection.

The link does not reconnect by itself: when it ends, the owner decides when to open the
next one (capped exponential backoff with jitter), so a half-open link is noticed here,
reported, and the owner's backoff applies. A link is declared dead when nothing at all has
come from the broker for 1.3 keepalive periods; paho pings after one quiet period, so a live
broker always answers well inside that.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import queue
import select
import socket
import ssl
import threading
import time
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from edge_agent.errors import LinkError
from edge_agent.link_model import (
    SESSION_EXPIRY_S,
    Connected,
    ConnectFailed,
    Disconnected,
    LinkEvent,
    LinkSettings,
    Message,
    Problem,
    Published,
    TlsSession,
    Will,
    _TlsContext,
    check_transport,
    ssl_context,
)

__all__ = [
    "DEAD_AFTER_KEEPALIVES",
    "SESSION_EXPIRY_S",
    "ConnectFailed",
    "Connected",
    "Connection",
    "Disconnected",
    "LinkEvent",
    "LinkSettings",
    "Message",
    "Problem",
    "Published",
    "TlsSession",
    "Will",
    "check_transport",
    "ssl_context",
]

log = logging.getLogger(__name__)

DEAD_AFTER_KEEPALIVES = 1.3


def _reason_text(rc: ReasonCode | int | MQTTErrorCode) -> str:
    if isinstance(rc, ReasonCode):
        return f"{rc.getName()} (0x{rc.value:02x})"
    if isinstance(rc, MQTTErrorCode):
        return mqtt.error_string(rc)
    return str(rc)


def _socket_problem(exc: OSError | ValueError) -> dict[str, Any]:
    """How a failed TCP connect is reported: the problem and its bare cause."""
    if isinstance(exc, TimeoutError):
        return {"problem": "no_answer", "detail": "timed out"}
    if isinstance(exc, OSError) and exc.errno == errno.ECONNREFUSED:
        return {"problem": "refused", "detail": "connection refused"}
    cause = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
    return {"problem": "unreachable", "detail": cause}


def _tls_session(sock: Any) -> TlsSession | None:
    if not isinstance(sock, ssl.SSLSocket):
        return None
    not_after = (sock.getpeercert() or {}).get("notAfter")
    return TlsSession(sock.version() or "TLS", not_after if isinstance(not_after, str) else None)


class Connection:
    """One broker session attempt and its network thread. Not reused after it ends."""

    def __init__(
        self, settings: LinkSettings, post: Callable[[LinkEvent], None], conn: int
    ) -> None:
        check_transport(settings)
        self.settings = settings
        self._post = post
        self.conn = conn
        self._requests: queue.Queue[tuple[str, Any]] = queue.Queue()
        self._stop = threading.Event()
        self._wake_r: socket.socket | None = None
        self._wake_w: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._tags: dict[int, Any] = {}
        self._connected = False
        self._ended = False
        self._last_in = time.monotonic()
        self._client: mqtt.Client | None = None
        self._password: str | None = None
        self._ctx: _TlsContext | None = None
        if settings.password_file is not None:
            try:
                self._password = settings.password_file.read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise LinkError(f"cannot read the broker password file: {exc}") from exc
        if settings.tls:
            self._ctx = ssl_context(settings)

    # --- owner side -------------------------------------------------------------------

    def start(self) -> None:
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._thread = threading.Thread(
            target=self._run, name=f"mqtt-link-{self.conn}", daemon=True
        )
        self._thread.start()

    def publish(
        self, tag: Any, topic: str, payload: bytes, qos: int, retain: bool, *, wake: bool = True
    ) -> None:
        """Hand a publish to the network thread; ``wake=False`` lets a caller queue several
        and ``wake()`` once."""
        self._requests.put(("publish", (tag, topic, payload, qos, retain)))
        if wake:
            self.wake()

    def close(self) -> None:
        """Ask for a clean DISCONNECT (the Will is not published)."""
        self._request("disconnect", None)

    def join(self, timeout: float) -> bool:
        """Wait for the network thread to end; False if it outlived ``timeout``."""
        if self._thread is None:
            return True
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def abort(self) -> None:
        """Stop the thread without a DISCONNECT (the broker will publish the Will)."""
        self._stop.set()
        self.wake()

    def _request(self, kind: str, arg: Any) -> None:
        self._requests.put((kind, arg))
        self.wake()

    def wake(self) -> None:
        """Make the network thread look at its requests now."""
        if self._wake_w is not None:
            with contextlib.suppress(OSError):
                self._wake_w.send(b"\0")

    # --- network thread ---------------------------------------------------------------

    def _make_client(self) -> mqtt.Client:
        s = self.settings
        c = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=s.client_id,
            protocol=mqtt.MQTTv5,
            reconnect_on_failure=False,
        )
        c.connect_timeout = s.connect_timeout_s
        c.max_inflight_messages_set(s.max_inflight)
        c.max_queued_messages_set(0)
        if self._ctx is not None:
            c.tls_set_context(self._ctx)
        if s.username is not None:
            c.username_pw_set(s.username, self._password)
        if s.will is not None:
            c.will_set(s.will.topic, s.will.payload, qos=s.will.qos, retain=s.will.retain)
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_publish = self._on_publish
        c.on_message = self._on_message
        return c

    def _run(self) -> None:
        try:
            self._connect_and_loop()
        except Exception as exc:  # the thread reports every failure, never dies silently
            log.exception("link %d failed", self.conn)
            self._end(f"link error: {exc}")
        finally:
            if self._ctx is not None:
                self._ctx.close_wrapped()
            for sock in (self._wake_r, self._wake_w):
                if sock is not None:
                    sock.close()

    def _end(
        self,
        reason: str,
        *,
        failed_connect: bool = False,
        permanent: bool = False,
        problem: Problem = "other",
        detail: str = "",
    ) -> None:
        if self._ended:
            return
        self._ended = True
        if failed_connect or not self._connected:
            self._post(ConnectFailed(self.conn, reason, permanent, problem, detail or reason))
        else:
            self._post(Disconnected(self.conn, reason))

    def _connect_and_loop(self) -> None:
        client = self._client = self._make_client()
        if not self._open(client):
            return
        wake = self._wake_r
        if wake is None:
            raise LinkError("the link was not started")
        self._last_in = time.monotonic()
        started = time.monotonic()
        while not self._stop.is_set() and not self._ended:
            if not self._turn(client, wake) or not self._alive(started):
                break
        self._close_socket(client)
        if not self._ended:
            self._end("stopped")

    def _open(self, client: mqtt.Client) -> bool:
        """TCP, TLS and the CONNECT; False (and the end reported) when that failed."""
        s = self.settings
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = s.session_expiry_s
        try:
            client.connect(
                s.host, s.port, keepalive=s.keepalive_s, clean_start=False, properties=props
            )
        except ssl.SSLCertVerificationError as exc:
            self._end(
                f"TLS: the broker's certificate is not trusted: {exc.verify_message}",
                permanent=True,
                problem="tls_certificate",
                detail=str(exc.verify_message),
            )
            return False
        except ssl.SSLError as exc:
            self._end(
                f"TLS handshake failed: {exc}", permanent=True, problem="tls", detail=str(exc)
            )
            return False
        except (OSError, ValueError) as exc:
            self._end(f"cannot reach {s.host}:{s.port}: {exc}", **_socket_problem(exc))
            return False
        return True

    def _turn(self, client: mqtt.Client, wake: socket.socket) -> bool:
        """One turn of the network loop: requests, reads, writes, pings. False when the
        link ended."""
        sock = client.socket()
        if sock is None:
            self._end("connection closed")
            return False
        pending = sock.pending() if isinstance(sock, ssl.SSLSocket) else 0
        wlist = [sock] if client.want_write() else []
        tick = min(0.25, self.settings.keepalive_s / 10)
        try:
            readable, writable, _ = select.select([sock, wake], wlist, [], 0.0 if pending else tick)
        except (OSError, ValueError) as exc:
            self._end(f"socket error: {exc}")
            return False
        if wake in readable:
            with contextlib.suppress(OSError):
                wake.recv(4096)
            self._serve_requests(client)
        if sock in readable or pending:
            self._last_in = time.monotonic()
            rc = client.loop_read()
            if rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                self._end(f"read failed: {_reason_text(rc)}")
                return False
        if sock in writable or client.want_write():
            rc = client.loop_write()
            if rc not in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_AGAIN):
                self._end(f"write failed: {_reason_text(rc)}")
                return False
        client.loop_misc()
        return True

    def _alive(self, started: float) -> bool:
        """False (and the end reported) when the CONNACK is late or the broker went quiet."""
        s, now = self.settings, time.monotonic()
        if not self._connected and now - started > s.connect_timeout_s:
            self._end(
                f"no CONNACK from {s.host}:{s.port} within {s.connect_timeout_s:g} s",
                problem="no_connack",
            )
            return False
        if self._connected and now - self._last_in > DEAD_AFTER_KEEPALIVES * s.keepalive_s:
            self._end(
                f"nothing from the broker for {now - self._last_in:.1f} s "
                f"(keepalive {s.keepalive_s} s): the link is dead"
            )
            return False
        return True

    def _close_socket(self, client: mqtt.Client) -> None:
        sock = client.socket()
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.close()

    def _serve_requests(self, client: mqtt.Client) -> None:
        while True:
            try:
                kind, arg = self._requests.get_nowait()
            except queue.Empty:
                return
            if kind == "publish":
                tag, topic, payload, qos, retain = arg
                if not self._connected:
                    self._post(Published(self.conn, tag, False, "not connected"))
                    continue
                info = client.publish(topic, payload, qos=qos, retain=retain)
                if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                    # Not sent at all: the link is broken; the owner sends again on the next.
                    self._end(f"publish failed: {_reason_text(info.rc)}")
                    return
                if qos == 0:
                    self._post(Published(self.conn, tag, True, "sent"))
                else:
                    self._tags[info.mid] = tag
            elif kind == "disconnect":
                if self._connected:
                    client.disconnect()
                    with contextlib.suppress(OSError):
                        client.loop_write()
                self._end("closed by the station")

    # paho callbacks: they run on this thread, inside loop_read/loop_write/loop_misc.

    def _on_connect(
        self,
        client: mqtt.Client,
        _userdata: Any,
        flags: mqtt.ConnectFlags,
        rc: ReasonCode,
        props: Properties | None,
    ) -> None:
        if rc.is_failure:
            permanent = rc.value in (0x84, 0x85, 0x86, 0x87, 0x8C)
            self._end(
                f"the broker refused the connection: {_reason_text(rc)}",
                failed_connect=True,
                permanent=permanent,
                problem="login",
                detail=_reason_text(rc),
            )
            return
        self._connected = True
        # Subscribe every time: a broker restarted without persistence forgot the session.
        for topic, qos in self.settings.subscriptions:
            client.subscribe(topic, qos=qos)
        receive_max = getattr(props, "ReceiveMaximum", None) if props is not None else None
        self._post(
            Connected(
                self.conn,
                bool(flags.session_present),
                int(receive_max) if isinstance(receive_max, int) else None,
                _tls_session(client.socket()),
            )
        )

    def _on_disconnect(
        self,
        _client: mqtt.Client,
        _userdata: Any,
        _flags: mqtt.DisconnectFlags,
        rc: ReasonCode,
        _props: Properties | None,
    ) -> None:
        self._end(f"disconnected: {_reason_text(rc)}")

    def _on_publish(
        self,
        _client: mqtt.Client,
        _userdata: Any,
        mid: int,
        rc: ReasonCode,
        _props: Properties | None,
    ) -> None:
        tag = self._tags.pop(mid, None)
        if tag is None:
            return
        self._post(Published(self.conn, tag, not rc.is_failure, _reason_text(rc)))

    def _on_message(self, _client: mqtt.Client, _userdata: Any, msg: mqtt.MQTTMessage) -> None:
        self._post(Message(self.conn, msg.topic, bytes(msg.payload), bool(msg.retain)))
