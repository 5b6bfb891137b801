"""``station simulate --watch``: every event as it reaches the broker, one line each.

It listens through the agent's own MQTT adapter (``edge_agent.link.Connection``): one module
owns paho.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import queue
import threading
from collections.abc import Callable
from typing import Any

from edge_agent.link import (
    Connected,
    ConnectFailed,
    Connection,
    Disconnected,
    LinkEvent,
    LinkSettings,
    Message,
)
from edge_agent.session import Topics, link_settings
from firmware.config import StationConfig
from kiosk_ui.errors import SimulateError

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 10.0
DETAIL_KEYS = ("decision", "lane", "tube", "position", "kind", "box", "reason")


def watch_settings(config: StationConfig) -> LinkSettings:
    """The agent's own link settings (broker, TLS, credentials), as a listener on the
    station's events topic: its own client id, no Will, a session the broker forgets."""
    return dataclasses.replace(
        link_settings(config),
        client_id=f"drill-watch-{os.getpid()}",
        will=None,
        session_expiry_s=0,
        subscriptions=((Topics.of(config.topic_prefix).events, 1),),
    )


class EventWatch:
    """Subscribes to the station's events topic and prints each event as it arrives."""

    def __init__(self, config: StationConfig, out: Callable[[str], None] = print) -> None:
        self.settings = watch_settings(config)
        self.out = out
        self.received: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._status: queue.Queue[LinkEvent] = queue.Queue()
        self._link: Connection | None = None
        self._closing = False

    def start(self, timeout: float = CONNECT_TIMEOUT_S) -> None:
        """Connect and subscribe; raises SimulateError when the broker cannot be reached."""
        link = Connection(self.settings, self._on_event, conn=1)
        link.start()
        self._link = link
        try:
            first = self._status.get(timeout=timeout)
        except queue.Empty:
            first = ConnectFailed(1, f"no answer within {timeout:.0f} s", False)
        if not isinstance(first, Connected):
            self.stop()
            reason = getattr(first, "reason", "")
            raise SimulateError(f"--watch cannot reach the broker: {reason}")

    def stop(self, timeout: float = 5.0) -> None:
        link, self._link = self._link, None
        if link is None:
            return
        self._closing = True
        link.close()
        if not link.join(timeout):
            link.abort()
            if not link.join(timeout):
                raise SimulateError(f"the watch's link did not stop within {2 * timeout} s")

    def _on_event(self, event: LinkEvent) -> None:
        """On the link's thread: print messages; hand the rest to ``start``."""
        if isinstance(event, Message):
            self._message(event.payload)
        elif isinstance(event, Disconnected):
            if not self._closing:
                log.warning("the watch lost the broker: %s", event.reason)
        else:
            self._status.put(event)

    def _message(self, payload: bytes) -> None:
        try:
            event = json.loads(payload)
        except ValueError:
            self.out(f"broker <- (not JSON) {payload[:60]!r}")
            return
        with self._lock:
            self.received.append(event)
        self.out(event_line(event))


def event_line(event: dict[str, Any]) -> str:
    data = event.get("data") or {}
    detail = " ".join(f"{k}={data[k]}" for k in DETAIL_KEYS if data.get(k) is not None)
    return f"broker <- #{event.get('seq')} {event.get('type')} {detail}".rstrip()
