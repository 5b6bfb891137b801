"""The edge agent: delivers the outbox to the township broker, in ``seq`` order, losing nothing.

One thread (the caller of ``run``) owns all the agent's state. The MQTT link
(``edge_agent.link``) runs its own network thread and reports back on ``self.events``; the
agent reads that queue, the outbox (polled cheaply through ``PRAGMA data_version``) and the
clock, and decides everything: what to publish next, when to reconnect, what is delivered.

Delivery, in short:

- events are published at QoS 1 in ``seq`` order, at most ``broker.inflight_window`` without
  a PUBACK; the outbox row's ``seq`` is the identity of each publish;
- a PUBACK with a success reason code marks the event delivered (or, with
  ``broker.end_to_end_ack``, published: it is delivered when the gateway's retained
  ``{"through": N}`` on the ``acks`` topic covers it). A failure reason code is not a
  delivery: the agent raises an alert, drops the link and retries later from that event;
- after every reconnect, and with end-to-end acks after ``ack_timeout_s`` without progress,
  sending starts again at the first event not known to be delivered, so the backlog drains
  in order before anything newer;
- the agent's own writes (marks, state) may fail on a full disk: delivery goes on from what
  the agent knows in memory, the marks are retried with a backoff (1 s doubling to 8 s) and
  catch up once there is room. Until then a restart sends the unmarked events again.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import random
import shutil
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlite_utils

from edge_agent import commands, outbox
from edge_agent.db import open_db, write_transaction
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
    Will,
    check_transport,
)
from firmware.config import StationConfig

log = logging.getLogger(__name__)

POLL_S = 0.05
MARK_EVERY_S = 0.1
MARK_BATCH = 500
MARK_RETRY_MIN_S = 1.0  # after a failed bookkeeping write (a full disk), doubling up to
MARK_RETRY_MAX_S = 8.0
OPEN_RETRY_MIN_S = 1.0
OPEN_RETRY_MAX_S = 60.0
SHUTDOWN_WAIT_S = 5.0
THERMAL_ZONE = Path("/sys/class/thermal/thermal_zone0/temp")
STORAGE_LOW = "storage_low"
STORAGE_CHECK_S = 30.0
STORAGE_MARGIN_MB = 16.0  # storage_low clears this far (or a quarter of the floor) above it


@dataclass(frozen=True, slots=True)
class _Wake:
    """Put on the event queue to make the loop look at its stop flag at once."""


def link_settings(config: StationConfig) -> LinkSettings:
    b = config.broker
    prefix = config.topic_prefix
    subs: list[tuple[str, int]] = [(f"{prefix}/commands", 1)]
    if b.end_to_end_ack:
        subs.append((f"{prefix}/acks", 1))
    offline = json.dumps({"state": "offline", "reason": "link lost"}).encode()
    return LinkSettings(
        host=b.host,
        port=b.port,
        client_id=f"station-{config.station.township}-{config.station.id}",
        tls=b.tls,
        allow_plaintext=b.allow_plaintext,
        ca_file=b.ca_file,
        cert_file=b.cert_file,
        key_file=b.key_file,
        username=b.username,
        password_file=b.password_file,
        keepalive_s=b.keepalive_s,
        connect_timeout_s=float(min(10, b.keepalive_s)),
        max_inflight=b.inflight_window + 10,
        will=Will(f"{prefix}/status", offline, qos=1, retain=True),
        subscriptions=tuple(subs),
    )


def cpu_temperature(path: Path = THERMAL_ZONE) -> float | None:
    """The SoC temperature in °C from the kernel's thermal zone, or None where there is none."""
    try:
        return round(int(path.read_text().strip()) / 1000, 1)
    except (OSError, ValueError):
        return None


class Agent:
    def __init__(
        self,
        config: StationConfig,
        db: sqlite_utils.Database,
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
        prefix = config.topic_prefix
        self.topic_events = f"{prefix}/events"
        self.topic_status = f"{prefix}/status"
        self.topic_telemetry = f"{prefix}/telemetry"
        self.topic_commands = f"{prefix}/commands"
        self.topic_acks = f"{prefix}/acks"
        self.topic_replies = f"{prefix}/replies"
        self.e2e = self.broker.end_to_end_ack
        self.window = self.broker.inflight_window
        self.ack_window = max(self.broker.ack_window, self.window)
        self.batch = min(max(2 * self.window, 64), 500)
        self.events: queue.Queue[LinkEvent | _Wake] = queue.Queue()
        self.stop_event = threading.Event()
        self._stopping = False

        self.link: Connection | None = None
        self.conn_no = 0
        self.connected = False
        self.failures = 0
        self.next_attempt = 0.0
        self.last_error: str | None = None

        self.next_after = 0  # every seq up to here has been handed to this link
        self.buffer: deque[outbox.OutboxRow] = deque()
        self.inflight: dict[int, float] = {}
        self.maybe_more = True
        self.data_version = -1
        self.blocked = False
        self.rewind_to: int | None = None
        self.acked_through = 0
        self.ack_pending = 0
        self.progress_at = 0.0
        self.marks: list[int] = []
        self.last_mark = 0.0
        self.unrecorded_ack = 0  # the gateway acknowledged through here; not yet in the file
        self.mark_failures = 0
        self.mark_retry_at = 0.0
        self.next_telemetry = 0.0
        self.storage_check_s = storage_check_s
        self.next_storage_check = 0.0
        self.status_acked = threading.Event()
        self.delivered_count = 0
        self.link_state = "starting"
        self.link_changed_at = time.time()
        self._has_alert = False
        self._connect_alert = outbox.read_state(db).get("alert.connect") is not None

    # --- public -----------------------------------------------------------------------

    def request_stop(self) -> None:
        """Ask ``run`` to finish what is in flight and return (safe from any thread)."""
        self.stop_event.set()
        self.events.put(_Wake())

    def run(self) -> None:
        """Deliver until ``request_stop``; then finish in-flight publishes and go offline."""
        self.acked_through = outbox.delivered_through(self.db)
        self.next_after = self.acked_through if self.e2e else 0
        self._record_link("connecting", None)
        log.info(
            "agent started: %s, end-to-end acks %s, window %d",
            self.broker.url,
            "on" if self.e2e else "off",
            self.window,
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
                self._flush_marks()
                self._maybe_telemetry()
                self._maybe_check_storage()
        finally:
            self._shutdown()

    # --- link lifecycle ---------------------------------------------------------------

    def _open_link(self) -> None:
        self.conn_no += 1
        link = Connection(self.settings, self.events.put, self.conn_no)
        self.link = link
        link.start()

    def _backoff(self) -> float:
        cap = min(
            self.broker.reconnect_max_s,
            self.broker.reconnect_min_s * 2.0 ** max(0, self.failures - 1),
        )
        return cap * (0.5 + 0.5 * self.jitter())

    def _link_ended(self, conn: int, reason: str, level: int) -> None:
        if self.link is None or conn != self.link.conn:
            return
        link, self.link = self.link, None
        if not link.join(5.0):
            log.error("the network thread of link %d did not end within 5 s", conn)
        was_connected = self.connected
        self.connected = False
        self.inflight.clear()
        self.buffer.clear()
        self.failures += 1
        delay = self._backoff()
        self.next_attempt = self.clock() + delay
        self.last_error = reason
        log.log(level, "%s; next attempt in %.1f s", reason, delay)
        self._flush_marks(force=True)
        self._record_link("offline" if was_connected else "connecting", reason)

    def _on_connected(self, ev: Connected) -> None:
        if self.link is None or ev.conn != self.link.conn:
            return
        self.connected = True
        # Never more in flight than the broker accepts (MQTT 5 Receive Maximum); the few
        # status, telemetry and reply messages need room too.
        self.window = self.broker.inflight_window
        if ev.receive_maximum is not None:
            self.window = max(1, min(self.window, ev.receive_maximum - 2))
        if not self.blocked:
            self.failures = 0
        self.blocked = False
        self._flush_marks(force=True)
        self.acked_through = max(self.acked_through, outbox.delivered_through(self.db))
        # Start again at the first event not known to be delivered: the backlog, in order.
        self.next_after = self.acked_through if self.e2e else 0
        self.rewind_to = None
        self.buffer.clear()
        self.inflight.clear()
        self.maybe_more = True
        self.progress_at = self.clock()
        self.next_telemetry = self.clock()
        log.info("connected to %s (session present: %s)", self.broker.url, ev.session_present)
        status = {
            "state": "online",
            "at": outbox.rfc3339(time.time()),
            "pid": os.getpid(),
            "last_seq": outbox.last_seq(self.db),
        }
        self._publish(("status", "online"), self.topic_status, _json(status), 1, True)
        self._record_link("online", None)
        if self._connect_alert:
            self._connect_alert = False
            self._set_state({"alert.connect": None})

    def _record_link(self, state: str, error: str | None) -> None:
        self.link_state = state
        self.link_changed_at = time.time()
        self._set_state(
            {
                "link.state": state,
                "link.since": outbox.rfc3339(self.link_changed_at),
                "link.error": error,
                "link.broker": self.broker.url,
                "agent.pid": os.getpid(),
            }
        )

    def _set_state(self, values: dict[str, Any]) -> None:
        try:
            with write_transaction(self.db) as conn:
                for k, v in values.items():
                    outbox.set_state(conn, k, v)
        except StorageError as exc:
            log.warning("cannot record the agent state: %s", exc)

    def _publish(self, tag: Any, topic: str, payload: bytes, qos: int, retain: bool) -> None:
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
        kind, key = ev.tag
        if kind == "status":
            if ev.ok:
                self.status_acked.set()
            else:
                log.error("the broker refused the status message: %s", ev.reason)
            return
        if kind != "event":
            if not ev.ok:
                log.warning("the broker refused a %s message: %s", kind, ev.reason)
            return
        seq = int(key)
        self.inflight.pop(seq, None)
        if self.blocked:
            return
        if not ev.ok:
            # Not a delivery. Keep the event, say so loudly, and retry after a backoff.
            self.blocked = True
            self._alert("delivery", ev.reason, seq)
            if self.link is not None:
                self.link.close()
            return
        self.marks.append(seq)
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
        self._set_state(
            {f"alert.{kind}": {"at": outbox.rfc3339(time.time()), "seq": seq, "reason": reason}}
        )

    def _on_message(self, ev: Message) -> None:
        if ev.topic == self.topic_acks and self.e2e:
            self._on_ack(ev.payload)
        elif ev.topic == self.topic_commands:
            self._on_command(ev.payload)
        else:
            log.warning("message on an unexpected topic %s ignored", ev.topic)

    def _on_ack(self, payload: bytes) -> None:
        try:
            through = json.loads(payload)["through"]
            if not isinstance(through, int) or isinstance(through, bool) or through < 0:
                raise ValueError(through)
        except (ValueError, KeyError, TypeError, UnicodeDecodeError):
            log.error("unreadable ack ignored: %r", payload[:200])
            return
        if through > max(self.acked_through, self.ack_pending):
            self.ack_pending = through  # applied once per batch of link events

    def _apply_ack(self) -> None:
        through = self.ack_pending
        if through <= self.acked_through:
            return
        self.ack_pending = 0
        last_seq = outbox.last_seq(self.db)
        if through > last_seq:
            self._alert(
                "ack",
                f"the gateway acknowledges seq {through} but this station has "
                f"only reached {last_seq}; the ack is ignored",
                None,
            )
            return
        # The gateway has them: go on from there even while the file cannot say so yet.
        self.acked_through = through
        self.progress_at = self.clock()
        self.next_after = max(self.next_after, through)
        self.unrecorded_ack = through
        if self.clock() >= self.mark_retry_at:
            self._record_ack()

    def _on_command(self, payload: bytes) -> None:
        cmd_id = commands.command_id(payload)
        try:
            cmd = commands.parse(payload)
            result = self._apply(cmd)
        except CommandError as exc:
            log.warning("command %s rejected: %s", cmd_id, exc)
            self._publish(
                ("reply", cmd_id),
                self.topic_replies,
                commands.reply(cmd_id, False, str(exc)),
                1,
                False,
            )
            return
        log.info("command %s (%s) applied: %s", cmd.id, cmd.command, result)
        self._publish(
            ("reply", cmd.id),
            self.topic_replies,
            commands.reply(cmd.id, True, None, result),
            1,
            False,
        )

    def _apply(self, cmd: commands.Command) -> dict[str, Any]:
        if cmd.command in ("set_thresholds", "set_pool_size"):
            changes = commands.apply_settings(
                self.db, self.config.source, self.config.sampling, cmd
            )
            self.maybe_more = True  # our own commit does not move PRAGMA data_version
            return {"changed": changes}
        if cmd.command == "request_telemetry":
            self.next_telemetry = self.clock()
            return {}
        if cmd.command == "resend_from":
            seq = int(cmd.args["seq"])
            last = outbox.last_seq(self.db)
            first = outbox.first_stored_seq(self.db)
            if seq > last:
                raise CommandError(f"args.seq: {seq} is beyond the last event ({last})")
            if first is None or seq < first:
                raise CommandError(
                    f"args.seq: events before seq {first} were purged after retention; "
                    f"resend_from must be at least {first}"
                )
            self._flush_marks(force=True)
            if self.marks or self.unrecorded_ack:
                # Written later, the marks still waiting for room would undo the resend.
                raise CommandError(
                    "not stored: the station cannot record its deliveries now "
                    "(is its disk full?); send the command again later"
                )
            try:
                with write_transaction(self.db) as conn:
                    n = outbox.reopen_from(conn, seq)
            except StorageError as exc:
                raise CommandError(f"not stored: {exc}") from exc
            self.acked_through = min(self.acked_through, seq - 1)
            self.rewind_to = seq - 1
            return {"resending": n, "from": seq}
        raise CommandError(f"unknown command {cmd.command!r}")

    # --- sending ----------------------------------------------------------------------

    def _check_ack_timeout(self) -> None:
        if not self.e2e or self.rewind_to is not None:
            return
        if self.next_after <= self.acked_through:
            self.progress_at = self.clock()
            return
        if self.clock() - self.progress_at > self.broker.ack_timeout_s:
            log.warning(
                "no acknowledgement beyond seq %d for %.0f s: sending again from seq %d",
                self.acked_through,
                self.broker.ack_timeout_s,
                self.acked_through + 1,
            )
            self.rewind_to = self.acked_through
            self.progress_at = self.clock()

    def _fill_window(self) -> None:
        if self.blocked or self.link is None or self._stopping:
            return
        if self.rewind_to is not None:
            if self.inflight:
                return  # let the PUBACKs of the current pass come back first
            self.next_after = self.rewind_to
            self.rewind_to = None
            self.buffer.clear()
            self.maybe_more = True
        now = self.clock()
        sent = 0
        while len(self.inflight) < self.window:
            if self.e2e and self.next_after - self.acked_through >= self.ack_window:
                break
            if not self.buffer and not self._refill():
                break
            row = self.buffer.popleft()
            if self.e2e and self.next_after <= self.acked_through:
                self.progress_at = now
            self.link.publish(
                ("event", row.seq), self.topic_events, row.payload, 1, False, wake=False
            )
            sent += 1
            self.inflight[row.seq] = now
            self.next_after = row.seq
        if sent:
            self.link.wake()

    def _refill(self) -> bool:
        version = int(self.db.conn.execute("PRAGMA data_version").fetchone()[0])
        if not self.maybe_more and version == self.data_version:
            return False
        self.data_version = version
        rows = outbox.pending(self.db, self.next_after, self.batch)
        self.maybe_more = len(rows) == self.batch
        self.buffer.extend(rows)
        return bool(rows)

    def _flush_marks(self, force: bool = False) -> None:
        if not self.marks and not self.unrecorded_ack:
            return
        now = self.clock()
        if not force and now < self.mark_retry_at:
            return
        idle = not self.inflight
        if not (
            force or idle or len(self.marks) >= MARK_BATCH or now - self.last_mark >= MARK_EVERY_S
        ):
            return
        self.last_mark = now
        if self.unrecorded_ack and not self._record_ack():
            return
        if not self.marks:
            return
        try:
            if self.e2e:
                outbox.mark_published(self.db, self.marks)
            else:
                outbox.mark_delivered(self.db, self.marks)
        except StorageError as exc:
            self._mark_failed(f"cannot mark {len(self.marks)} events", exc)
            return
        self._mark_recorded()
        if not self.e2e:
            self.delivered_count += len(self.marks)
        self.marks = []

    def _record_ack(self) -> bool:
        try:
            n = outbox.mark_delivered_through(self.db, self.unrecorded_ack)
        except StorageError as exc:
            self._mark_failed(f"cannot mark events delivered through {self.unrecorded_ack}", exc)
            return False
        self._mark_recorded()
        self.delivered_count += n
        self.unrecorded_ack = 0
        return True

    def _mark_failed(self, what: str, exc: StorageError) -> None:
        # The events stay undelivered in the file: they may be sent again, never lost. Retry
        # with a backoff, not at every turn of the loop (a full disk stays full for a while).
        self.mark_failures += 1
        delay = min(MARK_RETRY_MAX_S, MARK_RETRY_MIN_S * 2.0 ** (self.mark_failures - 1))
        self.mark_retry_at = self.clock() + delay
        log.error("%s: %s; next try in %.0f s", what, exc, delay)

    def _mark_recorded(self) -> None:
        if self.mark_failures:
            log.info("deliveries recorded again after %d failed attempts", self.mark_failures)
        self.mark_failures = 0
        self.mark_retry_at = 0.0

    # --- telemetry --------------------------------------------------------------------

    def telemetry(self) -> dict[str, Any]:
        st = outbox.stats(self.db)
        state = outbox.read_state(self.db)
        free_mb = self._free_mb()
        queue_len = state.get(outbox.KIOSK_QUEUE_KEY)
        alerts = outbox.standing_alerts(self.db)
        return {
            "at": outbox.rfc3339(time.time()),
            "outbox_depth": st.depth,
            "oldest_undelivered_age_s": None
            if st.oldest_undelivered_age_s is None
            else round(st.oldest_undelivered_age_s, 1),
            "last_seq": st.last_seq,
            "delivered_through": outbox.delivered_through(self.db),
            "disk_free_mb": None if free_mb is None else round(free_mb, 1),
            "cpu_temperature_c": cpu_temperature(),
            "kiosk_queue_length": queue_len if isinstance(queue_len, int) else None,
            "alerts": alerts,
        }

    def _maybe_telemetry(self) -> None:
        if not self.connected or self.clock() < self.next_telemetry:
            return
        self.next_telemetry = self.clock() + self.broker.telemetry_interval_s
        try:
            body = self.telemetry()
        except StorageError as exc:
            log.warning("telemetry not gathered: %s", exc)
            return
        self._publish(("telemetry", None), self.topic_telemetry, _json(body), 0, False)

    # --- the station's disk ------------------------------------------------------------

    def _maybe_check_storage(self) -> None:
        """Raise ``storage_low`` when free space falls below ``storage.min_free_mb``; clear
        it once there is a margin above it again (so a disk at the line does not flap)."""
        now = self.clock()
        floor = self.config.storage.min_free_mb
        if floor <= 0 or now < self.next_storage_check:
            return
        self.next_storage_check = now + self.storage_check_s
        free_mb = self._free_mb()
        if free_mb is None:
            return
        low = free_mb < floor
        if not low and free_mb < floor + max(STORAGE_MARGIN_MB, floor / 4):
            return  # between the floor and the margin: whatever stands, stands
        try:
            if (outbox.active_alert(self.db.conn, STORAGE_LOW) is not None) == low:
                return  # as it should be: no write
            with write_transaction(self.db) as conn:
                event = outbox.standing_alert(
                    conn,
                    source=self.config.source,
                    kind=STORAGE_LOW,
                    stands=low,
                    detail=f"{free_mb:.1f} MB free, below storage.min_free_mb {floor} MB"
                    if low
                    else f"{free_mb:.1f} MB free",
                )
        except (StorageError, sqlite3.Error) as exc:
            # A disk too full to record that it is full: the telemetry's disk_free_mb and
            # the kiosk's storage fault say it; this is tried again at the next check.
            log.warning("storage_low not recorded: %s", exc)
            return
        if event is not None:
            log.warning("%s: %s", event["type"], event["data"]["detail"])
            self.maybe_more = True  # our own commit does not move PRAGMA data_version

    def _free_mb(self) -> float | None:
        """Free space on the file system of the station's database, in MiB."""
        try:
            return shutil.disk_usage(self.config.storage.path.parent).free / 2**20
        except OSError as exc:
            log.warning("cannot read the free space of the station's disk: %s", exc)
            return None

    # --- stopping ---------------------------------------------------------------------

    def _shutdown(self) -> None:
        self._stopping = True
        link = self.link
        if link is not None and self.connected:
            deadline = self.clock() + SHUTDOWN_WAIT_S
            while self.inflight and self.clock() < deadline and self.connected:
                self._handle_events(0.05)
            if self.inflight:
                log.warning(
                    "stopping with %d events unacknowledged; they will be sent again",
                    len(self.inflight),
                )
            self._flush_marks(force=True)
            if self.connected and self.link is link:
                self.status_acked.clear()
                offline = {
                    "state": "offline",
                    "reason": "stopped",
                    "at": outbox.rfc3339(time.time()),
                }
                link.publish(("status", "offline"), self.topic_status, _json(offline), 1, True)
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
        self._flush_marks(force=True)
        self._record_link("stopped", None)
        log.info("agent stopped")


def _json(body: dict[str, Any]) -> bytes:
    return json.dumps(body, ensure_ascii=False, sort_keys=True, separators=(",", ":")).encode()


def build(config: StationConfig, settings: LinkSettings | None = None) -> Agent:
    """The composition root of ``station agent``: the database, the outbox, the link."""
    link = settings or link_settings(config)
    check_transport(link)
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
