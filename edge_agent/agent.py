"""The edge agent: delivers the outbox to the township broker, in ``seq`` order, losing nothing.

One thread (the caller of ``run``) owns all the agent's state. The MQTT link
(``edge_agent.link``) runs its own network thread and reports back on ``self.events``; the
agent reads that queue, the outbox (polled cheaply through ``PRAGMA data_version``) and the
clock, and decides everything: what to publish next, when to reconnect, what is delivered.

What to publish and what is delivered is decided by the sans-I/O delivery core
(``edge_agent.delivery``, whose docstring gives the rules); this module does the I/O around
it: the link's lifecycle and backoff, reading the outbox, writing the marks (retried with a
backoff when the disk is full), commands, telemetry and the storage watch.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from edge_agent import commands, damage, health, outbox, recall_list
from edge_agent.db import Database, open_db
from edge_agent.delivery import Delivery, EventTag, Limits, Puback
from edge_agent.delivery_store import DeliveryStore
from edge_agent.errors import CommandError, StorageError
from edge_agent.link import (
    Connected,
    ConnectFailed,
    Connection,
    Disconnected,
    LinkEvent,
    LinkSettings,
    Message,
    Published,
    check_transport,
)
from edge_agent.recall_list import RecallGap
from edge_agent.session import (
    ReplyTag,
    StatusTag,
    TelemetryTag,
    Topics,
    link_settings,
    reconnect_delay,
)
from firmware.config import StationConfig

log = logging.getLogger(__name__)

POLL_S = 0.05
OPEN_RETRY_MIN_S = 1.0
OPEN_RETRY_MAX_S = 60.0
SHUTDOWN_WAIT_S = 5.0
STORAGE_CHECK_S = 30.0
FILE_CHECK_S = 5.0  # how soon the agent notices its database was moved aside


@dataclass(frozen=True, slots=True)
class _Wake:
    """Put on the event queue to make the loop look at its stop flag at once."""


class Agent:
    """The agent's loop: the link's lifecycle, its events, the outbox and the timers. What to
    publish and what is delivered is decided by ``self.delivery`` (``edge_agent.delivery``)."""

    def __init__(
        self,
        config: StationConfig,
        db: Database,
        *,
        settings: LinkSettings | None = None,
        clock: Callable[[], float] = time.monotonic,
        jitter: Callable[[], float] = random.random,
        storage_check_s: float = STORAGE_CHECK_S,
    ) -> None:
        self.config = config
        self.broker = config.broker
        self.db = db
        self.settings = settings or link_settings(config)
        check_transport(self.settings)
        self.clock = clock
        self.jitter = jitter
        self.topics = Topics.of(config.topic_prefix)
        self.e2e = self.broker.end_to_end_ack
        b = self.broker
        self.delivery = Delivery(
            Limits.of(b.end_to_end_ack, b.inflight_window, b.ack_window, b.ack_timeout_s)
        )
        self.store = DeliveryStore(db, self.delivery, clock)
        self.events: queue.Queue[LinkEvent | _Wake] = queue.Queue()
        self.stop_event = threading.Event()
        self._stopping = False
        self._init_link_state()
        self.next_telemetry = 0.0
        self.storage_check_s = storage_check_s
        self.next_storage_check = 0.0
        self.db_file = damage.file_identity(config.storage.path)
        self.next_file_check = 0.0
        self.status_acked = threading.Event()
        self._has_alert = False
        self._connect_alert = outbox.read_state(db).get("alert.connect") is not None

    def _init_link_state(self) -> None:
        self.link: Connection | None = None
        self.conn_no = 0
        self.connected = False
        self.failures = 0
        self.next_attempt = 0.0
        self.last_error: str | None = None

    @property
    def acked_through(self) -> int:
        """Every event up to here is known delivered (end-to-end: acknowledged by the gateway)."""
        return self.delivery.acked_through

    @property
    def delivered_count(self) -> int:
        """Events this agent has marked delivered."""
        return self.delivery.delivered_count

    # --- public -----------------------------------------------------------------------

    def request_stop(self) -> None:
        """Ask ``run`` to finish what is in flight and return (safe from any thread)."""
        self.stop_event.set()
        self.events.put(_Wake())

    def run(self) -> None:
        """Deliver until ``request_stop``; then finish in-flight publishes and go offline."""
        self.delivery.start(outbox.delivered_through(self.db))
        self._record_link("connecting", None)
        log.info(
            "agent started: %s, end-to-end acks %s, window %d",
            self.broker.url,
            "on" if self.e2e else "off",
            self.delivery.window,
        )
        try:
            while not self.stop_event.is_set():
                now = self.clock()
                if self.link is None and now >= self.next_attempt:
                    self._open_link()
                self._handle_events(POLL_S)
                if self.connected:
                    self._check_ack_timeout()
                    self._fill_window()
                self.store.flush()
                self._maybe_telemetry()
                self._maybe_check_storage()
                self._maybe_check_file()
        finally:
            self._shutdown()

    # --- link lifecycle ---------------------------------------------------------------

    def _open_link(self) -> None:
        self.conn_no += 1
        link = Connection(self.settings, self.events.put, self.conn_no)
        self.link = link
        link.start()

    def _backoff(self) -> float:
        return reconnect_delay(
            self.failures, self.broker.reconnect_min_s, self.broker.reconnect_max_s, self.jitter
        )

    def _link_ended(self, conn: int, reason: str, level: int) -> None:
        if self.link is None or conn != self.link.conn:
            return
        link, self.link = self.link, None
        if not link.join(5.0):
            log.error("the network thread of link %d did not end within 5 s", conn)
        self.delivery.link_lost()
        self.failures += 1
        delay = self._backoff()
        self.next_attempt = self.clock() + delay
        self.last_error = reason
        log.log(level, "%s; next attempt in %.1f s", reason, delay)
        self.store.flush(force=True)
        self._record_link("offline" if self.connected else "connecting", reason)
        # Last: whoever sees the agent disconnected finds the marks and the link state written.
        self.connected = False

    def _on_connected(self, ev: Connected) -> None:
        if self.link is None or ev.conn != self.link.conn:
            return
        self.connected = True
        self.store.flush(force=True)
        now = self.clock()
        if not self.delivery.connected(now, outbox.delivered_through(self.db), ev.receive_maximum):
            self.failures = 0
        self.next_telemetry = now
        log.info("connected to %s (session present: %s)", self.broker.url, ev.session_present)
        status = {
            "state": "online",
            "at": outbox.rfc3339(time.time()),
            "pid": os.getpid(),
            "last_seq": outbox.last_seq(self.db),
        }
        self._publish(StatusTag("online"), self.topics.status, _json(status), 1, True)
        self._record_link("online", None)
        if self._connect_alert:
            self._connect_alert = False
            self._set_state({"alert.connect": None})

    def _record_link(self, state: str, error: str | None) -> None:
        health.record_state(self.db, health.link_state(state, error, self.broker.url))

    def _set_state(self, values: dict[str, Any]) -> None:
        health.record_state(self.db, values)

    def _publish(self, tag: object, topic: str, payload: bytes, qos: int, retain: bool) -> None:
        if self.link is not None:
            self.link.publish(tag, topic, payload, qos, retain)

    # --- events from the link ---------------------------------------------------------

    def _handle_events(self, timeout: float) -> None:
        try:
            ev = self.events.get(timeout=timeout)
        except queue.Empty:
            return
        while True:
            self._dispatch(ev)
            try:
                ev = self.events.get_nowait()
            except queue.Empty:
                break
        self._apply_ack()

    def _dispatch(self, ev: LinkEvent | _Wake) -> None:
        if isinstance(ev, Published):
            if self.link is not None and ev.conn == self.link.conn:
                self._on_published(ev)
        elif isinstance(ev, Message):
            if self.link is not None and ev.conn == self.link.conn:
                self._on_message(ev)
        elif isinstance(ev, Connected):
            self._on_connected(ev)
        elif isinstance(ev, ConnectFailed):
            self._link_ended(
                ev.conn,
                f"cannot connect: {ev.reason}",
                logging.ERROR if ev.permanent else logging.WARNING,
            )
            if ev.permanent:
                self._connect_alert = True
                self._alert("connect", ev.reason, None)
        elif isinstance(ev, Disconnected):
            self._link_ended(ev.conn, f"link lost: {ev.reason}", logging.WARNING)

    def _on_published(self, ev: Published) -> None:
        tag = ev.tag
        if isinstance(tag, EventTag):
            self._on_event_published(tag.seq, ev)
        elif isinstance(tag, StatusTag):
            if ev.ok:
                self.status_acked.set()
            else:
                log.error("the broker refused the status message: %s", ev.reason)
        elif not ev.ok:
            log.warning("the broker refused a %s message: %s", tag.kind, ev.reason)

    def _on_event_published(self, seq: int, ev: Published) -> None:
        answer = self.delivery.on_published(seq, ev.ok)
        if answer is Puback.REFUSED:
            # Not a delivery. Keep the event, say so loudly, and retry after a backoff.
            self._alert("delivery", ev.reason, seq)
            if self.link is not None:
                self.link.close()
        elif answer is Puback.ACCEPTED:
            if self.last_error is not None or self.failures:
                self.failures = 0
                self.last_error = None
            if self._has_alert:
                self._has_alert = False
                self._set_state({"alert.delivery": None})

    def _alert(self, kind: str, reason: str, seq: int | None) -> None:
        text = f"the broker refused event seq {seq}: {reason}" if seq is not None else reason
        log.error("ALERT (%s): %s", kind, text)
        self._has_alert = kind == "delivery"
        self._set_state(health.alert(kind, reason, seq))

    def _on_message(self, ev: Message) -> None:
        if ev.topic == self.topics.acks and self.e2e:
            self._on_ack(ev.payload, ev.retain)
        elif ev.topic == self.topics.commands:
            self._on_command(ev.payload)
        else:
            log.warning("message on an unexpected topic %s ignored", ev.topic)

    def _on_ack(self, payload: bytes, retained: bool) -> None:
        try:
            body = json.loads(payload)
            through = body["through"]
            if not isinstance(through, int) or isinstance(through, bool) or through < 0:
                raise ValueError(through)
        except (ValueError, KeyError, TypeError, UnicodeDecodeError):
            log.error("unreadable ack ignored: %r", payload[:200])
            return
        if "time" in body and not retained:  # a retained ack's time is from its publication
            health.record_gateway_time(self.db, body["time"], time.time())
        self.delivery.on_ack(through)  # applied once per batch of link events

    def _apply_ack(self) -> None:
        through = self.delivery.take_ack()
        if through is None:
            return
        last_seq = outbox.last_seq(self.db)
        if through > last_seq:
            self._alert(
                "ack",
                f"the gateway acknowledges seq {through} but this station has "
                f"only reached {last_seq}; the ack is ignored",
                None,
            )
            return
        now = self.clock()
        self.delivery.accept_ack(through, now)
        if self.delivery.ack_due(now):
            self.store.record_ack(through)

    # --- commands ---------------------------------------------------------------------

    def _on_command(self, payload: bytes) -> None:
        cmd_id = commands.command_id(payload)
        try:
            cmd = commands.parse(payload)
            result = self._apply(cmd)
        except CommandError as exc:
            log.warning("command %s rejected: %s", cmd_id, exc)
            # A recall chunk that would leave a gap says where the gateway should start.
            held = {"recall_version": exc.version} if isinstance(exc, RecallGap) else None
            reply = commands.reply(cmd_id, False, str(exc), held)
            self._publish(ReplyTag(cmd_id), self.topics.replies, reply, 1, False)
            return
        log.info("command %s (%s) applied: %s", cmd.id, cmd.command, result)
        reply = commands.reply(cmd.id, True, None, result)
        self._publish(ReplyTag(cmd.id), self.topics.replies, reply, 1, False)

    def _apply(self, cmd: commands.Command) -> dict[str, Any]:
        if cmd.command in ("set_thresholds", "set_pool_size"):
            changes = commands.apply_settings(
                self.db, self.config.source, self.config.sampling, cmd
            )
            self.delivery.maybe_more = True  # our own commit does not move PRAGMA data_version
            return {"changed": changes}
        if cmd.command == "request_telemetry":
            self.next_telemetry = self.clock()
            return {}
        if cmd.command == "resend_from":
            return self.store.reopen_from(int(cmd.args["seq"]))
        if cmd.command == "recall_update":
            township = self.config.station.township
            return recall_list.apply(
                self.db, township, cmd.args, time.time()
            )  # wall clock: check-ins compare it
        raise CommandError(f"unknown command {cmd.command!r}")

    # --- sending ----------------------------------------------------------------------

    def _check_ack_timeout(self) -> None:
        d = self.delivery
        if d.check_ack_timeout(self.clock()):
            log.warning(
                "no acknowledgement beyond seq %d for %.0f s: sending again from seq %d",
                d.acked_through,
                self.broker.ack_timeout_s,
                d.acked_through + 1,
            )

    def _fill_window(self) -> None:
        link = self.link
        if link is None or self._stopping:
            return
        sent = 0
        while True:
            for row in self.delivery.next_batch(self.clock()):
                link.publish(
                    EventTag(row.seq), self.topics.events, row.payload, 1, False, wake=False
                )
                sent += 1
            if not self.delivery.wants_rows() or not self.store.refill():
                break
        if sent:
            link.wake()

    # --- telemetry --------------------------------------------------------------------

    def telemetry(self) -> dict[str, Any]:
        return health.telemetry(self.db, self.config)

    def _maybe_telemetry(self) -> None:
        if not self.connected or self.clock() < self.next_telemetry:
            return
        self.next_telemetry = self.clock() + self.broker.telemetry_interval_s
        try:
            body = self.telemetry()
        except StorageError as exc:
            log.warning("telemetry not gathered: %s", exc)
            return
        self._publish(TelemetryTag(), self.topics.telemetry, _json(body), 0, False)

    # --- the station's disk ------------------------------------------------------------

    def _maybe_check_storage(self) -> None:
        now = self.clock()
        if self.config.storage.min_free_mb <= 0 or now < self.next_storage_check:
            return
        self.next_storage_check = now + self.storage_check_s
        if health.check_storage(self.db, self.config):
            self.delivery.maybe_more = True  # our own commit does not move PRAGMA data_version

    def _maybe_check_file(self) -> None:
        """A kiosk that found the database damaged at its start moved it aside: this agent
        holds the old file, so it stops, and systemd starts it again on the new one."""
        now = self.clock()
        if self.db_file is None or now < self.next_file_check:
            return
        self.next_file_check = now + FILE_CHECK_S
        if damage.file_identity(self.config.storage.path) != self.db_file:
            log.error(
                "%s was moved aside or replaced; stopping, to start again on the new file",
                self.config.storage.path,
            )
            self.request_stop()

    # --- stopping ---------------------------------------------------------------------

    def _shutdown(self) -> None:
        self._stopping = True
        link = self.link
        if link is not None and self.connected:
            deadline = self.clock() + SHUTDOWN_WAIT_S
            while self.delivery.inflight and self.clock() < deadline and self.connected:
                self._handle_events(0.05)
            if self.delivery.inflight:
                log.warning(
                    "stopping with %d events unacknowledged; they will be sent again",
                    len(self.delivery.inflight),
                )
            self.store.flush(force=True)
            if self.connected and self.link is link:
                self.status_acked.clear()
                offline = {
                    "state": "offline",
                    "reason": "stopped",
                    "at": outbox.rfc3339(time.time()),
                }
                link.publish(StatusTag("offline"), self.topics.status, _json(offline), 1, True)
                deadline = self.clock() + 2.0
                while not self.status_acked.is_set() and self.clock() < deadline and self.connected:
                    self._handle_events(0.05)
                link.close()
            if not link.join(5.0):
                log.error("the network thread did not end within 5 s")
                link.abort()
        elif link is not None:
            link.abort()
            if not link.join(5.0):
                log.error("the network thread (still connecting) did not end within 5 s")
        self.link = None
        self.connected = False
        self.store.flush(force=True)
        self._record_link("stopped", None)
        log.info("agent stopped")


def _json(body: dict[str, Any]) -> bytes:
    return json.dumps(body, ensure_ascii=False, sort_keys=True, separators=(",", ":")).encode()


def build(config: StationConfig, settings: LinkSettings | None = None) -> Agent:
    """The composition root of ``station agent``: the database, the outbox, the link."""
    link = settings or link_settings(config)
    check_transport(link)
    damage.check_at_start(config.storage.path, config.source)  # before anything opens it
    db = open_db(config.storage.path)
    try:
        outbox.install(db)
    except BaseException:
        db.conn.close()
        raise
    return Agent(config, db, settings=link)


def build_when_possible(
    config: StationConfig, stop: threading.Event, settings: LinkSettings | None = None
) -> Agent | None:
    """``build``, waiting (1 s doubling to 60 s) while the database cannot be opened.

    On a full disk no process can open a WAL database that nobody holds open (its index
    needs room); waiting here, rather than exiting for systemd to start the agent again
    every few seconds, costs nothing until there is room. None once ``stop`` is set.
    """
    delay = OPEN_RETRY_MIN_S
    while True:
        try:
            return build(config, settings)
        except StorageError as exc:
            log.error("%s; next try in %.0f s", exc, delay)
        if stop.wait(delay):
            return None
        delay = min(OPEN_RETRY_MAX_S, delay * 2)
