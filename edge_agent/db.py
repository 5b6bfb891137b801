"""Opening the station's SQLite file: WAL, synchronous=FULL, migrations, write transactions.

The kiosk and the edge agent are two processes on one file. WAL lets the agent read while the
kiosk writes; every write transaction starts with BEGIN IMMEDIATE so the two never deadlock
on a lock upgrade, and a busy timeout absorbs the other's short commits.
"""

from __future__ import annotations

import logging
import shutil
import sqlite3
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

from edge_agent.errors import StorageError

log = logging.getLogger(__name__)

BUSY_TIMEOUT_MS = 10_000


class Database:
    """A handle on the station database: its one connection, opened by ``open_db``.

    The kiosk, the agent and the gateway's SQLite store all hold one; code that reads or
    writes takes ``db.conn``, and ``write_transaction(db)`` for anything that must commit
    whole.
    """

    __slots__ = ("conn",)

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def close(self) -> None:
        self.conn.close()

    def table_names(self) -> list[str]:
        rows = self.conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        return [name for (name,) in rows]


def open_db(path: Path | str) -> Database:
    """Open (creating if needed) the station database with the durability pragmas."""
    path = Path(path)
    conn: sqlite3.Connection | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(
            path, isolation_level=None, timeout=BUSY_TIMEOUT_MS / 1000, check_same_thread=False
        )
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise StorageError(f"{path}: the file system does not support WAL (got {mode})")
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute("PRAGMA foreign_keys = ON")
    except (sqlite3.Error, OSError, StorageError) as exc:
        if conn is not None:
            conn.close()
        if isinstance(exc, StorageError):
            raise
        if isinstance(exc, OSError):
            raise StorageError(f"{path}: cannot create the station database: {exc}") from exc
        raise StorageError(
            f"{path}: cannot open the station database: {exc}{free_space_hint(path)}"
        ) from exc
    return Database(conn)


def free_space_hint(path: Path) -> str:
    """A note for an error message when the file system of ``path`` is (nearly) full."""
    # Even reading a WAL database needs room for its index (the -shm file, 32 KiB) when no
    # other process holds it open: on a full disk SQLite says only "disk I/O error".
    try:
        free = shutil.disk_usage(path.parent).free
    except OSError:
        return ""
    return f" (its file system has only {free} bytes free)" if free < 1 << 20 else ""


class write_transaction:  # named as the function it replaces: ``with write_transaction(db)``
    """One atomic write: everything inside commits together or not at all.

    ``with write_transaction(db) as conn:`` starts with ``BEGIN IMMEDIATE``. A failed COMMIT
    (disk full, I/O error) raises StorageError after rolling back, so the caller never
    confirms a fact that is not on disk. (A class, not a generator: it runs on every
    check-in, and this is the cheaper way into and out of a ``with``.)
    """

    __slots__ = ("conn",)

    def __init__(self, db: Database) -> None:
        self.conn: sqlite3.Connection = db.conn

    def __enter__(self) -> sqlite3.Connection:
        try:
            self.conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise StorageError(f"cannot start a write: {exc}") from exc
        return self.conn

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        conn = self.conn
        if exc is None:
            try:
                conn.execute("COMMIT")
                return
            except sqlite3.Error as failed:
                exc = failed
        if conn.in_transaction:
            try:
                conn.execute("ROLLBACK")
            except sqlite3.Error:
                log.exception("rollback failed")
        if isinstance(exc, sqlite3.Error):
            raise StorageError(f"the write was not stored: {exc}") from exc


def migrate(db: Database, component: str, steps: Sequence[str]) -> int:
    """Apply the not yet applied ``steps`` (SQL scripts, in order) of one component.

    Each step runs in its own transaction together with the version bump, so a crash
    half-way leaves the file at a whole version. Returns the version now in force.

    Foreign keys are off while steps run, so a step may rebuild a table others refer to
    (create the new one, copy, drop the old, rename); before it commits, every reference
    must still resolve, or the step rolls back.
    """
    conn = db.conn
    conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_version ("
        " component TEXT PRIMARY KEY, version INTEGER NOT NULL)"
    )
    with write_transaction(db):
        row = conn.execute(
            "SELECT version FROM schema_version WHERE component = ?", (component,)
        ).fetchone()
        current = int(row[0]) if row else 0
    if current > len(steps):
        raise StorageError(
            f"the database holds {component} schema version {current}, newer than this "
            f"software knows ({len(steps)}); roll the software forward, not the data back"
        )
    if current == len(steps):
        return current
    enforced = bool(conn.execute("PRAGMA foreign_keys").fetchone()[0])
    conn.execute("PRAGMA foreign_keys = OFF")  # a no-op inside a transaction: set it here
    try:
        for version in range(current + 1, len(steps) + 1):
            with write_transaction(db) as c:
                for statement in _statements(steps[version - 1]):
                    c.execute(statement)
                broken = c.execute("PRAGMA foreign_key_check").fetchall()
                if broken:
                    raise StorageError(
                        f"{component} schema version {version} would leave references that "
                        f"resolve nowhere (first: {tuple(broken[0])}); nothing was changed"
                    )
                c.execute(
                    "INSERT INTO schema_version(component, version) VALUES (?, ?) "
                    "ON CONFLICT(component) DO UPDATE SET version = excluded.version",
                    (component, version),
                )
            log.info("migrated %s to schema version %d", component, version)
    finally:
        conn.execute(f"PRAGMA foreign_keys = {'ON' if enforced else 'OFF'}")
    return len(steps)


def _statements(script: str) -> list[str]:
    parts, buf = [], ""
    for line in script.splitlines(keepends=True):
        buf += line
        if sqlite3.complete_statement(buf):
            parts.append(buf.strip())
            buf = ""
    if buf.strip():
        parts.append(buf.strip())
    return parts
