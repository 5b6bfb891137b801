"""The reference gateway consumer: store every station's events once, in order, and ack them.

A small, complete starting point for township IT (``station gateway``):

- subscribes to ``$share/{group}/sampling/+/+/events``, so several instances split the load
  (they share one database file, which is what lets them agree on what is stored);
- stores each event durably in its own SQLite file and drops repeats by ``id``;
- keeps events that arrive after a gap in ``seq`` and waits for the gap to be filled;
- publishes, retained, ``{"through": N}`` on ``sampling/{township}/{station}/acks`` for the
  contiguous prefix it has stored, which is what lets a station forget an event.

The broker's PUBACK to this consumer goes out when the message is handed over, before it is
stored; a consumer that dies in between loses nothing, because the station sends again
whatever the ``acks`` topic does not cover after its ``ack_timeout_s``.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlite_utils

from edge_agent.db import migrate, open_db, write_transaction
from edge_agent.errors import StorageError
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

COMPONENT = "gateway"
BATCH_WAIT_S = 0.02
BATCH_MAX = 500
MIGRATIONS = [
    """
    CREATE TABLE events (
        id TEXT PRIMARY KEY,
        township TEXT NOT NULL,
        station TEXT NOT NULL,
        seq INTEGER NOT NULL,
        type TEXT NOT NULL,
        payload TEXT NOT NULL,
        received_at REAL NOT NULL,
        UNIQUE (township, station, seq)
    );
    CREATE TABLE progress (
        township TEXT NOT NULL,
        station TEXT NOT NULL,
        through INTEGER NOT NULL,
        PRIMARY KEY (township, station)
    );
    """,
]


def install(db: sqlite_utils.Database) -> None:
    migrate(db, COMPONENT, MIGRATIONS)


@dataclass
class GatewayStats:
    stored: int = 0
    repeats: int = 0
    rejected: int = 0
    acks: int = 0


def _parse(topic: str, payload: bytes) -> tuple[str, str, dict[str, Any]]:
    parts = topic.split("/")
    if len(parts) != 4 or parts[0] != "sampling" or parts[3] != "events":
        raise ValueError(f"not an events topic: {topic}")
    township, station = parts[1], parts[2]
    event = json.loads(payload)
    if not isinstance(event, dict):
        raise ValueError("not a JSON object")
    seq, ev_id = event.get("seq"), event.get("id")
    if not isinstance(seq, int) or isinstance(seq, bool) or seq < 1:
        raise ValueError(f"bad seq {seq!r}")
    if not isinstance(ev_id, str) or not ev_id:
        raise ValueError(f"bad id {ev_id!r}")
    if event.get("source") != f"urn:sampling:{township}:{station}":
        raise ValueError(f"source {event.get('source')!r} does not match the topic {topic}")
    return township, station, event


class GatewayStore:
    """The consumer's database: events by id, and each station's contiguous stored prefix."""

    def __init__(self, db: sqlite_utils.Database) -> None:
        self.db = db
        install(db)

    def store(self, batch: list[tuple[str, bytes]]) -> tuple[dict[tuple[str, str], int], int, int]:
        """Store a batch; returns ('through' per station touched, stored, repeats).

        Malformed messages are logged and skipped.
        """
        stored = repeats = 0
        touched: set[tuple[str, str]] = set()
        now = time.time()
        with write_transaction(self.db) as conn:
            for topic, payload in batch:
                try:
                    township, station, event = _parse(topic, payload)
                except (ValueError, UnicodeDecodeError) as exc:
                    log.error("rejected a message on %s: %s", topic, exc)
                    continue
                cur = conn.execute(
                    "INSERT OR IGNORE INTO events(id, township, station, seq, type, payload, "
                    "received_at) VALUES (?,?,?,?,?,?,?)",
                    (
                        event["id"],
                        township,
                        station,
                        event["seq"],
                        str(event.get("type")),
                        payload.decode(),
                        now,
                    ),
                )
                # A repeat touches its station too: its ack may have been lost, so say it again.
                touched.add((township, station))
                if cur.rowcount:
                    stored += 1
                else:
                    repeats += 1
                    same = conn.execute(
                        "SELECT id FROM events WHERE township=? AND station=? AND seq=?",
                        (township, station, event["seq"]),
                    ).fetchone()
                    if same is not None and same[0] != event["id"]:
                        log.error(
                            "%s/%s seq %d arrived with two ids (%s kept, %s dropped)",
                            township,
                            station,
                            event["seq"],
                            same[0],
                            event["id"],
                        )
            advanced: dict[tuple[str, str], int] = {}
            for township, station in touched:
                row = conn.execute(
                    "SELECT through FROM progress WHERE township=? AND station=?",
                    (township, station),
                ).fetchone()
                through = int(row[0]) if row else 0
                start = through
                # Walk the stored run of seqs after 'through' (a gap stops it).
                for (seq,) in conn.execute(
                    "SELECT seq FROM events WHERE township=? AND station=? AND seq > ? "
                    "ORDER BY seq",
                    (township, station, through),
                ):
                    if seq != through + 1:
                        break
                    through = seq
                if through != start or row is None:
                    conn.execute(
                        "INSERT INTO progress(township, station, through) VALUES (?,?,?) "
                        "ON CONFLICT(township, station) DO UPDATE SET through=excluded.through",
                        (township, station, through),
                    )
                advanced[(township, station)] = through
        return advanced, stored, repeats

    def through(self, township: str, station: str) -> int:
        row = self.db.conn.execute(
            "SELECT through FROM progress WHERE township=? AND station=?", (township, station)
        ).fetchone()
        return int(row[0]) if row else 0

    def waiting(self) -> dict[tuple[str, str], int]:
        """Per station, how many stored events wait beyond a gap."""
        rows = self.db.conn.execute(
            "SELECT e.township, e.station, count(*) FROM events e JOIN progress p "
            "ON p.township = e.township AND p.station = e.station WHERE e.seq > p.through "
            "GROUP BY e.township, e.station"
        ).fetchall()
        return {(str(t), str(s)): int(n) for t, s, n in rows}


class Gateway:
    """Consumes events from the broker into a ``GatewayStore`` and publishes the acks."""

    def __init__(
        self,
        store: GatewayStore,
        settings: LinkSettings,
        reconnect_s: tuple[float, float] = (0.5, 10.0),
        on_stored: Callable[[dict[tuple[str, str], int]], None] | None = None,
    ) -> None:
        self.store = store
        self.settings = settings
        self.reconnect_s = reconnect_s
        self.on_stored = on_stored
        self.events: queue.Queue[LinkEvent | None] = queue.Queue()
        self.stop_event = threading.Event()
        self.stats = GatewayStats()
        self.connected = threading.Event()
        self._link: Connection | None = None
        self._conn = 0
        self._failures = 0
        self._next_attempt = 0.0

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
                    ev = self.events.get(timeout=0.2)
                except queue.Empty:
                    continue
                batch: list[tuple[str, bytes]] = []
                # Gather what arrives within a few milliseconds: one durable write for many.
                until = time.monotonic() + BATCH_WAIT_S
                while True:
                    if ev is not None:
                        self._handle(ev, batch)
                    left = until - time.monotonic()
                    if len(batch) >= BATCH_MAX or left <= 0:
                        break
                    try:
                        ev = self.events.get(timeout=left) if batch else self.events.get_nowait()
                    except queue.Empty:
                        break
                if batch:
                    self._consume(batch)
        finally:
            if self._link is not None:
                self._link.close()
                if not self._link.join(5.0):
                    self._link.abort()
                self._link = None

    def _handle(self, ev: LinkEvent, batch: list[tuple[str, bytes]]) -> None:
        if isinstance(ev, Message):
            batch.append((ev.topic, ev.payload))
        elif isinstance(ev, Connected):
            self._failures = 0
            self.connected.set()
            log.info("gateway connected")
        elif isinstance(ev, ConnectFailed | Disconnected):
            if self._link is not None and ev.conn == self._link.conn:
                self._link.join(5.0)
                self._link = None
                self.connected.clear()
                self._failures += 1
                lo, hi = self.reconnect_s
                delay = min(hi, lo * 2.0 ** (self._failures - 1))
                self._next_attempt = time.monotonic() + delay
                log.warning("gateway link ended: %s; next attempt in %.1f s", ev.reason, delay)
        elif isinstance(ev, Published) and not ev.ok:
            log.error("the broker refused an ack %s: %s", ev.tag, ev.reason)

    def _consume(self, batch: list[tuple[str, bytes]]) -> None:
        try:
            advanced, stored, repeats = self.store.store(batch)
        except StorageError as exc:
            # Not acknowledged, so the stations send these again after their ack timeout.
            log.error("could not store %d events: %s", len(batch), exc)
            return
        self.stats.stored += stored
        self.stats.repeats += repeats
        for (township, station), through in advanced.items():
            if self._link is not None:
                self.stats.acks += 1
                self._link.publish(
                    ("ack", through),
                    f"sampling/{township}/{station}/acks",
                    json.dumps({"through": through}).encode(),
                    1,
                    True,
                )
        if self.on_stored is not None:
            self.on_stored(advanced)


def open_store(path: Path) -> GatewayStore:
    return GatewayStore(open_db(path))
