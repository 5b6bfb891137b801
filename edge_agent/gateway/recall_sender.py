"""`station gateway recall`: every station of a township gets the recall list, late or not.

Each station holds the list at some version and says which: in its telemetry
(``recall_version``) and in its reply to every ``recall_update``
(``{"ok": true, "result": {"recall_version": N}}``, or ``ok: false`` with the version it holds
when a chunk would leave a gap). The sender keeps what each station said and sends, in order,
the changes it lacks (``recall.commands``: chunks within the command size limit):

- on a station's retained status ``online`` (a station that was offline gets the list as
  soon as it is back), on telemetry showing an older version, and on a reply that names one;
- a station whose version it does not know yet gets only the latest change: the station
  applies it or answers with its version, and the rest follows from there;
- what was sent and not confirmed within ``--resend-s`` is sent again; a station that applies
  a chunk twice changes nothing (a chunk's changes are numbered), so duplicates are harmless,
  and several senders may run.

Every ``SYNC_S`` it also reads the stations' new events into the lab's tables (``lab.sync``),
so an import or a receipt finds them read. Stations are the ones in the gateway's ``stations``
table (every station heard from) plus any seen on the broker since the sender started.
``recall_delivery`` keeps the version each station last confirmed, for township IT.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import queue
import signal
import socket
import threading
import time
from collections.abc import Callable
from types import FrameType
from typing import Any

from edge_agent.errors import StorageError
from edge_agent.gateway import lab, recall
from edge_agent.gateway.intake import Rejected, split_topic
from edge_agent.gateway.store import GatewayStore, StationKey, Tx, open_store
from edge_agent.link import (
    Connected,
    ConnectFailed,
    Connection,
    Disconnected,
    LinkEvent,
    LinkSettings,
    Message,
)
from firmware.errors import ConfigError

log = logging.getLogger(__name__)

SUBSCRIPTIONS = (
    ("sampling/+/+/status", 1),
    ("sampling/+/+/telemetry", 0),
    ("sampling/+/+/replies", 1),
)
MAX_CHANGES_PER_ROUND = 20_000  # per station; the rest follows its confirmation
SYNC_S = 10.0  # how often the stations' new events are read into the lab's tables


def _sync(tx: Tx) -> None:
    lab.lock(tx)
    lab.sync(tx)


class RecallSender:
    def __init__(
        self,
        store: GatewayStore,
        settings: LinkSettings,
        *,
        resend_s: float = 60.0,
        poll_s: float = 1.0,
        reconnect_s: tuple[float, float] = (0.5, 10.0),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.settings = dataclasses.replace(settings, subscriptions=SUBSCRIPTIONS)
        self.resend_s = resend_s
        self.poll_s = poll_s
        self.reconnect_s = reconnect_s
        self.clock = clock
        self.events: queue.Queue[LinkEvent | None] = queue.Queue()
        self.stop_event = threading.Event()
        self.connected = threading.Event()
        self.known: dict[StationKey, int] = {}
        self.online: dict[StationKey, bool] = {}
        self.sent: dict[StationKey, tuple[int, float]] = {}  # through sent, when
        self.commands_sent = 0
        self._link: Connection | None = None
        self._conn = 0
        self._failures = 0
        self._next_attempt = 0.0
        self._next_round = 0.0
        self._next_sync = 0.0

    def request_stop(self) -> None:
        self.stop_event.set()
        self.events.put(None)

    def run(self) -> None:
        try:
            while not self.stop_event.is_set():
                if self._link is None and time.monotonic() >= self._next_attempt:
                    self._conn += 1
                    self._link = Connection(self.settings, self.events.put, self._conn)
                    self._link.start()
                try:
                    ev = self.events.get(timeout=self.poll_s)
                except queue.Empty:
                    ev = None
                if ev is not None:
                    self._handle(ev)
                if self.connected.is_set() and self.clock() >= self._next_round:
                    self._next_round = self.clock() + self.poll_s
                    self._round()
        finally:
            if self._link is not None:
                self._link.close()
                if not self._link.join(5.0):
                    self._link.abort()
                self._link = None

    def _handle(self, ev: LinkEvent) -> None:
        if isinstance(ev, Message):
            try:
                self.on_message(ev.topic, ev.payload)
            except (Rejected, ValueError, TypeError) as exc:
                log.warning("ignored a message on %s: %s", ev.topic, exc)
        elif isinstance(ev, Connected):
            self._failures = 0
            self.sent.clear()  # what was in flight may be lost with the old session
            self.connected.set()
        elif (
            isinstance(ev, ConnectFailed | Disconnected)
            and self._link is not None
            and ev.conn == self._link.conn
        ):
            self._link.join(5.0)
            self._link = None
            self.connected.clear()
            self._failures += 1
            lo, hi = self.reconnect_s
            self._next_attempt = time.monotonic() + min(hi, lo * 2.0 ** (self._failures - 1))
            log.warning("recall sender's link ended: %s", ev.reason)

    def on_message(self, topic: str, payload: bytes) -> None:
        """What a station said: its status, its telemetry, or its reply to a command."""
        township, station, kind = split_topic(topic)
        key = (township, station)
        body: Any = json.loads(payload)
        if not isinstance(body, dict):
            raise ValueError("not a JSON object")
        if kind == "status":
            self.online[key] = body.get("state") == "online"
            if self.online[key]:
                self.sent.pop(key, None)  # back: send now what it lacks
        elif kind == "telemetry":
            version = body.get("recall_version")
            if isinstance(version, int) and not isinstance(version, bool):
                self._learn(key, version)
        elif kind == "replies":
            result = body.get("result")
            version = result.get("recall_version") if isinstance(result, dict) else None
            if isinstance(version, int) and not isinstance(version, bool):
                self._learn(key, version)
                if not body.get("ok"):
                    self.sent.pop(key, None)  # a gap: send from the version it named

    def _learn(self, key: StationKey, version: int) -> None:
        before = self.known.get(key)
        self.known[key] = version
        sent = self.sent.get(key)
        if sent is not None and version >= sent[0]:
            self.sent.pop(key, None)
        if version != before:
            try:
                self.store.write(
                    lambda tx: tx.execute(
                        "INSERT INTO recall_delivery(township, station, version, at) "
                        "VALUES (%s, %s, %s, %s) ON CONFLICT (township, station) DO UPDATE "
                        "SET version = excluded.version, at = excluded.at",
                        (key[0], key[1], version, time.time()),
                    )
                )
            except StorageError as exc:
                log.error("could not record %s/%s's recall version: %s", *key, exc)

    def stations(self) -> set[StationKey]:
        rows = self.store.query("SELECT township, station, online FROM stations")
        found = {(str(t), str(s)) for t, s, _o in rows}
        for t, s, online in rows:
            self.online.setdefault((str(t), str(s)), online != 0)
        return found | set(self.online)

    def _round(self) -> None:
        """Send every station what it lacks (see the module's docstring)."""
        try:
            if self.clock() >= self._next_sync:  # the lab's tables kept up with the events
                self._next_sync = self.clock() + SYNC_S
                self.store.write(_sync)
            heads = recall.heads(self.store)
            stations = self.stations() if heads else set()
        except StorageError as exc:
            log.error("cannot read the recall list: %s", exc)
            return
        now = self.clock()
        for key in sorted(stations):
            head = heads.get(key[0], 0)
            have = self.known.get(key)
            if head == 0 or (have is not None and have >= head) or not self.online.get(key):
                continue
            sent = self.sent.get(key)
            if sent is not None and now - sent[1] < self.resend_s:
                continue
            after = head - 1 if have is None else have
            changes = recall.changes_since(self.store, key[0], after, MAX_CHANGES_PER_ROUND)
            self._send(key, changes)
            self.sent[key] = (changes[-1].v if changes else head, now)

    def _send(self, key: StationKey, changes: list[recall.Change]) -> None:
        if self._link is None or not changes:
            return
        topic = f"sampling/{key[0]}/{key[1]}/commands"
        for command in recall.commands(key[0], changes):
            payload = json.dumps(command, ensure_ascii=False).encode()
            self._link.publish(("recall", key), topic, payload, 1, False, wake=False)
            self.commands_sent += 1
        self._link.wake()
        log.info("sent %s/%s recall changes %d to %d", *key, changes[0].v, changes[-1].v)


# --- `station gateway recall` ------------------------------------------------------------------


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--db", dest="lab_db", help="the store: a SQLite file or postgresql://")
    parser.add_argument(
        "--resend-s", type=float, default=60.0, help="send again what is not confirmed by then"
    )


def run(args: argparse.Namespace) -> int:
    from edge_agent.gateway.cli import settings_from_args  # noqa: PLC0415 - cli imports us lazily

    target = args.lab_db or args.db
    if not target:
        raise ConfigError("--db", ["a SQLite file or a postgresql:// URL is required"])
    if args.client_id.startswith("gateway-"):
        args.client_id = f"recall-{socket.gethostname()}"
    settings = settings_from_args(args)
    with open_store(target) as store:
        sender = RecallSender(store, settings, resend_s=args.resend_s)

        def _stop(_signum: int, _frame: FrameType | None) -> None:
            sender.request_stop()

        signal.signal(signal.SIGTERM, _stop)
        signal.signal(signal.SIGINT, _stop)
        sender.run()
    return 0
