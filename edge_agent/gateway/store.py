"""The gateway's store: one interface, two backends (SQLite for one host, PostgreSQL for more).

``open_store(target)`` picks the backend: a ``postgresql://`` (or ``postgres://``) URL opens
``PostgresStore`` (psycopg 3 with a connection pool), anything else (a path, or a
``sqlite:`` URL such as ``sqlite:///var/lib/gateway/events.db``) opens ``SqliteStore``. Both
keep the same schema, each with its own versioned migrations, and pass one behaviour suite.

Tables (both backends; times are Unix seconds as floating point numbers):

- ``events``: ``id`` (primary key: a repeat is dropped by it), ``township``, ``station``,
  ``seq`` (unique per township and station), ``type``, ``time`` (the event's RFC 3339 text),
  ``happened_at`` (the same instant in Unix seconds), ``payload`` (the event's JSON text),
  ``received_at``.
- ``progress``: ``township``, ``station``, ``through``: the contiguous prefix of ``seq``
  stored, which is what the gateway acknowledges.
- ``stations``: ``township``, ``station``, ``online`` (1, 0 or NULL before any status),
  ``status_at`` (when the last status arrived), ``last_seen`` (the last event, online status
  or telemetry), ``telemetry`` (the last telemetry's JSON text), ``telemetry_at``,
  ``release`` (the software release a status or telemetry named, if any).

The read hook for views: ``store.dialect`` is ``"sqlite"`` or ``"postgresql"`` and
``store.query(sql, params)`` runs one read-only statement and returns its rows as tuples.
Write the SQL with ``%s`` placeholders (psycopg's style); the SQLite store turns each ``%s``
into ``?`` (so a literal ``%`` in such SQL must be written ``%%`` on both). Keep to SQL both
understand (``CASE``, ``COALESCE``, ``substr``, integer arithmetic on the float times), or
branch on ``dialect``.
"""

from __future__ import annotations

import json
import logging
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal, Protocol, TypeVar

from edge_agent.gateway.intake import Event

log = logging.getLogger(__name__)

StationKey = tuple[str, str]
Kind = Literal["status", "telemetry"]
T = TypeVar("T")


class Tx(Protocol):
    """One write transaction handed to ``GatewayStore.write`` (``%s`` placeholders)."""

    def execute(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Run one statement; its rows (an empty list when it returns none)."""

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None: ...


# Upsert of a station's row from a status or telemetry message; the newer one wins, so an
# instance that reads a message late cannot turn back what another one already wrote.
RECORD_STATUS = """
INSERT INTO stations(township, station, online, status_at, last_seen, release)
VALUES (%s, %s, %s, %s, %s, %s)
ON CONFLICT (township, station) DO UPDATE SET
  online = CASE WHEN stations.status_at IS NULL OR excluded.status_at >= stations.status_at
           THEN excluded.online ELSE stations.online END,
  status_at = CASE WHEN stations.status_at IS NULL OR excluded.status_at >= stations.status_at
              THEN excluded.status_at ELSE stations.status_at END,
  last_seen = CASE WHEN excluded.last_seen IS NOT NULL
                    AND (stations.last_seen IS NULL OR excluded.last_seen > stations.last_seen)
              THEN excluded.last_seen ELSE stations.last_seen END,
  release = COALESCE(excluded.release, stations.release)
"""
RECORD_TELEMETRY = """
INSERT INTO stations(township, station, telemetry, telemetry_at, last_seen, release)
VALUES (%s, %s, %s, %s, %s, %s)
ON CONFLICT (township, station) DO UPDATE SET
  telemetry = CASE WHEN stations.telemetry_at IS NULL
                     OR excluded.telemetry_at >= stations.telemetry_at
              THEN excluded.telemetry ELSE stations.telemetry END,
  telemetry_at = CASE WHEN stations.telemetry_at IS NULL
                        OR excluded.telemetry_at >= stations.telemetry_at
                 THEN excluded.telemetry_at ELSE stations.telemetry_at END,
  last_seen = CASE WHEN stations.last_seen IS NULL OR excluded.last_seen > stations.last_seen
              THEN excluded.last_seen ELSE stations.last_seen END,
  release = COALESCE(excluded.release, stations.release)
"""
# Stations an event batch touched: seen now (rows are made if the station is new).
SEEN = """
INSERT INTO stations(township, station, last_seen) VALUES (%s, %s, %s)
ON CONFLICT (township, station) DO UPDATE SET
  last_seen = CASE WHEN stations.last_seen IS NULL OR excluded.last_seen > stations.last_seen
              THEN excluded.last_seen ELSE stations.last_seen END
"""


@dataclass
class StoreResult:
    """What one ``store()`` did: the acknowledgeable prefix per station touched (repeats and
    conflicts touch their station too: its last ack may have been lost), and the counts."""

    advanced: dict[StationKey, int] = field(default_factory=dict)
    stored: int = 0
    repeats: int = 0
    conflicts: list[Event] = field(default_factory=list)


@dataclass(frozen=True)
class StationState:
    """One station as ``station gateway status`` shows it."""

    township: str
    station: str
    through: int
    last_seq: int
    waiting: int
    online: bool | None
    last_seen: float | None


def run_end(through: int, after: list[int], limit: int) -> tuple[int, bool]:
    """Walk ``after`` (the stored seqs past ``through``, ascending, at most ``limit`` of them)
    from ``through``; returns the new end of the contiguous run and whether it may go on past
    what was read (all ``limit`` seqs were contiguous)."""
    end = through
    for seq in after:
        if seq != end + 1:
            return end, False
        end = seq
    return end, len(after) == limit


def release_of(payload: dict[str, Any]) -> str | None:
    value = payload.get("release")
    return value if isinstance(value, str) and value else None


def station_row(
    township: str, station: str, kind: Kind, payload: dict[str, Any], at: float
) -> tuple[str, tuple[Any, ...]]:
    """The upsert (``RECORD_STATUS`` or ``RECORD_TELEMETRY``) and its values for a message."""
    if kind == "status":
        online = payload.get("state") == "online"
        last_seen = at if online else None
        return RECORD_STATUS, (township, station, int(online), at, last_seen, release_of(payload))
    telemetry = json.dumps(payload)
    return RECORD_TELEMETRY, (township, station, telemetry, at, at, release_of(payload))


class GatewayStore(ABC):
    """Events stored once, each station's acknowledgeable prefix, and the station list."""

    dialect: ClassVar[str]

    @abstractmethod
    def store(self, events: Sequence[Event], now: float) -> StoreResult:
        """Store a batch in one transaction; return only once it is committed.

        Raises ``StorageError`` when nothing of the batch could be committed (the caller
        acknowledges nothing and tries again).
        """

    @abstractmethod
    def record_station(
        self, township: str, station: str, kind: Kind, payload: dict[str, Any], at: float
    ) -> None:
        """Record a ``status`` or ``telemetry`` message that arrived at ``at``."""

    @abstractmethod
    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """One read-only statement (``%s`` placeholders), its rows as tuples."""

    @abstractmethod
    def write(self, work: Callable[[Tx], T]) -> T:
        """``work(tx)`` in one write transaction, committed when it returns (the lab's
        tables: receipts, results, the recall list); ``StorageError`` if it cannot commit."""

    @abstractmethod
    def close(self) -> None: ...

    def through(self, township: str, station: str) -> int:
        rows = self.query(
            "SELECT through FROM progress WHERE township = %s AND station = %s",
            (township, station),
        )
        return int(rows[0][0]) if rows else 0

    def waiting(self) -> dict[StationKey, int]:
        """Per station, how many stored events wait beyond a gap."""
        rows = self.query(
            "SELECT e.township, e.station, count(*) FROM events e JOIN progress p "
            "ON p.township = e.township AND p.station = e.station WHERE e.seq > p.through "
            "GROUP BY e.township, e.station"
        )
        return {(str(t), str(s)): int(n) for t, s, n in rows}

    def station_states(self) -> list[StationState]:
        rows = self.query(
            "SELECT k.township, k.station, COALESCE(p.through, 0), "
            "(SELECT max(seq) FROM events e WHERE e.township = k.township "
            "  AND e.station = k.station), "
            "(SELECT count(*) FROM events e WHERE e.township = k.township "
            "  AND e.station = k.station AND e.seq > COALESCE(p.through, 0)), "
            "s.online, s.last_seen "
            "FROM (SELECT township, station FROM stations UNION "
            "      SELECT township, station FROM progress) k "
            "LEFT JOIN progress p ON p.township = k.township AND p.station = k.station "
            "LEFT JOIN stations s ON s.township = k.township AND s.station = k.station "
            "ORDER BY k.township, k.station"
        )
        return [
            StationState(
                str(t),
                str(s),
                int(through),
                int(last or 0),
                int(waiting),
                None if online is None else bool(online),
                None if seen is None else float(seen),
            )
            for t, s, through, last, waiting, online, seen in rows
        ]

    def __enter__(self) -> GatewayStore:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


def log_conflict(event: Event) -> None:
    log.error(
        "%s/%s seq %d arrived as %s, but that seq or id is already stored as another event: "
        "not stored",
        event.township,
        event.station,
        event.seq,
        event.id,
    )


def open_store(target: str | Path, **options: Any) -> GatewayStore:
    """The store at ``target``: a ``postgresql://`` URL, a ``sqlite:`` URL or a file path."""
    text = str(target)
    if text.startswith(("postgresql://", "postgres://")):
        from edge_agent.gateway.postgres import PostgresStore  # noqa: PLC0415 - psycopg only here

        return PostgresStore(text, **options)
    from edge_agent.gateway.sqlite import SqliteStore  # noqa: PLC0415

    if text.startswith("sqlite:"):
        text = text.removeprefix("sqlite:")
        if text.startswith("//"):
            text = text[2:]
    return SqliteStore(Path(text), **options)
