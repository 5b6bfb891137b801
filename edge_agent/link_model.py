"""The MQTT link's data: what it needs before it opens (its settings, its TLS context, the
transport rule) and the events it reports to its owner.

``edge_agent.link`` (the connection itself) re-exports every name here.
"""

from __future__ import annotations

import contextlib
import ssl
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from edge_agent.errors import LinkError

SESSION_EXPIRY_S = 7 * 24 * 3600


@dataclass(frozen=True, slots=True)
class Will:
    topic: str
    payload: bytes
    qos: int = 1
    retain: bool = True


@dataclass(frozen=True, slots=True)
class LinkSettings:
    """Everything needed to open one connection; built from the station config or CLI."""

    host: str
    port: int
    client_id: str
    tls: bool
    allow_plaintext: bool = False
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    username: str | None = None
    password_file: Path | None = None
    keepalive_s: int = 30
    connect_timeout_s: float = 10.0
    session_expiry_s: int = SESSION_EXPIRY_S
    max_inflight: int = 100
    will: Will | None = None
    subscriptions: Sequence[tuple[str, int]] = field(default_factory=tuple)


class _TlsContext(ssl.SSLContext):
    """Remembers the sockets it wraps, so a failed handshake's socket can be closed here."""

    wrapped: list[ssl.SSLSocket]

    def wrap_socket(self, *args: Any, **kwargs: Any) -> ssl.SSLSocket:
        sock = super().wrap_socket(*args, **kwargs)
        self.wrapped.append(sock)
        return sock

    def close_wrapped(self) -> None:
        for sock in self.wrapped:
            with contextlib.suppress(OSError):
                sock.close()
        self.wrapped.clear()


def ssl_context(s: LinkSettings) -> _TlsContext:
    """A client TLS context: the given CA (or the system's), and the station's certificate."""
    ctx = _TlsContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.wrapped = []
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        if s.ca_file is not None:
            ctx.load_verify_locations(cafile=str(s.ca_file))
        else:
            ctx.load_default_certs(ssl.Purpose.SERVER_AUTH)
        if s.cert_file is not None and s.key_file is not None:
            ctx.load_cert_chain(str(s.cert_file), str(s.key_file))
    except (OSError, ssl.SSLError) as exc:
        raise LinkError(f"cannot load the TLS files: {exc}") from exc
    return ctx


def check_transport(s: LinkSettings) -> None:
    """Refuse a clear-text link unless the configuration explicitly waived TLS."""
    if not s.tls and not s.allow_plaintext:
        raise LinkError(
            f"refusing to connect to {s.host}:{s.port} without TLS: use mqtts:// "
            "or set broker.allow_plaintext (drills and development only)"
        )


# What the link reports. The owner reads them from its queue on its own thread.


@dataclass(frozen=True, slots=True)
class TlsSession:
    version: str  # e.g. TLSv1.3
    not_after: str | None  # the broker certificate's notAfter, as the ssl module gives it


@dataclass(frozen=True, slots=True)
class Connected:
    conn: int
    session_present: bool
    receive_maximum: int | None = None  # the broker's limit on QoS 1/2 publishes in flight
    tls: TlsSession | None = None


# Why a connection attempt failed, for a caller that explains it in its own words (the
# self-test); ``detail`` is then the bare cause (a certificate check's message, a reason code).
Problem = Literal[
    "refused",  # nothing listens on the port
    "no_answer",  # no TCP answer in time
    "unreachable",  # no route, no name, another socket error
    "tls_certificate",  # the broker's certificate is not trusted
    "tls",  # another TLS failure
    "no_connack",  # TCP and TLS up, but no CONNACK in time
    "login",  # the broker refused the CONNECT
    "other",
]


@dataclass(frozen=True, slots=True)
class ConnectFailed:
    conn: int
    reason: str
    permanent: bool  # a refusal that retrying will not cure (bad certificate, not authorized)
    problem: Problem = "other"
    detail: str = ""


@dataclass(frozen=True, slots=True)
class Disconnected:
    conn: int
    reason: str


@dataclass(frozen=True, slots=True)
class Published:
    """The broker answered a publish: PUBACK for QoS 1, or the write for QoS 0."""

    conn: int
    tag: Any
    ok: bool
    reason: str


@dataclass(frozen=True, slots=True)
class Message:
    conn: int
    topic: str
    payload: bytes
    retain: bool


LinkEvent = Connected | ConnectFailed | Disconnected | Published | Message
