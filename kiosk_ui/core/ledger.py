"""The ledger: the station's one way into its database, for writes and for reads.

Every change of the station is a fact and its events, written in ONE transaction::

    with ledger.write() as tx:        # lock, clock, BEGIN IMMEDIATE
        store.insert_tube(tx.conn, ..., at=tx.now)
        tx.emit(EventType.TUBE_OPENED, {...})
    # here: the events stored (one statement), COMMIT done, lock released

``tx.emit`` numbers the event on from the newest ``seq`` (read once, or handed over with
``tx.count_from`` by a caller that read it with its facts) and keeps its outbox row; the rows
go in with one statement just before the COMMIT. An exception inside the block (a
``RuleViolation``, say) rolls everything back and stores nothing. A COMMIT that fails raises
``StorageError`` (``edge_agent.db.write_transaction``): the caller never confirms a fact that
is not on disk.

The ledger's time never goes back: ``tx.now`` is the clock's time, or the floor when the clock
shows an earlier one (``Ledger.floor``: the time of the newest fact committed, read from the
database when the station opens and raised by every commit). A Pi that booted on an old saved
time, or 1970, therefore never records a fact before one it already holds: the day's
counters and the 12-hour resample window are counted in committed times
(``kiosk_ui.core.clock`` tells the kiosk not to trust such a clock at all).

``with ledger.read() as conn`` serialises a read with the writes and turns SQLite's own errors
into ``StorageError``, so nothing above the station needs to know it is SQLite.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable
from datetime import datetime
from types import TracebackType
from typing import Any

from edge_agent import outbox
from edge_agent.db import Database, write_transaction
from edge_agent.errors import StorageError
from edge_agent.events import EventType

Event = dict[str, Any]


# The newest committed fact's time: the last event's, or the last check-in's (events are
# purged once delivered, check-ins are not). Two primary-key lookups.
NEWEST_FACT = (
    "SELECT (SELECT time FROM outbox ORDER BY seq DESC LIMIT 1), "
    "(SELECT at FROM checkins ORDER BY id DESC LIMIT 1)"
)


class Ledger:
    """The station database, its lock, its clock, its floor and its event ``source``."""

    def __init__(
        self,
        db: Database,
        clock: Callable[[], float],
        source: str,
        lock: threading.RLock | None = None,
    ) -> None:
        self.db = db
        self.clock = clock
        self.source = source
        self.lock = lock if lock is not None else threading.RLock()
        self.floor = 0.0  # the newest committed fact's time: see ``load_floor``

    def load_floor(self) -> float:
        """Read the floor from the database (once the kiosk tables exist)."""
        with self.read() as conn:
            event_time, checkin_at = conn.execute(NEWEST_FACT).fetchone()
        times = [self.floor, float(checkin_at or 0.0)]
        if event_time:
            times.append(datetime.fromisoformat(str(event_time)).timestamp())
        self.floor = max(times)
        return self.floor

    def now(self) -> float:
        """The clock's time, never before the floor."""
        return max(self.clock(), self.floor)

    @property
    def conn(self) -> sqlite3.Connection:
        return self.db.conn

    def write(self) -> Tx:
        """One write transaction with its events: ``with ledger.write() as tx``."""
        return Tx(self)

    def read(self) -> Read:
        """One read, serialised with the writes: ``with ledger.read() as conn``."""
        return Read(self)

    def close(self) -> None:
        with self.lock:
            self.conn.close()


class Tx:
    """A write in progress: ``conn``, the time it happens (``now``), the events made so far.

    A class rather than a generator, as ``write_transaction`` is: a check-in goes through it.
    """

    __slots__ = ("_last_seq", "_ledger", "_outer", "_rows", "conn", "events", "now")

    def __init__(self, ledger: Ledger) -> None:
        self._ledger = ledger
        self._rows: list[tuple[Any, ...]] = []
        self._last_seq: int | None = None
        self._outer = write_transaction(ledger.db)
        self.conn = ledger.conn
        self.events: list[Event] = []
        self.now = 0.0

    def __enter__(self) -> Tx:
        ledger = self._ledger
        ledger.lock.acquire()
        try:
            self.now = max(ledger.clock(), ledger.floor)
            self._outer.__enter__()
        except BaseException:
            ledger.lock.release()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            if exc is None and self._rows:
                try:
                    outbox.insert_rows(self.conn, self._rows)
                except BaseException as failed:
                    self._outer.__exit__(type(failed), failed, failed.__traceback__)
                    raise
            self._outer.__exit__(exc_type, exc, tb)
            if exc is None:
                self._ledger.floor = self.now  # committed: nothing later goes before it
        finally:
            self._ledger.lock.release()

    def count_from(self, last_seq: int) -> None:
        """The newest event's seq, read in this transaction with the caller's facts."""
        if self._last_seq is None:
            self._last_seq = last_seq

    def emit(self, type: EventType, data: dict[str, Any]) -> Event:
        """Make the next event of this transaction; it is stored with the fact at the end."""
        if self._last_seq is None:
            self._last_seq = int(self.conn.execute(outbox.LAST_SEQ).fetchone()[0])
        self._last_seq += 1
        event, row = outbox.make_event(
            source=self._ledger.source, type=type, data=data, at=self.now, seq=self._last_seq
        )
        self._rows.append(row)
        self.events.append(event)
        return event


class Read:
    """A read under the station's lock; SQLite's errors come out as ``StorageError``."""

    __slots__ = ("_ledger",)

    def __init__(self, ledger: Ledger) -> None:
        self._ledger = ledger

    def __enter__(self) -> sqlite3.Connection:
        self._ledger.lock.acquire()
        return self._ledger.conn

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._ledger.lock.release()
        if isinstance(exc, sqlite3.Error):
            raise StorageError(f"the station database could not be read: {exc}") from exc
