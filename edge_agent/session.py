"""The agent's session with the township broker: its topics, the tags of its publishes, the
link settings drawn from the station's configuration, and the reconnect backoff."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import ClassVar

from edge_agent.link import LinkSettings, Will
from firmware.config import BrokerSection, StationConfig


@dataclass(frozen=True, slots=True)
class Topics:
    """The station's topics under ``sampling/<township>/<station>`` (docs/edge-agent.md)."""

    events: str
    status: str
    telemetry: str
    commands: str
    acks: str
    replies: str

    @classmethod
    def of(cls, prefix: str) -> Topics:
        names = ("events", "status", "telemetry", "commands", "acks", "replies")
        return cls(*(f"{prefix}/{n}" for n in names))


# The tags the agent gives its publishes; the link hands each back with the broker's answer.
# An event's tag is edge_agent.delivery.EventTag (its seq).


@dataclass(frozen=True, slots=True)
class StatusTag:
    state: str  # online, offline
    kind: ClassVar[str] = "status"


@dataclass(frozen=True, slots=True)
class ReplyTag:
    command_id: str | None
    kind: ClassVar[str] = "reply"


@dataclass(frozen=True, slots=True)
class TelemetryTag:
    kind: ClassVar[str] = "telemetry"


def broker_link(b: BrokerSection, client_id: str) -> LinkSettings:
    """A link to the broker of ``b`` with the station's TLS files and login (no Will, no
    subscriptions); ``dataclasses.replace`` sets the rest."""
    return LinkSettings(
        host=b.host,
        port=b.port,
        client_id=client_id,
        tls=b.tls,
        allow_plaintext=b.allow_plaintext,
        ca_file=b.ca_file,
        cert_file=b.cert_file,
        key_file=b.key_file,
        username=b.username,
        password_file=b.password_file,
        keepalive_s=b.keepalive_s,
    )


def link_settings(config: StationConfig) -> LinkSettings:
    """The agent's link to the township broker as the station's configuration describes it."""
    b = config.broker
    topics = Topics.of(config.topic_prefix)
    subs: list[tuple[str, int]] = [(topics.commands, 1)]
    if b.end_to_end_ack:
        subs.append((topics.acks, 1))
    offline = json.dumps({"state": "offline", "reason": "link lost"}).encode()
    return replace(
        broker_link(b, f"station-{config.station.township}-{config.station.id}"),
        connect_timeout_s=float(min(10, b.keepalive_s)),
        max_inflight=b.inflight_window + 10,
        will=Will(topics.status, offline, qos=1, retain=True),
        subscriptions=tuple(subs),
    )


def reconnect_delay(
    failures: int, min_s: float, max_s: float, jitter: Callable[[], float]
) -> float:
    """Seconds before the next connection attempt after ``failures`` failed ones: capped
    exponential, with jitter so a township's stations do not all reconnect at once."""
    cap = min(max_s, min_s * 2.0 ** max(0, failures - 1))
    return cap * (0.5 + 0.5 * jitter())
