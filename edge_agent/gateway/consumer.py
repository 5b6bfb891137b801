"""The gateway consumer: store every station's events once, in order, and acknowledge them.

- It subscribes to ``$share/{group}/sampling/+/+/events`` and ``.../telemetry``, so several
  instances split the load; and to ``sampling/+/+/status`` plainly, so every instance gets
  each station's retained status when it connects (a shared subscription gets no retained
  messages) and the station list is right from the first minute. Writing a status twice is
  harmless: the newer one wins.
- Each message is checked (``intake``): a rejection is logged and counted by reason, never
  stored and never acknowledged.
- What arrives within a few milliseconds is stored as one batch in one transaction. Only
  after the commit does it publish, retained, ``{"through": N, "time": T}`` (T: the gateway's
  own clock, RFC 3339 UTC) on
  ``sampling/{township}/{station}/acks``: the contiguous prefix stored, which lets a station
  forget an event. A repeat or a conflicting seq touches its station too, so a lost ack is
  said again.
- When the store cannot commit (the database is away, its disk is full) the batch is held and
  tried again with a backoff, nothing new is acknowledged, and what arrives meanwhile waits
  with it (up to ``MAX_HELD`` events; beyond that they are dropped unacknowledged, so their
  stations send them again after their ack timeout).
- Between the link's thread and the loop sits a queue of at most ``QUEUE_MAX`` messages;
  when it is full the link stops reading and the broker keeps the rest, so a herd of
  stations draining their backlogs at once cannot make the gateway's memory grow without end.

The broker's PUBACK to this consumer goes out when the message is handed over, before it is
stored; a consumer that dies in between loses nothing, because the station sends again
whatever the ``acks`` topic does not cover after its ``ack_timeout_s``.
"""

from __future__ import annotations

import collections
import contextlib
import json
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from edge_agent.errors import StorageError
from edge_agent.gateway.acks import AckBook
from edge_agent.gateway.intake import Event, Intake, Rejected, split_topic
from edge_agent.gateway.store import GatewayStore, Kind, StationKey, StoreResult
from edge_agent.link import (
    Connected,
    ConnectFailed,
    Connection,
    Disconnected,
    LinkEvent,
    LinkSettings,
    Message,
    Published,
)

log = logging.getLogger(__name__)

BATCH_WAIT_S = 0.02
BATCH_MAX = 500
MAX_HELD = 100_000
NOT_CONNECTED = "not connected"  # what the link answers a publish asked for while it is down
QUEUE_MAX = 20_000  # messages received and not yet taken by the loop
STORE_MAX = 5_000
RETRY_S = (0.5, 5.0)


def subscriptions(group: str) -> tuple[tuple[str, int], ...]:
    """What a gateway instance subscribes to (see the module's docstring for why)."""
    return (
        (f"$share/{group}/sampling/+/+/events", 1),
        (f"$share/{group}/sampling/+/+/telemetry", 0),
        ("sampling/+/+/status", 1),
    )


def _rfc3339(at: float) -> str:
    """The gateway's clock on an ack: RFC 3339 UTC with milliseconds."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(at)) + f".{int(at * 1000) % 1000:03d}Z"


@dataclass
class GatewayStats:
    stored: int = 0
    repeats: int = 0
    acks: int = 0
    station_messages: int = 0
    rejected: collections.Counter[str] = field(default_factory=collections.Counter)
    storage_failures: int = 0
    dropped_while_waiting: int = 0

    def summary(self) -> str:
        rejected = ", ".join(f"{k} {v}" for k, v in sorted(self.rejected.items())) or "none"
        return (
            f"stored {self.stored}, repeats {self.repeats}, acks {self.acks}, "
            f"station messages {self.station_messages}, rejected: {rejected}, "
            f"storage failures {self.storage_failures}, "
            f"dropped while waiting {self.dropped_while_waiting}"
        )


@dataclass
class _Held:
    """What waits for the store: accepted events and station messages, in arrival order."""

    events: list[Event] = field(default_factory=list)
    stations: list[tuple[str, str, Kind, dict[str, object], float]] = field(default_factory=list)
    failures: int = 0
    retry_at: float = 0.0

    def __bool__(self) -> bool:
        return bool(self.events or self.stations)


class Gateway:
    """Consumes from the broker into a ``GatewayStore`` and publishes the acks."""

    def __init__(
        self,
        store: GatewayStore,
        settings: LinkSettings,
        *,
        reconnect_s: tuple[float, float] = (0.5, 10.0),
        on_stored: Callable[[dict[StationKey, int]], None] | None = None,
        intake: Intake | None = None,
        clock: Callable[[], float] = time.time,
        queue_max: int = QUEUE_MAX,
    ) -> None:
        self.store = store
        self.settings = settings
        self.reconnect_s = reconnect_s
        self.on_stored = on_stored
        self.intake = intake or Intake()
        self.clock = clock
        self.events: queue.Queue[LinkEvent | None] = queue.Queue(queue_max)
        self.stop_event = threading.Event()
        self.stats = GatewayStats()
        self.connected = threading.Event()
        self.waiting_for_store = threading.Event()
        self._held = _Held()
        self.acks = AckBook()
        self._stop_flag = False
        self._link: Connection | None = None
        self._conn = 0
        self._failures = 0
        self._next_attempt = 0.0

    def request_stop(self, *, from_signal: bool = False) -> None:
        """Stop the loop. From a signal handler only a flag is set: the handler runs on the
        main thread between two bytecodes, perhaps while that thread holds the queue's lock,
        and taking it again there would never return; the loop sees the flag within 0.2 s."""
        self._stop_flag = True
        if not from_signal:
            self.stop_event.set()
            with contextlib.suppress(queue.Full):  # a full queue wakes the loop anyway
                self.events.put_nowait(None)

    def run(self) -> None:
        try:
            while not (self._stop_flag or self.stop_event.is_set()):
                if self._link is None and time.monotonic() >= self._next_attempt:
                    self._conn += 1
                    self._link = Connection(self.settings, self._post, self._conn)
                    self._link.start()
                self._gather()
                if self._held and time.monotonic() >= self._held.retry_at:
                    self._flush()
            if self._held:
                self._flush()  # what arrived before the stop, once more (acks go out too)
        finally:
            if self._link is not None:
                self._link.close()
                if not self._link.join(5.0):
                    self._link.abort()
                self._link = None

    def _post(self, ev: LinkEvent) -> None:
        """The link thread hands over what it received. A full queue holds the link thread
        (so paho stops reading and the broker keeps the rest: memory stays bounded) until the
        loop takes some, or until a stop, when what it holds is dropped unacknowledged."""
        while True:
            try:
                self.events.put(ev, timeout=0.5)
                return
            except queue.Full:
                if self._stop_flag or self.stop_event.is_set():
                    return

    def _gather(self) -> None:
        """Take what arrives within a few milliseconds: one durable write for many."""
        wait = 0.2 if not self._held else max(0.0, min(0.2, self._held.retry_at - time.monotonic()))
        try:
            ev = self.events.get(timeout=wait) if wait > 0 else self.events.get_nowait()
        except queue.Empty:
            return
        until = time.monotonic() + BATCH_WAIT_S
        taken = 0
        while True:
            if ev is not None:
                taken += self._handle(ev)
            left = until - time.monotonic()
            if taken >= BATCH_MAX or left <= 0:
                return
            try:
                ev = self.events.get(timeout=left) if taken else self.events.get_nowait()
            except queue.Empty:
                return

    def _handle(self, ev: LinkEvent) -> int:
        if isinstance(ev, Message):
            self._accept(ev.topic, ev.payload)
            return 1
        if isinstance(ev, Connected):
            self._failures = 0
            self.connected.set()
            log.info("gateway connected")
            self._send_acks()
        elif isinstance(ev, ConnectFailed | Disconnected):
            if self._link is not None and ev.conn == self._link.conn:
                self._link.join(5.0)
                self._link = None
                self.connected.clear()
                self.acks.link_lost()
                self._failures += 1
                lo, hi = self.reconnect_s
                delay = min(hi, lo * 2.0 ** (self._failures - 1))
                self._next_attempt = time.monotonic() + delay
                log.warning("gateway link ended: %s; next attempt in %.1f s", ev.reason, delay)
        elif isinstance(ev, Published) and ev.tag[0] == "ack":
            _, key, through = ev.tag
            retry = ev.reason == NOT_CONNECTED
            if not ev.ok and not retry:
                log.error("the broker refused the ack %s through %d: %s", key, through, ev.reason)
            self.acks.answered(key, through, ok=ev.ok, retry=retry)
            self._send_acks()
        return 0

    def _accept(self, topic: str, payload: bytes) -> None:
        try:
            kind = split_topic(topic)[2]
            if kind == "events":
                event = self.intake.event(topic, payload)
                if self._held.failures and len(self._held.events) >= MAX_HELD:
                    self.stats.dropped_while_waiting += 1
                    return
                self._held.events.append(event)
            else:
                township, station, kind, body = self.intake.station_message(topic, payload)
                self._held.stations.append(
                    (
                        township,
                        station,
                        "status" if kind == "status" else "telemetry",
                        body,
                        self.clock(),
                    )
                )
        except Rejected as exc:
            self.stats.rejected[exc.reason] += 1
            log.error("rejected a message on %s (%s): %s", topic, exc.reason, exc)

    def _flush(self) -> None:
        held = self._held
        try:
            while held.events:  # after a wait, what was held goes in transactions of STORE_MAX
                result = self.store.store(held.events[:STORE_MAX], self.clock())
                del held.events[:STORE_MAX]
                self._stored(result)
            while held.stations:
                township, station, kind, body, at = held.stations[0]
                self.store.record_station(township, station, kind, body, at)
                held.stations.pop(0)
                self.stats.station_messages += 1
        except StorageError as exc:
            held.failures += 1
            self.stats.storage_failures += 1
            lo, hi = RETRY_S
            delay = min(hi, lo * 2.0 ** (held.failures - 1))
            held.retry_at = time.monotonic() + delay
            self.waiting_for_store.set()
            log.error(
                "the store cannot commit (%s); holding %d events, nothing acknowledged; "
                "trying again in %.1f s",
                exc,
                len(held.events),
                delay,
            )
            return
        if held.failures:
            log.info("the store commits again after %d failed attempts", held.failures)
        held.failures = 0
        held.retry_at = 0.0
        self.waiting_for_store.clear()

    def _stored(self, result: StoreResult) -> None:
        self.stats.stored += result.stored
        self.stats.repeats += result.repeats
        if result.conflicts:
            self.stats.rejected["conflict"] += len(result.conflicts)
        self.acks.stored(result.advanced)
        self._send_acks()
        if self.on_stored is not None:
            self.on_stored(result.advanced)

    def _send_acks(self) -> None:
        """Publish, retained, each station's newest committed prefix (see ``acks``)."""
        link = self._link
        if link is None or not self.connected.is_set():
            return
        due = self.acks.due()
        for (township, station), through in due:
            self.stats.acks += 1
            link.publish(
                ("ack", (township, station), through),
                f"sampling/{township}/{station}/acks",
                json.dumps({"through": through, "time": _rfc3339(self.clock())}).encode(),
                1,
                True,
                wake=False,
            )
        if due:
            link.wake()
