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

``with ledger.read() as conn`` serialises a read with the writes and turns SQLite's own errors
into ``StorageError``, so nothing above the station needs to know it is SQLite.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable
from types import TracebackType
from typing import Any

from edge_agent import outbox
from edge_agent.db import Database, write_transaction
from edge_agent.errors import StorageError
from edge_agent.events import EventType

Event = dict[str, Any]


class Ledger:
    """The station database, its lock, its clock and its event ``source``."""

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
            self.now = ledger.clock()
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
