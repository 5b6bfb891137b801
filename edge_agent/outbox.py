"""The outbox: every event the station has committed, in ``seq`` order, until delivered.

The kiosk appends an event inside the same transaction as the fact it describes
(``append``); the edge agent, a separate process, reads what is pending, publishes it and
marks it delivered. The row, never paho's message id, is the identity of an event.

``seq`` is one more than the highest number ever given: the newest row's, or, once purges
have deleted rows, the floor a purge records in ``outbox_counter`` before it deletes, so a
number never comes round again. Appending writes only the event row, one page at the end of
the table (see ``docs/rules.md``, "What a check-in costs").

Undelivered rows are found without an index of their own: ``outbox_counter`` also holds
``delivered_through``, a seq up to which every event is known delivered. The agent raises it
as it marks events delivered and lowers it when the gateway asks for events again, so every
read of what is pending is a short range of the table from there. It is only ever a lower
bound: a row marked delivered some other way just makes the range a little longer.
"""

from __future__ import annotations

import functools
import json
import os
import random
import re
import sqlite3
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

from edge_agent import recall_list
from edge_agent.db import Database, migrate, write_transaction
from edge_agent.events import EventType

COMPONENT = "outbox"

# agent_state key under which the kiosk keeps the length of its waiting queue; the agent
# reports it as telemetry `kiosk_queue_length`.
KIOSK_QUEUE_KEY = "kiosk.queue_length"

MIGRATIONS: list[str] = [
    """
    CREATE TABLE outbox (
        seq INTEGER PRIMARY KEY,
        id TEXT NOT NULL UNIQUE,
        type TEXT NOT NULL,
        time TEXT NOT NULL,
        payload TEXT NOT NULL,
        created_at REAL NOT NULL,
        published_at REAL,
        delivered_at REAL
    );
    CREATE INDEX outbox_undelivered ON outbox(seq) WHERE delivered_at IS NULL;
    CREATE TABLE outbox_counter (
        one INTEGER PRIMARY KEY CHECK (one = 1),
        last_seq INTEGER NOT NULL
    );
    INSERT INTO outbox_counter(one, last_seq) VALUES (1, 0);
    CREATE TABLE agent_state (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE settings_override (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL,
        updated_at REAL NOT NULL,
        origin TEXT NOT NULL
    );
    """,
    # 2: the id index goes (ids are UUIDv7 made here, unique by construction, and nothing
    # looks an event up by id); ``outbox_counter`` stops counting every event and becomes
    # the floor purges raise (it already holds at least every seq issued).
    """
    CREATE TABLE outbox_v2 (
        seq INTEGER PRIMARY KEY,
        id TEXT NOT NULL,
        type TEXT NOT NULL,
        time TEXT NOT NULL,
        payload TEXT NOT NULL,
        created_at REAL NOT NULL,
        published_at REAL,
        delivered_at REAL
    );
    INSERT INTO outbox_v2 SELECT seq, id, type, time, payload, created_at, published_at,
        delivered_at FROM outbox;
    DROP TABLE outbox;
    ALTER TABLE outbox_v2 RENAME TO outbox;
    CREATE INDEX outbox_undelivered ON outbox(seq) WHERE delivered_at IS NULL;
    """,
    # 3: undelivered rows are read from the delivered_through mark, not through an index
    # every appended event had to update.
    """
    ALTER TABLE outbox_counter ADD COLUMN delivered_through INTEGER NOT NULL DEFAULT 0;
    UPDATE outbox_counter SET delivered_through = coalesce(
        (SELECT min(seq) FROM outbox WHERE delivered_at IS NULL) - 1,
        max(last_seq, coalesce((SELECT max(seq) FROM outbox), 0)));
    DROP INDEX outbox_undelivered;
    """,
]

# The highest seq ever given: the newest row's, or the floor the last purge recorded.
LAST_SEQ = (
    "SELECT max(coalesce((SELECT max(seq) FROM outbox), 0), "
    "(SELECT last_seq FROM outbox_counter WHERE one = 1))"
)

# The delivered_through mark, and the undelivered rows: a range of the table from it.
_MARK = "(SELECT delivered_through FROM outbox_counter WHERE one = 1)"
_UNDELIVERED_WHERE = f"seq > {_MARK} AND delivered_at IS NULL"
UNDELIVERED = "FROM outbox WHERE " + _UNDELIVERED_WHERE

# The highest seq below which every event is delivered: just below the oldest undelivered
# one, or the newest seq when none waits.
_DELIVERED_THROUGH = f"SELECT coalesce((SELECT min(seq) {UNDELIVERED}) - 1, ({LAST_SEQ}))"


@dataclass(frozen=True, slots=True)
class OutboxRow:
    seq: int
    id: str
    type: str
    payload: bytes


def install(db: Database) -> None:
    """Create or upgrade the outbox tables (and the recall list the agent and kiosk share)."""
    migrate(db, COMPONENT, MIGRATIONS)
    recall_list.install(db)


def settings_overrides(conn: sqlite3.Connection) -> dict[str, Any]:
    """Values the gateway changed by command (e.g. ``sampling.pool_size``), JSON-decoded.

    They take precedence over the configuration file until cleared; the kiosk reads them
    at every decision so a change applies to the next resident.
    """
    rows = conn.execute("SELECT key, value FROM settings_override").fetchall()
    return {str(k): json.loads(v) for k, v in rows}


def rfc3339(at: float) -> str:
    """``at`` as an RFC 3339 UTC time with milliseconds, e.g. ``2026-11-23T07:00:00.123Z``."""
    ms = int(at * 1000)
    return f"{_utc_second(ms // 1000)}.{ms % 1000:03d}Z"


GATEWAY_TIME_KEY = "clock.gateway"  # agent_state: the gateway's time on its newest ack
_RFC3339 = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?(Z|[+-]\d\d:\d\d)")


def parse_rfc3339(text: object) -> float | None:
    """An RFC 3339 time with its offset as Unix seconds; None when it is not one."""
    if not isinstance(text, str) or _RFC3339.fullmatch(text) is None:
        return None
    try:
        return datetime.fromisoformat(text).timestamp()
    except (ValueError, OverflowError):
        return None


@functools.lru_cache(maxsize=8)  # a busy second holds many events
def _utc_second(second: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))


class _EventIds:
    """Time-ordered UUIDs (version 7, RFC 9562: Unix milliseconds, then 74 random bits).

    New ids sort after older ones, as ``seq`` does. The random bits come from a generator
    seeded from the operating system, seeded again in a forked child (so parent and child
    never share a sequence): one system call per process, not one per event.
    """

    def __init__(self) -> None:
        self._random = random.Random(os.urandom(32))
        os.register_at_fork(after_in_child=lambda: self._random.seed(os.urandom(32)))

    def new(self, at: float) -> str:
        rand = self._random.getrandbits(74)
        bits = (
            (int(at * 1000) & 0xFFFF_FFFF_FFFF) << 80
            | 0x7 << 76
            | (rand >> 62) << 64
            | 0b10 << 62
            | rand & 0x3FFF_FFFF_FFFF_FFFF
        )
        h = f"{bits:032x}"
        return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


_new_id = _EventIds().new


def to_json(value: Any) -> str:
    """Compact JSON in UTF-8, keys in the order they were built (orjson: a check-in encodes
    two events, and this is several times faster than the standard library's encoder).
    Numbers JSON cannot hold (NaN, infinities) are written as null."""
    return orjson.dumps(value).decode()


@functools.lru_cache(maxsize=64)
def _quoted(text: str) -> str:
    return to_json(text)


def append(
    conn: sqlite3.Connection,
    *,
    source: str,
    type: str,
    data: dict[str, Any],
    at: float | None = None,
    seq: int | None = None,
) -> dict[str, Any]:
    """Add one event to the outbox. Call inside ``write_transaction``; returns the event.

    ``seq`` may be given by a caller that read ``LAST_SEQ`` in the same transaction (it
    holds the write lock, so nobody else numbers events meanwhile) and counts on from it;
    otherwise it is read here.
    """
    if not conn.in_transaction:
        raise RuntimeError("outbox.append must run inside the fact's write transaction")
    if seq is None:
        seq = int(conn.execute(LAST_SEQ).fetchone()[0]) + 1
    event, row = make_event(source=source, type=type, data=data, at=at, seq=seq)
    insert_rows(conn, [row])
    return event


def make_event(
    *, source: str, type: str, data: dict[str, Any], seq: int, at: float | None = None
) -> tuple[dict[str, Any], tuple[Any, ...]]:
    """An event numbered ``seq`` and its outbox row, not yet stored (``insert_rows``).

    For a caller that writes several events of one transaction with one statement; it must
    hold the transaction's write lock from numbering to inserting.
    """
    type = str(type)  # an EventType is stored and sent as its plain text
    at = time.time() if at is None else at
    created = time.time()
    event_id = _new_id(created)
    when = rfc3339(at)
    event: dict[str, Any] = {
        "specversion": "1.0",
        "id": event_id,
        "source": source,
        "type": type,
        "time": when,
        "datacontenttype": "application/json",
        "seq": seq,
        "data": data,
    }
    # The envelope's own values need no escaping (a UUID, a time, a number) or are encoded
    # once per process (source, type); only ``data`` goes through the encoder each time.
    payload = (
        f'{{"specversion":"1.0","id":"{event_id}","source":{_quoted(source)},'
        f'"type":{_quoted(type)},"time":"{when}","datacontenttype":"application/json",'
        f'"seq":{int(seq)},"data":{to_json(data)}}}'
    )
    return event, (seq, event_id, type, when, payload, created)


def insert_rows(conn: sqlite3.Connection, rows: list[tuple[Any, ...]]) -> None:
    """Store rows of ``make_event``. Call inside ``write_transaction``."""
    if not conn.in_transaction:
        raise RuntimeError("outbox rows must be stored inside the fact's write transaction")
    conn.executemany(
        "INSERT INTO outbox(seq, id, type, time, payload, created_at) VALUES (?,?,?,?,?,?)", rows
    )


def pending(db: Database, after_seq: int, limit: int) -> list[OutboxRow]:
    """Undelivered events with ``seq`` above ``after_seq``, oldest first."""
    # One range from the later of the two starting points: rows handed out already but
    # not yet acknowledged (end-to-end acks) are not scanned again.
    rows = db.conn.execute(
        f"SELECT seq, id, type, payload FROM outbox WHERE seq > max(?, {_MARK}) "
        "AND delivered_at IS NULL ORDER BY seq LIMIT ?",
        (after_seq, limit),
    ).fetchall()
    return [OutboxRow(int(s), str(i), str(t), str(p).encode()) for s, i, t, p in rows]


def mark_published(db: Database, seqs: list[int]) -> None:
    """The broker acknowledged these (PUBACK with a success code)."""
    if not seqs:
        return
    now = time.time()
    with write_transaction(db) as c:
        c.executemany(
            "UPDATE outbox SET published_at = ? WHERE seq = ? AND published_at IS NULL",
            [(now, s) for s in seqs],
        )


def mark_delivered_through(db: Database, seq: int) -> int:
    """Every event up to ``seq`` is delivered; returns how many rows changed."""
    now = time.time()
    with write_transaction(db) as c:
        cur = c.execute(
            f"UPDATE outbox SET delivered_at = ? WHERE {_UNDELIVERED_WHERE} AND seq <= ?",
            (now, seq),
        )
        _raise_mark(c)
        return cur.rowcount


def mark_delivered(db: Database, seqs: list[int]) -> None:
    """These events are delivered (PUBACK counts, end-to-end acks are off)."""
    if not seqs:
        return
    now = time.time()
    with write_transaction(db) as c:
        c.executemany(
            "UPDATE outbox SET published_at = coalesce(published_at, ?), delivered_at = ? "
            "WHERE seq = ? AND delivered_at IS NULL",
            [(now, now, s) for s in seqs],
        )
        _raise_mark(c)


def _raise_mark(conn: sqlite3.Connection) -> None:
    """Move delivered_through up to just below the oldest undelivered event."""
    conn.execute(
        f"UPDATE outbox_counter SET delivered_through = ({_DELIVERED_THROUGH}) WHERE one = 1"
    )


@dataclass(frozen=True, slots=True)
class OutboxStats:
    last_seq: int
    depth: int
    oldest_undelivered_age_s: float | None


def stats(db: Database, now: float | None = None) -> OutboxStats:
    now = time.time() if now is None else now
    last = last_seq(db)
    depth, oldest = db.conn.execute(f"SELECT count(*), min(created_at) {UNDELIVERED}").fetchone()
    age = None if oldest is None else max(0.0, now - float(oldest))
    return OutboxStats(last, int(depth), age)


def purge_delivered(db: Database, older_than_s: float, now: float | None = None) -> int:
    """Delete delivered events older than the retention period; returns how many."""
    cutoff = (time.time() if now is None else now) - older_than_s
    with write_transaction(db) as c:
        return delete_delivered(c, cutoff)


def delete_delivered(conn: sqlite3.Connection, cutoff: float) -> int:
    """Delete events delivered before ``cutoff``, raising the seq floor first.

    Call inside ``write_transaction``; returns how many rows went.
    """
    conn.execute(f"UPDATE outbox_counter SET last_seq = ({LAST_SEQ}) WHERE one = 1")
    cur = conn.execute(
        "DELETE FROM outbox WHERE delivered_at IS NOT NULL AND delivered_at < ?", (cutoff,)
    )
    return cur.rowcount


def set_state(conn: sqlite3.Connection, key: str, value: Any) -> None:
    """Record one ``agent_state`` value (JSON). Call inside ``write_transaction``."""
    conn.execute(
        "INSERT INTO agent_state(key, value) VALUES (?, ?) "
        "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        (key, json.dumps(value, ensure_ascii=False, sort_keys=True)),
    )


def alert_key(kind: str, device: str | None = None) -> str:
    """The ``agent_state`` key of a standing alert: ``alert.<kind>[.<device>]``."""
    return f"alert.{kind}" if device is None else f"alert.{kind}.{device}"


def active_alert(conn: sqlite3.Connection, kind: str, device: str | None = None) -> Any:
    """The standing alert's record (``since``, ``detail``, ``seq``), or None."""
    row = conn.execute(
        "SELECT value FROM agent_state WHERE key = ?", (alert_key(kind, device),)
    ).fetchone()
    return None if row is None else json.loads(row[0])


def standing_alert(
    conn: sqlite3.Connection,
    *,
    source: str,
    kind: str,
    stands: bool,
    detail: str,
    device: str | None = None,
    at: float | None = None,
) -> dict[str, Any] | None:
    """Raise (``stands``) or clear a standing alert, a fault that lasts; returns its event.

    Call inside ``write_transaction``. Raising one that already stands, or clearing one that
    does not, changes nothing and returns None: a sensor that keeps failing is one alert, not
    one per attempt. While it stands, telemetry lists it under ``alerts``. Its end is a
    ``sampling.alert.cleared`` naming the ``seq`` of the alert it ends.
    """
    standing = active_alert(conn, kind, device)
    if (standing is not None) == stands:
        return None
    at = time.time() if at is None else at
    data: dict[str, Any] = (
        {"kind": kind, "resident": None, "detail": detail}
        if stands
        else {"kind": kind, "detail": detail, "raised_seq": standing.get("seq")}
    )
    if device is not None:
        data["device"] = device
    event = append(
        conn,
        source=source,
        type=EventType.ALERT_RAISED if stands else EventType.ALERT_CLEARED,
        data=data,
        at=at,
    )
    record = {"since": rfc3339(at), "detail": detail, "seq": event["seq"]} if stands else None
    set_state(conn, alert_key(kind, device), record)
    return event


def standing_alerts(db: Database) -> dict[str, Any]:
    """The alerts that stand now, by ``agent_state`` key without ``alert.`` (``kind`` or
    ``kind.device``), each with its record (``since``, ``detail``, ``seq``)."""
    rows = db.conn.execute("SELECT key, value FROM agent_state WHERE substr(key, 1, 6) = 'alert.'")
    found = {str(k).removeprefix("alert."): _decoded(v) for k, v in rows.fetchall()}
    return {k: v for k, v in found.items() if v is not None}


def _decoded(value: Any) -> Any:
    try:
        return json.loads(value)
    except (TypeError, ValueError):
        return value


def read_state(db: Database) -> dict[str, Any]:
    """Every ``agent_state`` value, JSON-decoded (a value that is not JSON stays text)."""
    rows = db.conn.execute("SELECT key, value FROM agent_state").fetchall()
    return {str(key): _decoded(value) for key, value in rows}


def latest(conn: sqlite3.Connection, type: str, limit: int) -> list[dict[str, Any]]:
    """The newest ``limit`` events of ``type`` still on the station, newest first."""
    rows = conn.execute(
        "SELECT payload FROM outbox WHERE type = ? ORDER BY seq DESC LIMIT ?", (str(type), limit)
    ).fetchall()
    return [json.loads(payload) for (payload,) in rows]


def delivered_through(db: Database) -> int:
    """The highest ``seq`` below which every event is delivered (0 when none is)."""
    return int(db.conn.execute(_DELIVERED_THROUGH).fetchone()[0])


def first_stored_seq(db: Database) -> int | None:
    """The oldest event still on the station (older ones were purged after retention)."""
    row = db.conn.execute("SELECT min(seq) FROM outbox").fetchone()
    return None if row[0] is None else int(row[0])


def reopen_from(conn: sqlite3.Connection, seq: int) -> int:
    """Mark events from ``seq`` on as not delivered, so they are sent again; returns how many.

    Call inside ``write_transaction`` (the gateway asked for them again).
    """
    cur = conn.execute(
        "UPDATE outbox SET published_at = NULL, delivered_at = NULL WHERE seq >= ?", (seq,)
    )
    conn.execute(
        "UPDATE outbox_counter SET delivered_through = min(delivered_through, ?) WHERE one = 1",
        (seq - 1,),
    )
    return cur.rowcount


def undelivered_count(conn: sqlite3.Connection) -> int:
    """How many events wait for delivery."""
    return int(conn.execute(f"SELECT count(*) {UNDELIVERED}").fetchone()[0])


def last_seq(db: Database) -> int:
    """The ``seq`` of the newest event (0 when there is none); two indexed reads."""
    return int(db.conn.execute(LAST_SEQ).fetchone()[0])
