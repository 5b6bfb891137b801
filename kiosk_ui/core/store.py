"""The kiosk's SQL: check-ins, tubes and their members, boxes, the waiting queue.

Every statement the station runs on its own tables is here (the tables themselves and their
migrations are in ``kiosk_ui.core.schema``). The functions read and write rows inside the
transaction or read the caller holds (``kiosk_ui.core.ledger``); they decide nothing.
"""

from __future__ import annotations

import functools
import sqlite3
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

from edge_agent import outbox
from edge_agent.db import Database, write_transaction
from edge_agent.recall_list import Recall
from kiosk_ui.core.rules import TubeMode


def local_day(at: float) -> str:
    """The station's calendar day of a time (local time zone), for today's counters."""
    return _local_day(int(at) // 60 * 60)  # a day starts on a whole minute in every zone


@functools.lru_cache(maxsize=64)
def _local_day(minute: int) -> str:
    return time.strftime("%Y-%m-%d", time.localtime(minute))


# A TubeMode is bound as str(mode): sqlite3 binds an exact str directly, but looks for an
# adapter for a str subclass such as an enum member first (some 3 µs per parameter).


@dataclass(frozen=True, slots=True)
class Tube:
    tube: str
    mode: TubeMode
    capacity: int
    state: str
    members: tuple[str, ...]
    opened_at: float
    box: str | None

    @property
    def count(self) -> int:
        return len(self.members)

    @property
    def full(self) -> bool:
        return self.count >= self.capacity


@dataclass(frozen=True, slots=True)
class Waiting:
    resident: str
    mode: TubeMode
    lane: str
    checkin: int
    since: float
    place: int  # 1-based place in the queue of its mode


def members(conn: sqlite3.Connection, tube: str) -> tuple[str, ...]:
    rows = conn.execute(
        "SELECT resident FROM tube_members WHERE tube = ? AND position IS NOT NULL "
        "ORDER BY position",
        (tube,),
    ).fetchall()
    return tuple(str(r[0]) if r[0] is not None else "" for r in rows)


def get_tube(conn: sqlite3.Connection, tube: str) -> Tube | None:
    row = conn.execute(
        "SELECT tube, mode, capacity, state, opened_at, box FROM tubes WHERE tube = ?", (tube,)
    ).fetchone()
    if row is None:
        return None
    return Tube(
        str(row[0]),
        TubeMode(row[1]),
        int(row[2]),
        str(row[3]),
        members(conn, str(row[0])),
        float(row[4]),
        row[5],
    )


def open_tube(conn: sqlite3.Connection, mode: TubeMode) -> Tube | None:
    row = conn.execute("SELECT tube FROM tubes WHERE state = 'open' AND mode = ?", (str(mode),))
    found = row.fetchone()
    return None if found is None else get_tube(conn, str(found[0]))


def tubes_in_state(conn: sqlite3.Connection, state: str) -> list[Tube]:
    rows = conn.execute(
        "SELECT tube FROM tubes WHERE state = ? ORDER BY closed_at, opened_at", (state,)
    ).fetchall()
    return [t for r in rows if (t := get_tube(conn, str(r[0]))) is not None]


def insert_tube(
    conn: sqlite3.Connection, tube: str, *, mode: TubeMode, capacity: int, sampler: str, at: float
) -> None:
    conn.execute(
        "INSERT INTO tubes(tube, mode, capacity, state, opened_at, opened_by) "
        "VALUES (?, ?, ?, 'open', ?, ?)",
        (tube, str(mode), capacity, at, sampler),
    )


def box_used(conn: sqlite3.Connection, box: str) -> bool:
    return conn.execute("SELECT 1 FROM boxes WHERE box = ?", (box,)).fetchone() is not None


class Room(NamedTuple):
    """The open tube of a mode with room: its barcode, capacity and members so far."""

    tube: str
    capacity: int
    members: int


def room(conn: sqlite3.Connection, mode: TubeMode) -> Room | None:
    """The open tube of ``mode`` when it has room and nobody waits for it, else None."""
    row = conn.execute(
        "SELECT t.tube, t.capacity, (SELECT count(*) FROM tube_members m "
        "WHERE m.tube = t.tube AND m.position IS NOT NULL), "
        "EXISTS (SELECT 1 FROM waiting w WHERE w.mode = t.mode) "
        "FROM tubes t WHERE t.state = 'open' AND t.mode = ?",
        (str(mode),),
    ).fetchone()
    if row is None or int(row[2]) >= int(row[1]) or row[3]:
        return None
    return Room(str(row[0]), int(row[1]), int(row[2]))


def add_member(
    conn: sqlite3.Connection,
    tube: str,
    resident: str,
    checkin: int,
    at: float,
    *,
    position: int | None = None,
) -> int:
    """Append a resident at the next position (known or counted); returns it (1-based)."""
    pos = position
    if pos is None:
        pos = 1 + int(
            conn.execute(
                "SELECT count(*) FROM tube_members WHERE tube = ? AND position IS NOT NULL",
                (tube,),
            ).fetchone()[0]
        )
    conn.execute(_INSERT_MEMBER, (tube, resident, pos, checkin, at))
    return pos


# ``joined`` counts every member the tube ever had, removed ones too (its key's last part).
_INSERT_MEMBER = (
    "INSERT INTO tube_members(tube, joined, resident, position, checkin, added_at) "
    "VALUES (?1, (SELECT coalesce(max(joined), 0) + 1 FROM tube_members WHERE tube = ?1), "
    "?2, ?3, ?4, ?5)"
)


def remove_member(
    conn: sqlite3.Connection, tube: str, resident: str, reason: str, at: float
) -> int | None:
    """Take a resident out of an open tube and close up the positions; returns the old one."""
    row = conn.execute(
        "SELECT joined, position FROM tube_members "
        "WHERE tube = ? AND resident = ? AND position IS NOT NULL",
        (tube, resident),
    ).fetchone()
    if row is None:
        return None
    joined, pos = int(row[0]), int(row[1])
    conn.execute(
        "UPDATE tube_members SET position = NULL, removed_at = ?, remove_reason = ? "
        "WHERE tube = ? AND joined = ?",
        (at, reason, tube, joined),
    )
    # Ascending order keeps the positions unique at every single step (a trigger checks).
    later = conn.execute(
        "SELECT joined FROM tube_members WHERE tube = ? AND position > ? ORDER BY position",
        (tube, pos),
    ).fetchall()
    for (j,) in later:
        conn.execute(
            "UPDATE tube_members SET position = position - 1 WHERE tube = ? AND joined = ?",
            (tube, j),
        )
    return pos


_INSERT_CHECKIN = (
    "INSERT INTO checkins(at, day, via, resident, name, color, cat, readings, temperature_c, "
    "decision, lane, reason, staff, event_seq) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


def note_day(conn: sqlite3.Connection, day: str, checkin: int) -> None:
    """Record ``checkin`` as the first of ``day`` unless the day has one already.

    Call in the transaction that inserts the check-in, at least for the first check-in of
    each day (``reports.DAY_CHECKINS`` relies on it).
    """
    conn.execute(
        "INSERT INTO checkin_days(day, first_checkin) VALUES (?, ?) ON CONFLICT DO NOTHING",
        (day, checkin),
    )


def insert_checkin(
    conn: sqlite3.Connection,
    *,
    day: str,
    at: float,
    via: str,
    resident: str | None,
    name: str | None,
    color: str | None,
    cat: Sequence[str],
    readings: Sequence[float],
    temperature_c: float | None,
    decision: str,
    lane: str,
    reason: str | None,
    staff: str | None,
    event_seq: int,
) -> int:
    """Insert one check-in row; returns its id."""
    cur = conn.execute(
        _INSERT_CHECKIN,
        (
            at,
            day,
            via,
            resident,
            name,
            color,
            _json_list(cat),
            _json_list(readings),
            temperature_c,
            decision,
            lane,
            reason,
            staff,
            event_seq,
        ),
    )
    return int(cur.lastrowid or 0)


def _json_list(values: Sequence[str] | Sequence[float]) -> str:
    return outbox.to_json(list(values)) if values else "[]"


class CheckinFacts(NamedTuple):
    """What a check-in reads before it decides, gathered by one query (``checkin_facts``).

    ``settings`` is the ``settings_override`` table as a JSON array of ``[key, value]``
    (value: the stored JSON text), in table order; equal text means equal overrides.
    ``last_sampled_at`` is when the resident last joined a tube that was not voided, and
    ``in_open_tube`` whether one of those tubes is still open. ``waiting_mode`` is the queue
    the resident waits in, if any. ``room`` is as ``room(conn, mode)`` for the mode asked;
    ``last_seq`` is ``outbox.LAST_SEQ``; ``recall`` the resident's entry on the township's
    recall list (``edge_agent.recall_list``), if any: one primary-key lookup.
    """

    settings: str
    last_sampled_at: float | None
    in_open_tube: bool
    waiting_mode: TubeMode | None
    room: Room | None
    last_seq: int
    recall: Recall | None = None

    def sampled_since(self, since: float) -> bool:
        """Whether the resident joined a tube since ``since`` or is in an open tube."""
        return self.in_open_tube or (
            self.last_sampled_at is not None and self.last_sampled_at >= since
        )


SETTINGS_ROWS = (
    "SELECT json_group_array(json_array(key, value)) AS overrides FROM settings_override"
)

# Everything a check-in reads, in one statement (each statement is a round trip through
# the sqlite3 module): the resident's history is a one-row aggregate, the rest are scalar
# lookups by key; the open tube may be absent (LEFT JOIN: its columns are then NULL).
_CHECKIN_FACTS = (
    "SELECT (" + SETTINGS_ROWS + "), h.last_at, h.in_open, "
    "(SELECT mode FROM waiting WHERE resident = ?1), "
    "t.tube, t.capacity, (SELECT count(*) FROM tube_members m "
    "WHERE m.tube = t.tube AND m.position IS NOT NULL), "
    "EXISTS (SELECT 1 FROM waiting q WHERE q.mode = ?2), "
    "(" + outbox.LAST_SEQ + "), "
    "(SELECT r.action || char(31) || r.reason || char(31) || r.pool FROM recall_list r "
    "WHERE r.sub = ?1) "
    "FROM (SELECT max(m.added_at) AS last_at, max(t.state = 'open') AS in_open "
    "FROM tube_members m JOIN tubes t ON t.tube = m.tube "
    "WHERE m.resident = ?1 AND m.position IS NOT NULL AND t.state != 'voided') AS h "
    "LEFT JOIN tubes t ON t.state = 'open' AND t.mode = ?2"
)


def checkin_facts(
    conn: sqlite3.Connection, resident: str | None, mode: TubeMode | None
) -> CheckinFacts:
    """Settings overrides, the resident's sampling history and queue place, the room."""
    row = conn.execute(_CHECKIN_FACTS, (resident, None if mode is None else str(mode))).fetchone()
    room_ = None
    if row[4] is not None and int(row[6]) < int(row[5]) and not row[7]:
        room_ = Room(str(row[4]), int(row[5]), int(row[6]))
    return CheckinFacts(
        settings=str(row[0]),
        last_sampled_at=None if row[1] is None else float(row[1]),
        in_open_tube=bool(row[2]),
        waiting_mode=None if row[3] is None else TubeMode(row[3]),
        room=room_,
        last_seq=int(row[8]),
        recall=None if row[9] is None else _recall(str(row[9])),
    )


def _recall(text: str) -> Recall:
    action, reason, pool = text.split("\x1f", 2)
    return Recall(pool, reason, action)


def waiting_list(conn: sqlite3.Connection, mode: TubeMode) -> list[Waiting]:
    rows = conn.execute(
        "SELECT resident, mode, lane, checkin, since FROM waiting WHERE mode = ? ORDER BY id",
        (str(mode),),
    ).fetchall()
    return [
        Waiting(str(r[0]), TubeMode(r[1]), str(r[2]), int(r[3]), float(r[4]), i)
        for i, r in enumerate(rows, start=1)
    ]


def anyone_waiting(conn: sqlite3.Connection, mode: TubeMode) -> bool:
    return (
        conn.execute("SELECT 1 FROM waiting WHERE mode = ? LIMIT 1", (str(mode),)).fetchone()
        is not None
    )


def waiting_entry(conn: sqlite3.Connection, resident: str) -> Waiting | None:
    row = conn.execute("SELECT mode FROM waiting WHERE resident = ?", (resident,)).fetchone()
    if row is None:
        return None
    return next(w for w in waiting_list(conn, TubeMode(row[0])) if w.resident == resident)


def enqueue(
    conn: sqlite3.Connection, mode: TubeMode, *, resident: str, checkin: int, lane: str, at: float
) -> int:
    conn.execute(
        "INSERT INTO waiting(mode, resident, checkin, lane, since) VALUES (?, ?, ?, ?, ?)",
        (str(mode), resident, checkin, lane, at),
    )
    n = conn.execute("SELECT count(*) FROM waiting WHERE mode = ?", (str(mode),)).fetchone()
    return int(n[0])


def dequeue(conn: sqlite3.Connection, resident: str) -> None:
    conn.execute("DELETE FROM waiting WHERE resident = ?", (resident,))


@dataclass(frozen=True, slots=True)
class PurgeResult:
    events: int
    checkins: int
    tube_members: int
    waiting: int


def purge(db: Database, retention_s: float, now: float) -> PurgeResult:
    """Delete delivered events and blank personal data older than the retention period.

    Undelivered events are never touched. Check-in and tube rows stay (counts, decisions,
    barcodes stay used); only the resident's ``sub`` and masked name go. Tubes still open
    keep their members.
    """
    cutoff = now - retention_s
    with write_transaction(db) as c:
        events = outbox.delete_delivered(c, cutoff)
        checkins = c.execute(
            "UPDATE checkins SET resident = NULL, name = NULL, purged_at = ? "
            "WHERE at < ? AND purged_at IS NULL",
            (now, cutoff),
        ).rowcount
        members_ = c.execute(
            "UPDATE tube_members SET resident = NULL WHERE resident IS NOT NULL AND tube IN "
            "(SELECT tube FROM tubes WHERE state != 'open' AND closed_at < ?)",
            (cutoff,),
        ).rowcount
        waiting = c.execute("DELETE FROM waiting WHERE since < ?", (cutoff,)).rowcount
    return PurgeResult(events, checkins, members_, waiting)


# -- tube and box writes ------------------------------------------------------------------------


def seal_tube(conn: sqlite3.Connection, tube: str, *, sampler: str, at: float) -> None:
    conn.execute(
        "UPDATE tubes SET state = 'sealed', closed_at = ?, closed_day = ?, "
        "closed_by = ? WHERE tube = ?",
        (at, local_day(at), sampler, tube),
    )


def void_tube(conn: sqlite3.Connection, tube: str, *, sampler: str, reason: str, at: float) -> None:
    conn.execute(
        "UPDATE tubes SET state = 'voided', closed_at = ?, closed_day = ?, "
        "closed_by = ?, void_reason = ? WHERE tube = ?",
        (at, local_day(at), sampler, reason, tube),
    )


def dispatch_box(
    conn: sqlite3.Connection, box: str, tubes: Sequence[str], *, sampler: str, at: float
) -> None:
    """Record the box and put ``tubes`` (sealed) in it."""
    conn.execute(
        "INSERT INTO boxes(box, dispatched_at, day, sampler) VALUES (?, ?, ?, ?)",
        (box, at, local_day(at), sampler),
    )
    conn.executemany(
        "UPDATE tubes SET state = 'dispatched', box = ?, dispatched_at = ? WHERE tube = ?",
        [(box, at, t) for t in tubes],
    )


def checkin_event_seq(conn: sqlite3.Connection, checkin: int) -> int:
    """The seq of the ``sampling.checkin.recorded`` event of a check-in."""
    row = conn.execute("SELECT event_seq FROM checkins WHERE id = ?", (checkin,)).fetchone()
    return int(row[0])


def last_tube_of(conn: sqlite3.Connection, resident: str) -> Tube | None:
    """The tube ``resident`` last joined and is still a member of, if any."""
    row = conn.execute(
        "SELECT t.tube FROM tube_members m JOIN tubes t ON t.tube = m.tube "
        "WHERE m.resident = ? AND m.position IS NOT NULL ORDER BY m.added_at DESC LIMIT 1",
        (resident,),
    ).fetchone()
    return None if row is None else get_tube(conn, str(row[0]))


def note_queue(conn: sqlite3.Connection) -> None:
    """Tell the edge agent how many residents wait (it reports it as telemetry)."""
    n = int(conn.execute("SELECT count(*) FROM waiting").fetchone()[0])
    outbox.set_state(conn, outbox.KIOSK_QUEUE_KEY, n)


def settings(conn: sqlite3.Connection) -> str:
    """The ``settings_override`` rows as ``SETTINGS_ROWS`` gives them (see CheckinFacts)."""
    return str(conn.execute(SETTINGS_ROWS).fetchone()[0])
