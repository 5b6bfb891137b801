"""A damaged station database: found at start, moved aside, never silently replaced; salvage.

An SD card that wears out or a power cut at a bad moment can leave the station's SQLite file
damaged. At start, before opening it, the kiosk and the agent call :func:`check_at_start`,
which runs ``PRAGMA integrity_check`` on it (one process at a time). A file that
fails it, or that SQLite cannot read as a database at all, is:

1. moved aside, with its ``-wal`` file, as ``station.db.damaged-20261203T071500Z`` (nothing is
   deleted: it is the only copy of what was not delivered yet);
2. read as well as it can be (:func:`read_damaged`) to learn the highest ``seq`` it gave, so
   the new database numbers its events after it and no ``seq`` is ever given twice;
3. replaced by a new database that starts with a standing ``database_damaged`` alert, which
   the agent sends as soon as it has a link and the sampler's panel shows.

A file that cannot be opened for other reasons (no permission, a full disk, an I/O error) is
not damaged and is left where it is: :class:`~edge_agent.errors.StorageError`, as before.

``station db salvage FILE`` (:func:`salvage`) then reads the file moved aside page by page
(:mod:`edge_agent.pages`, what SQLite's ``.recover`` does, which also finds rows whose pages
lost their place in the table's tree) and puts every undelivered event it can read whole back
into the outbox,
with its own ``id`` and ``seq``, so the gateway stores each once and fills its gap. A
recovered row counts only when its payload is the event it claims to be (same ``id``,
``seq``, ``type`` and ``time``): nothing half-written is ever sent.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import shutil
import sqlite3
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge_agent import outbox, pages
from edge_agent.db import Database, free_space_hint, open_db, write_transaction
from edge_agent.errors import StorageError

log = logging.getLogger(__name__)

ALERT_KIND = "database_damaged"
_DAMAGED_CODES = (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB)
_COLUMNS = ("seq", "id", "type", "time", "payload", "created_at", "published_at", "delivered_at")


class SalvageError(StorageError):
    """A damaged database could not be read at all."""


def integrity_problem(path: Path) -> str | None:
    """Why the database at ``path`` is damaged, or None when it is sound or absent.

    Raises StorageError when it cannot be checked for a reason that is not damage.
    """
    if not path.exists():
        return None
    conn: sqlite3.Connection | None = None
    try:
        conn = sqlite3.connect(f"file:{path}?mode=rw", uri=True, isolation_level=None)
        rows = conn.execute("PRAGMA integrity_check(5)").fetchall()
    except sqlite3.DatabaseError as exc:
        if getattr(exc, "sqlite_errorcode", 0) & 0xFF in _DAMAGED_CODES:
            return f"SQLite cannot read it: {exc}"
        raise StorageError(
            f"{path}: cannot check the station database: {exc}{free_space_hint(path)}"
        ) from exc
    finally:
        if conn is not None:
            conn.close()
    found = [str(r[0]) for r in rows]
    return None if found == ["ok"] else "integrity check: " + "; ".join(found)


@contextmanager
def _start_lock(path: Path) -> Iterator[None]:
    """One process at a time checks (and may move aside) the file: kiosk and agent start
    together."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        lock = open(path.with_name(path.name + ".lock"), "a")  # noqa: SIM115 (closed below)
    except OSError as exc:
        raise StorageError(f"{path}: cannot check the station database: {exc}") from exc
    with lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def file_identity(path: Path) -> tuple[int, int] | None:
    """Which file ``path`` names now (device and inode), or None when there is none: a
    process that holds the database open notices when it was moved aside."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def aside_name(path: Path, at: float) -> Path:
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(at))
    return path.with_name(f"{path.name}.damaged-{stamp}")


def move_aside(path: Path, at: float) -> Path:
    """Rename the database and its WAL (the WAL holds committed writes) out of the way."""
    target = aside_name(path, at)
    n = 1
    while target.exists():
        n += 1
        target = aside_name(path, at).with_name(f"{aside_name(path, at).name}-{n}")
    try:
        for suffix in ("-wal", ""):
            if Path(f"{path}{suffix}").exists():
                os.replace(f"{path}{suffix}", f"{target}{suffix}")
        Path(f"{path}-shm").unlink(missing_ok=True)  # an index of the WAL, rebuilt from it
    except OSError as exc:
        raise StorageError(f"{path} is damaged and cannot be moved aside: {exc}") from exc
    return target


def check_at_start(path: Path | str, source: str, now: float | None = None) -> Path | None:
    """Run at a process's start, before opening the database: a damaged file is moved aside
    and replaced by a new database holding a standing ``database_damaged`` alert (see the
    module's doc). Returns where the damaged file went, or None when it was sound."""
    path = Path(path)
    with _start_lock(path):
        problem = integrity_problem(path)
        if problem is None:
            return None
        at = time.time() if now is None else now
        aside = move_aside(path, at)
        log.error("%s is damaged (%s); moved aside to %s", path, problem, aside)
        try:
            floor = read_damaged(aside).last_seq
        except StorageError as exc:
            log.error("nothing could be read from %s: %s", aside, exc)
            floor = 0
        db = open_db(path)
        try:
            outbox.install(db)
            with write_transaction(db) as conn:
                # Number after every event the damaged file gave, and scan for undelivered
                # rows from the start: salvaged ones go in below the new ones.
                conn.execute(
                    "UPDATE outbox_counter SET last_seq = max(last_seq, ?), "
                    "delivered_through = 0 WHERE one = 1",
                    (floor,),
                )
                outbox.standing_alert(
                    conn,
                    source=source,
                    kind=ALERT_KIND,
                    stands=True,
                    detail=(
                        f"the station database was damaged ({problem}); it was moved aside to "
                        f"{aside.name} and a new one started after seq {floor}; recover its "
                        f"undelivered events with: station db salvage {aside}"
                    ),
                    at=at,
                )
        finally:
            db.conn.close()
        return aside


# -- reading a damaged file ----------------------------------------------------------------


@dataclass
class Recovered:
    """What could be read of a damaged file's outbox."""

    events: list[tuple[Any, ...]] = field(default_factory=list)  # whole rows, _COLUMNS order
    last_seq: int = 0  # the highest seq it gave, delivered or not
    unreadable: int = 0  # rows found that were not whole events
    method: str = ""


def _outbox_rows(path: Path) -> Iterator[tuple[Any, ...]]:
    """Rows that have the outbox's shape, from every page that still parses: eight values,
    the first (seq, the rowid's alias) stored as NULL."""
    for rowid, values in pages.table_rows(path):
        if len(values) == len(_COLUMNS) and values[0] is None:
            yield (rowid, *values[1:])


def _counter_floor(path: Path) -> int:
    """``outbox_counter.last_seq`` when SQLite can still read it (the damage is elsewhere)."""
    conn: sqlite3.Connection | None = None
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        row = conn.execute("SELECT last_seq FROM outbox_counter WHERE one = 1").fetchone()
    except sqlite3.Error:
        return 0
    finally:
        if conn is not None:
            conn.close()
    return int(row[0]) if row is not None and isinstance(row[0], int) else 0


def whole_event(row: tuple[Any, ...]) -> bool:
    """The row is an outbox row whose payload is the very event its columns describe."""
    seq, event_id, kind, when, payload, created, published, delivered = row
    if not (isinstance(seq, int) and seq > 0 and isinstance(payload, str)):
        return False
    if not isinstance(created, float | int) or isinstance(created, bool):
        return False
    for stamp in (published, delivered):
        if stamp is not None and not isinstance(stamp, float | int):
            return False
    try:
        event = json.loads(payload)
    except ValueError:
        return False
    return (
        isinstance(event, dict)
        and event.get("seq") == seq
        and event.get("id") == event_id
        and event.get("type") == kind
        and event.get("time") == when
        and isinstance(event.get("data"), dict)
    )


def read_damaged(path: Path | str) -> Recovered:
    """Every whole outbox row in the pages of a copy of ``path`` and its WAL.

    A seq found in more than one version (a page's old copy left in a free page) counts as
    undelivered if any version is: sending an event twice is harmless (the gateway drops
    repeats by id), not sending it is not.
    """
    path = Path(path)
    if not path.is_file():
        raise SalvageError(f"{path}: no such file")
    out = Recovered(method="page reading")
    by_seq: dict[int, tuple[Any, ...]] = {}
    with tempfile.TemporaryDirectory(prefix="salvage-") as tmp:
        copy = Path(tmp) / "damaged.db"  # the file moved aside stays as it was found
        try:
            shutil.copyfile(path, copy)
            if Path(f"{path}-wal").exists():
                shutil.copyfile(f"{path}-wal", f"{copy}-wal")
            rows = list(_outbox_rows(copy))
        except OSError as exc:
            raise SalvageError(f"{path} cannot be read: {exc}") from exc
        floor = _counter_floor(copy)
    for row in rows:
        if not whole_event(row):
            out.unreadable += 1
            continue
        seq = int(row[0])
        if seq not in by_seq or row[7] is None:
            by_seq[seq] = row
    out.events = [by_seq[s] for s in sorted(by_seq)]
    out.last_seq = max([floor, *by_seq])
    return out


@dataclass(frozen=True)
class SalvageResult:
    damaged: str
    recovered: int  # whole events found
    undelivered: int  # of them, not yet delivered
    added: int  # put into the outbox now
    already: int  # in the outbox already (salvaged before)
    conflicts: int  # a different event holds that seq here: left out, and logged
    unreadable: int
    first_seq: int | None
    last_seq: int | None


def salvage(db: Database, damaged: Path | str, source: str) -> SalvageResult:
    """Put the undelivered events of ``damaged`` into ``db``'s outbox, keeping their ids and
    seqs; the ``database_damaged`` alert is cleared. Running it again adds nothing twice."""
    damaged = Path(damaged)
    found = read_damaged(damaged)
    todo = [row for row in found.events if row[7] is None]
    added = already = conflicts = 0
    with write_transaction(db) as conn:
        for row in todo:
            held = conn.execute("SELECT id FROM outbox WHERE seq = ?", (row[0],)).fetchone()
            if held is None:
                conn.execute(
                    f"INSERT INTO outbox({', '.join(_COLUMNS[:6])}) VALUES (?,?,?,?,?,?)",
                    row[:6],
                )
                added += 1
            elif held[0] == row[1]:
                already += 1
            else:
                conflicts += 1
                log.error("seq %d: %s here, %s in %s; left out", row[0], held[0], row[1], damaged)
        if todo:
            first = int(todo[0][0])
            conn.execute(
                "UPDATE outbox_counter SET delivered_through = min(delivered_through, ?), "
                "last_seq = max(last_seq, ?) WHERE one = 1",
                (first - 1, found.last_seq),
            )
        outbox.standing_alert(
            conn,
            source=source,
            kind=ALERT_KIND,
            stands=False,
            detail=f"salvaged {added} undelivered events from {damaged.name}",
        )
    return SalvageResult(
        damaged=str(damaged),
        recovered=len(found.events),
        undelivered=len(todo),
        added=added,
        already=already,
        conflicts=conflicts,
        unreadable=found.unreadable,
        first_seq=int(todo[0][0]) if todo else None,
        last_seq=int(todo[-1][0]) if todo else None,
    )
