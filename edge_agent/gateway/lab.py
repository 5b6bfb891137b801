"""The lab's side of the gateway: what the stations sealed and dispatched, as the lab needs it.

The stations' events stay the facts (``events``); the lab works on tables derived from them
and on its own facts (receipts, results, the recall list), in the same store:

- ``lab_tubes``: one row per tube a station sealed or voided: ``township``, ``station``,
  ``mode`` (``pool``/``single``, NULL for a tube voided before it was sealed), ``members``
  (JSON list of subs), ``sealed_at``, ``voided_at``, ``box`` and ``dispatched_at`` (from
  ``sampling.box.dispatched``), ``received_at`` and ``received_box`` (the lab's receipt);
- ``lab_boxes``: one row per dispatched box: its station and its tubes (JSON list);
- ``lab_cursor``: per station, the ``seq`` through which its events were read into those.

``sync(tx)`` reads what is new: per station, the events between its cursor and the gateway's
acknowledged prefix (``progress.through``). Below that prefix nothing changes any more, so
the cursor is exact; an event stored beyond a gap is read once the station fills the gap.

Every lab write transaction starts with ``lock(tx)``: one row that every lab writer updates
first, so on PostgreSQL two lab writers (the importer and the web page) follow each other as
they do on SQLite, and the recall list's version numbers never collide.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from edge_agent.gateway.store import Tx

log = logging.getLogger(__name__)

SEALED = "sampling.tube.sealed"
VOIDED = "sampling.tube.voided"
DISPATCHED = "sampling.box.dispatched"
LAB_TYPES = (SEALED, VOIDED, DISPATCHED)
CHUNK = 500  # values per IN (...) list

# One migration step, the same SQL on both backends (appended to each backend's list).
MIGRATION = """
CREATE TABLE lab_cursor (
    township TEXT NOT NULL,
    station TEXT NOT NULL,
    through BIGINT NOT NULL,
    PRIMARY KEY (township, station)
);
CREATE TABLE lab_tubes (
    tube TEXT PRIMARY KEY,
    township TEXT NOT NULL,
    station TEXT NOT NULL,
    mode TEXT,
    members TEXT NOT NULL,
    sealed_at DOUBLE PRECISION,
    voided_at DOUBLE PRECISION,
    box TEXT,
    dispatched_at DOUBLE PRECISION,
    received_at DOUBLE PRECISION,
    received_box TEXT
);
CREATE INDEX lab_tubes_sealed_at ON lab_tubes(sealed_at);
CREATE TABLE lab_boxes (
    box TEXT PRIMARY KEY,
    township TEXT NOT NULL,
    station TEXT NOT NULL,
    tubes TEXT NOT NULL,
    dispatched_at DOUBLE PRECISION NOT NULL
);
CREATE TABLE lab_receipts (
    box TEXT NOT NULL,
    received_at DOUBLE PRECISION NOT NULL,
    tubes TEXT NOT NULL,
    problems TEXT NOT NULL,
    PRIMARY KEY (box, received_at)
);
CREATE TABLE lab_results (
    tube TEXT NOT NULL,
    result TEXT NOT NULL,
    reported_at DOUBLE PRECISION NOT NULL,
    reason TEXT,
    imported_at DOUBLE PRECISION NOT NULL,
    source TEXT NOT NULL,
    PRIMARY KEY (tube, reported_at, result)
);
CREATE TABLE recall_changes (
    township TEXT NOT NULL,
    v BIGINT NOT NULL,
    op TEXT NOT NULL,
    sub TEXT NOT NULL,
    pool TEXT NOT NULL,
    reason TEXT NOT NULL,
    action TEXT,
    at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (township, v)
);
CREATE TABLE recall_list (
    township TEXT NOT NULL,
    sub TEXT NOT NULL,
    pool TEXT NOT NULL,
    reason TEXT NOT NULL,
    action TEXT NOT NULL,
    sealed_at DOUBLE PRECISION NOT NULL,
    v BIGINT NOT NULL,
    PRIMARY KEY (township, sub)
);
CREATE TABLE recall_delivery (
    township TEXT NOT NULL,
    station TEXT NOT NULL,
    version BIGINT NOT NULL,
    at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (township, station)
);
CREATE TABLE lab_lock (id INTEGER PRIMARY KEY, n BIGINT NOT NULL);
INSERT INTO lab_lock(id, n) VALUES (1, 0);
"""


@dataclass(frozen=True, slots=True)
class Tube:
    tube: str
    township: str
    station: str
    mode: str | None
    members: tuple[str, ...]
    sealed_at: float | None
    voided_at: float | None
    box: str | None
    dispatched_at: float | None
    received_at: float | None


TUBE_COLUMNS = (
    "tube, township, station, mode, members, sealed_at, voided_at, box, dispatched_at, received_at"
)


def tube_from_row(row: Sequence[Any]) -> Tube:
    tube, township, station, mode, members, sealed, voided, box, dispatched, received = row
    return Tube(
        str(tube),
        str(township),
        str(station),
        None if mode is None else str(mode),
        tuple(orjson.loads(members)),
        _float(sealed),
        _float(voided),
        None if box is None else str(box),
        _float(dispatched),
        _float(received),
    )


def _float(value: Any) -> float | None:
    return None if value is None else float(value)


def lock(tx: Tx) -> None:
    """Take the lab's write lock (see the module's docstring)."""
    tx.execute("UPDATE lab_lock SET n = n + 1 WHERE id = 1")


def chunks(items: Sequence[Any], size: int = CHUNK) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def tubes(tx: Tx, ids: Iterable[str]) -> dict[str, Tube]:
    """The tubes named, as the stations reported them (a tube never seen is left out)."""
    found: dict[str, Tube] = {}
    for part in chunks(sorted(set(ids))):
        marks = ", ".join(["%s"] * len(part))
        for row in tx.execute(
            f"SELECT {TUBE_COLUMNS} FROM lab_tubes WHERE tube IN ({marks})",
            part,
        ):
            found[str(row[0])] = tube_from_row(row)
    return found


def sync(tx: Tx) -> int:
    """Read every station's new sealed, voided and dispatched events; how many were read."""
    pending = tx.execute(
        "SELECT p.township, p.station, COALESCE(c.through, 0), p.through FROM progress p "
        "LEFT JOIN lab_cursor c ON c.township = p.township AND c.station = p.station "
        "WHERE p.through > COALESCE(c.through, 0)"
    )
    read = 0
    for township, station, start, end in pending:
        rows = tx.execute(
            "SELECT type, happened_at, payload FROM events WHERE township = %s "
            "AND station = %s AND seq > %s AND seq <= %s AND type IN (%s, %s, %s) ORDER BY seq",
            (township, station, start, end, *LAB_TYPES),
        )
        _apply(tx, (str(township), str(station)), rows)
        read += len(rows)
        tx.execute(
            "INSERT INTO lab_cursor(township, station, through) VALUES (%s, %s, %s) "
            "ON CONFLICT (township, station) DO UPDATE SET through = excluded.through",
            (township, station, end),
        )
    return read


def _apply(tx: Tx, key: tuple[str, str], rows: list[tuple[Any, ...]]) -> None:
    """One station's new events, a statement per kind (sealed, voided, then dispatched: the
    upserts of the first two commute, a dispatch marks tubes already sealed)."""
    township, station = key
    sealed: list[tuple[Any, ...]] = []
    voided: list[tuple[Any, ...]] = []
    boxes: list[tuple[Any, ...]] = []
    marks: list[tuple[Any, ...]] = []
    for type_, at, payload in rows:
        data = orjson.loads(payload)["data"]
        if type_ == SEALED:
            members = json.dumps(data["members"])
            sealed.append((data["tube"], township, station, data["mode"], members, at))
        elif type_ == VOIDED:
            voided.append((data["tube"], township, station, json.dumps(data["members"]), at))
        else:
            boxes.append((data["box"], township, station, json.dumps(data["tubes"]), at))
            marks += [(data["box"], at, t) for t in data["tubes"]]
    if sealed:
        tx.executemany(
            "INSERT INTO lab_tubes(tube, township, station, mode, members, sealed_at) "
            "VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (tube) DO UPDATE SET "
            "mode = excluded.mode, members = excluded.members, sealed_at = excluded.sealed_at",
            sealed,
        )
    if voided:
        tx.executemany(
            "INSERT INTO lab_tubes(tube, township, station, members, voided_at) "
            "VALUES (%s, %s, %s, %s, %s) ON CONFLICT (tube) DO UPDATE SET "
            "voided_at = excluded.voided_at",
            voided,
        )
    if boxes:
        tx.executemany(
            "INSERT INTO lab_boxes(box, township, station, tubes, dispatched_at) "
            "VALUES (%s, %s, %s, %s, %s) ON CONFLICT (box) DO NOTHING",
            boxes,
        )
        tx.executemany(
            "UPDATE lab_tubes SET box = %s, dispatched_at = %s WHERE tube = %s AND box IS NULL",
            marks,
        )


def box_tubes(tx: Tx, box: str) -> tuple[str, str, list[str], float] | None:
    """A dispatched box: (township, station, its tubes, when), or None if never dispatched."""
    rows = tx.execute(
        "SELECT township, station, tubes, dispatched_at FROM lab_boxes WHERE box = %s", (box,)
    )
    if not rows:
        return None
    township, station, listed, at = rows[0]
    return str(township), str(station), list(json.loads(listed)), float(at)
