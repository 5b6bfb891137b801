"""The gateway's SQLite store: one file, WAL, ``synchronous=FULL``, ``BEGIN IMMEDIATE`` writes.

Several gateway instances on one host may share the file: every write transaction takes the
file's write lock first, so they agree on what is stored and on each station's prefix.
Migrations go through ``edge_agent.db.migrate`` (component ``gateway`` in ``schema_version``).
"""

from __future__ import annotations

import re
import sqlite3
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar

from edge_agent.db import BUSY_TIMEOUT_MS, migrate, open_db, write_transaction
from edge_agent.errors import StorageError
from edge_agent.gateway.intake import Event
from edge_agent.gateway.lab import MIGRATION as LAB_MIGRATION
from edge_agent.gateway.store import (
    RECORD_STATUS,
    RECORD_TELEMETRY,
    SEEN,
    GatewayStore,
    Kind,
    StationKey,
    StoreResult,
    T,
    Tx,
    log_conflict,
    run_end,
    station_row,
)

COMPONENT = "gateway"
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
    """
    ALTER TABLE events ADD COLUMN time TEXT;
    ALTER TABLE events ADD COLUMN happened_at REAL;
    CREATE INDEX events_happened_at ON events(happened_at);
    CREATE TABLE stations (
        township TEXT NOT NULL,
        station TEXT NOT NULL,
        online INTEGER,
        status_at REAL,
        last_seen REAL,
        telemetry TEXT,
        telemetry_at REAL,
        release TEXT,
        PRIMARY KEY (township, station)
    );
    """,
    LAB_MIGRATION,
]
_PLACEHOLDER = re.compile(r"%[s%]")


def sqlite_sql(sql: str) -> str:
    """psycopg-style SQL for sqlite3: ``%s`` becomes ``?`` and ``%%`` becomes ``%``."""
    return _PLACEHOLDER.sub(lambda m: "?" if m.group() == "%s" else "%", sql)


_SQLITE_SQL = {sql: sqlite_sql(sql) for sql in (RECORD_STATUS, RECORD_TELEMETRY)}
_SEEN = sqlite_sql(SEEN)
WALK = 2000


class _SqliteTx:
    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def execute(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return [tuple(r) for r in self.conn.execute(sqlite_sql(sql), tuple(params))]

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        self.conn.executemany(sqlite_sql(sql), [tuple(r) for r in rows])


class SqliteStore(GatewayStore):
    dialect: ClassVar[str] = "sqlite"

    def __init__(self, path: Path) -> None:
        self.path = path
        self.db = open_db(path)
        migrate(self.db, COMPONENT, MIGRATIONS)
        self._read: sqlite3.Connection | None = None
        self._read_lock = threading.Lock()

    def store(self, events: Sequence[Event], now: float) -> StoreResult:
        result = StoreResult()
        touched: set[StationKey] = set()
        with write_transaction(self.db) as conn:
            for ev in events:
                touched.add((ev.township, ev.station))
                cur = conn.execute(
                    "INSERT OR IGNORE INTO events(id, township, station, seq, type, time, "
                    "happened_at, payload, received_at) VALUES (?,?,?,?,?,?,?,?,?)",
                    (
                        ev.id,
                        ev.township,
                        ev.station,
                        ev.seq,
                        ev.type,
                        ev.time,
                        ev.happened_at,
                        ev.payload,
                        now,
                    ),
                )
                if cur.rowcount:
                    result.stored += 1
                    continue
                same = conn.execute(
                    "SELECT township, station, seq FROM events WHERE id = ?", (ev.id,)
                ).fetchone()
                if same == (ev.township, ev.station, ev.seq):
                    result.repeats += 1
                else:
                    result.conflicts.append(ev)
                    log_conflict(ev)
            for township, station in sorted(touched):
                row = conn.execute(
                    "SELECT through FROM progress WHERE township = ? AND station = ?",
                    (township, station),
                ).fetchone()
                start = end = int(row[0]) if row else 0
                more = True
                while more:
                    after = conn.execute(
                        "SELECT seq FROM events WHERE township = ? AND station = ? AND seq > ? "
                        "ORDER BY seq LIMIT ?",
                        (township, station, end, WALK),
                    ).fetchall()
                    end, more = run_end(end, [s for (s,) in after], WALK)
                if end != start or row is None:
                    conn.execute(
                        "INSERT INTO progress(township, station, through) VALUES (?,?,?) "
                        "ON CONFLICT(township, station) DO UPDATE SET through = excluded.through",
                        (township, station, end),
                    )
                result.advanced[(township, station)] = int(end)
            conn.executemany(_SEEN, [(t, s, now) for t, s in sorted(touched)])
        return result

    def record_station(
        self, township: str, station: str, kind: Kind, payload: dict[str, Any], at: float
    ) -> None:
        sql, params = station_row(township, station, kind, payload, at)
        sql = _SQLITE_SQL[sql]
        with write_transaction(self.db) as conn:
            conn.execute(sql, params)

    def write(self, work: Callable[[Tx], T]) -> T:
        with write_transaction(self.db) as conn:
            return work(_SqliteTx(conn))

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self._read_lock:
            try:
                if self._read is None:
                    self._read = sqlite3.connect(
                        f"file:{self.path}?mode=ro",
                        uri=True,
                        timeout=BUSY_TIMEOUT_MS / 1000,
                        check_same_thread=False,
                        isolation_level=None,
                    )
                return [tuple(r) for r in self._read.execute(sqlite_sql(sql), tuple(params))]
            except sqlite3.Error as exc:
                raise StorageError(f"{self.path}: the read failed: {exc}") from exc

    def close(self) -> None:
        with self._read_lock:
            if self._read is not None:
                self._read.close()
                self._read = None
        self.db.conn.close()
