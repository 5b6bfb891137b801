"""The gateway's PostgreSQL store: psycopg 3 with a connection pool, for many instances.

Several gateway processes, on one host or many, write to one database and never need to know
of each other. What keeps them in agreement:

- ``events`` has ``id`` as its primary key and ``(township, station, seq)`` unique, so an
  event is stored once whoever receives it (``ON CONFLICT DO NOTHING``);
- a batch first locks the ``progress`` row of every station it touches, in one statement and
  in (township, station) order (so two batches never wait on each other in a circle), then
  inserts, then computes each station's contiguous prefix. Batches that touch a station
  follow one another, and the later one sees what the earlier one committed, so no stored
  event is left unacknowledged because two instances stored its neighbours at once.

Migrations: ``schema_migrations`` (version, applied_at) under a transaction-level advisory
lock, so instances started together migrate once. A lost connection, a server that is away
or a disk it cannot write raise ``StorageError``; the pool replaces broken connections.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import psycopg
import psycopg_pool
from psycopg import errors as pg_errors

from edge_agent.errors import StorageError
from edge_agent.gateway.intake import Event
from edge_agent.gateway.lab import MIGRATION as LAB_MIGRATION
from edge_agent.gateway.store import (
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

log = logging.getLogger(__name__)

MIGRATION_LOCK = 0x5A4D_6761  # pg_advisory_xact_lock key of the gateway's migrations
RETRIES = 3  # a deadlock or serialization failure is retried whole, this many times
WALK = 2000  # seqs read per station and query when computing the prefix
MIGRATIONS = [
    """
    CREATE TABLE events (
        id TEXT PRIMARY KEY,
        township TEXT NOT NULL,
        station TEXT NOT NULL,
        seq BIGINT NOT NULL,
        type TEXT NOT NULL,
        time TEXT NOT NULL,
        happened_at DOUBLE PRECISION NOT NULL,
        payload TEXT NOT NULL,
        received_at DOUBLE PRECISION NOT NULL,
        UNIQUE (township, station, seq)
    );
    CREATE INDEX events_happened_at ON events(happened_at);
    CREATE TABLE progress (
        township TEXT NOT NULL,
        station TEXT NOT NULL,
        through BIGINT NOT NULL,
        PRIMARY KEY (township, station)
    );
    CREATE TABLE stations (
        township TEXT NOT NULL,
        station TEXT NOT NULL,
        online INTEGER,
        status_at DOUBLE PRECISION,
        last_seen DOUBLE PRECISION,
        telemetry TEXT,
        telemetry_at DOUBLE PRECISION,
        release TEXT,
        PRIMARY KEY (township, station)
    );
    """,
    LAB_MIGRATION,
]

_LOCK_PROGRESS = """
INSERT INTO progress(township, station, through)
SELECT t, s, 0 FROM unnest(%s::text[], %s::text[]) AS u(t, s) ORDER BY t, s
ON CONFLICT (township, station) DO UPDATE SET through = progress.through
RETURNING township, station, through
"""
_INSERT = """
INSERT INTO events(id, township, station, seq, type, time, happened_at, payload, received_at)
SELECT i, t, s, q, y, w, h, p, %s FROM unnest(
    %b::text[], %b::text[], %b::text[], %b::bigint[], %b::text[], %b::text[],
    %b::float8[], %b::text[]) AS u(i, t, s, q, y, w, h, p)
ON CONFLICT DO NOTHING
RETURNING id
"""
# The stored seqs after each station's prefix, in order, at most WALK per station.
_AFTER = f"""
SELECT u.t, u.s, x.seq
FROM unnest(%b::text[], %b::text[], %b::bigint[]) AS u(t, s, th)
CROSS JOIN LATERAL (
    SELECT seq FROM events e WHERE e.township = u.t AND e.station = u.s AND e.seq > u.th
    ORDER BY seq LIMIT {WALK}
) AS x
ORDER BY u.t, u.s, x.seq
"""
_ADVANCE = """
UPDATE progress p SET through = u.th
FROM unnest(%s::text[], %s::text[], %s::bigint[]) AS u(t, s, th)
WHERE p.township = u.t AND p.station = u.s
"""


def _migrate(conn: psycopg.Connection[Any]) -> int:
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
        conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version INTEGER PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
        )
        row = conn.execute("SELECT max(version) FROM schema_migrations").fetchone()
        current = int(row[0]) if row and row[0] is not None else 0
        if current > len(MIGRATIONS):
            raise StorageError(
                f"the database holds gateway schema version {current}, newer than this "
                f"software knows ({len(MIGRATIONS)}); roll the software forward"
            )
        for version in range(current + 1, len(MIGRATIONS) + 1):
            conn.execute(MIGRATIONS[version - 1].encode())
            conn.execute("INSERT INTO schema_migrations(version) VALUES (%s)", (version,))
            log.info("migrated the gateway's PostgreSQL schema to version %d", version)
    return len(MIGRATIONS)


class _PostgresTx:
    def __init__(self, cur: psycopg.Cursor[Any]) -> None:
        self.cur = cur

    def execute(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        self.cur.execute(sql.encode(), tuple(params))
        return [tuple(r) for r in self.cur.fetchall()] if self.cur.description else []

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        self.cur.executemany(sql.encode(), [tuple(r) for r in rows])


class PostgresStore(GatewayStore):
    dialect: ClassVar[str] = "postgresql"

    def __init__(
        self, url: str, *, max_size: int = 4, timeout_s: float = 5.0, application: str = "gateway"
    ) -> None:
        self.url = url
        self.timeout_s = timeout_s
        self.pool: psycopg_pool.ConnectionPool[psycopg.Connection[Any]] = (
            psycopg_pool.ConnectionPool(
                url,
                min_size=1,
                max_size=max_size,
                timeout=timeout_s,
                kwargs={"application_name": application, "connect_timeout": 5},
                check=psycopg_pool.ConnectionPool.check_connection,
                open=False,
                name="gateway",
            )
        )
        try:
            self.pool.open(wait=True, timeout=timeout_s * 2)
            with self.pool.connection() as conn:
                _migrate(conn)
        except (psycopg.Error, psycopg_pool.PoolTimeout) as exc:
            self.pool.close()
            raise StorageError(f"cannot open the gateway database: {exc}") from exc

    def _run(self, what: str, work: Any) -> Any:
        """``work(conn)`` in one transaction; retried on a deadlock; ``StorageError`` if lost."""
        for attempt in range(1, RETRIES + 1):
            try:
                with self.pool.connection() as conn, conn.transaction():
                    return work(conn)
            except (pg_errors.DeadlockDetected, pg_errors.SerializationFailure) as exc:
                if attempt == RETRIES:
                    raise StorageError(f"{what}: {exc}") from exc
                log.warning("%s: %s; trying again", what, exc)
            except (psycopg.Error, psycopg_pool.PoolTimeout) as exc:
                raise StorageError(f"{what}: {exc}") from exc
        raise AssertionError("unreachable")

    def store(self, events: Sequence[Event], now: float) -> StoreResult:
        return self._run(  # type: ignore[no-any-return]
            f"could not store {len(events)} events", lambda conn: self._store(conn, events, now)
        )

    def _store(
        self, conn: psycopg.Connection[Any], events: Sequence[Event], now: float
    ) -> StoreResult:
        result = StoreResult()
        keys = sorted({(e.township, e.station) for e in events})
        cur = conn.cursor()
        cur.execute(_LOCK_PROGRESS, ([k[0] for k in keys], [k[1] for k in keys]))
        start: dict[StationKey, int] = {(t, s): int(n) for t, s, n in cur.fetchall()}
        columns: list[list[Any]] = [[] for _ in Event._fields]
        for ev in events:
            for column, value in zip(columns, ev, strict=True):
                column.append(value)
        township, station, seq, id_, type_, time_, happened, payload = columns
        cur.execute(_INSERT, (now, id_, township, station, seq, type_, time_, happened, payload))
        inserted = {row[0] for row in cur.fetchall()}
        result.stored = len(inserted)
        left, first = [], set()
        for ev in events:  # all but the one occurrence of each id that went in
            if ev.id in inserted and ev.id not in first:
                first.add(ev.id)
            else:
                left.append(ev)
        self._classify(cur, left, result)
        ends = self._run_ends(cur, start)
        moved = [k for k in keys if ends[k] != start[k]]
        if moved:
            cur.execute(
                _ADVANCE, ([k[0] for k in moved], [k[1] for k in moved], [ends[k] for k in moved])
            )
        cur.executemany(SEEN, [(t, s, now) for t, s in keys])
        result.advanced = ends
        return result

    @staticmethod
    def _run_ends(cur: psycopg.Cursor[Any], start: dict[StationKey, int]) -> dict[StationKey, int]:
        """Each station's prefix after this batch: walk the stored seqs after it."""
        ends = dict(start)
        todo = sorted(start)
        while todo:
            cur.execute(
                _AFTER, ([k[0] for k in todo], [k[1] for k in todo], [ends[k] for k in todo])
            )
            after: dict[StationKey, list[int]] = {k: [] for k in todo}
            for t, s, seq in cur.fetchall():
                after[(t, s)].append(int(seq))
            todo = []
            for key, seqs in after.items():
                ends[key], maybe_more = run_end(ends[key], seqs, WALK)
                if maybe_more:
                    todo.append(key)
        return ends

    @staticmethod
    def _classify(cur: psycopg.Cursor[Any], left: list[Event], result: StoreResult) -> None:
        """Events not inserted: a repeat (its id is stored as this very event) or a conflict."""
        if not left:
            return
        cur.execute(
            "SELECT id, township, station, seq FROM events WHERE id = ANY(%s)",
            ([e.id for e in left],),
        )
        held = {i: (t, s, int(q)) for i, t, s, q in cur.fetchall()}
        for ev in left:
            if held.get(ev.id) == (ev.township, ev.station, ev.seq):
                result.repeats += 1
            else:
                result.conflicts.append(ev)
                log_conflict(ev)

    def record_station(
        self, township: str, station: str, kind: Kind, payload: dict[str, Any], at: float
    ) -> None:
        sql, params = station_row(township, station, kind, payload, at)
        self._run(
            f"could not record {township}/{station}'s {kind}", lambda c: c.execute(sql, params)
        )

    def write(self, work: Callable[[Tx], T]) -> T:
        return self._run(  # type: ignore[no-any-return]
            "could not write", lambda conn: work(_PostgresTx(conn.cursor()))
        )

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        def read(conn: psycopg.Connection[Any]) -> list[tuple[Any, ...]]:
            conn.execute("SET TRANSACTION READ ONLY")
            return [tuple(r) for r in conn.execute(sql.encode(), tuple(params)).fetchall()]

        return self._run("the read failed", read)  # type: ignore[no-any-return]

    def close(self) -> None:
        self.pool.close()
