"""The township's recall list as a station holds it: applied from ``recall_update`` commands,
read at every check-in.

Tables (component ``recall`` in ``schema_version``, installed with the outbox so the agent and
the kiosk both find them):

- ``recall_list``: ``sub`` (primary key, a ``WITHOUT ROWID`` table: one B-tree lookup per
  check-in however long the list), ``pool``, ``reason``, ``action`` (``single`` | ``isolate``),
  ``v`` (the change that put it there), ``at``;
- ``recall_state``: one row: the ``township`` and the ``version`` held (0: nothing yet).

``apply(db, township, args, now)`` takes a chunk ``from``..``through`` when ``from`` is at
most the version held + 1: the changes it already holds are skipped, the rest applied in
order, all in one transaction. A chunk that would leave a gap raises ``RecallGap`` naming the
version held, so the reply tells the gateway where to start; one for another township, or
whose changes are not exactly ``from``..``through`` in order, raises ``CommandError`` and
changes nothing.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from typing import Any

from edge_agent.db import Database, migrate, write_transaction
from edge_agent.errors import CommandError, StorageError

COMPONENT = "recall"
MIGRATIONS = [
    """
    CREATE TABLE recall_list (
        sub TEXT PRIMARY KEY,
        pool TEXT NOT NULL,
        reason TEXT NOT NULL,
        action TEXT NOT NULL CHECK (action IN ('single', 'isolate')),
        v INTEGER NOT NULL,
        at REAL NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE recall_state (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        township TEXT,
        version INTEGER NOT NULL,
        at REAL
    );
    INSERT INTO recall_state(id, township, version, at) VALUES (1, NULL, 0, NULL);
    """,
]


class RecallGap(CommandError):
    """A chunk that starts beyond the version held + 1; ``version`` is what is held."""

    def __init__(self, message: str, version: int) -> None:
        super().__init__(message)
        self.version = version


@dataclass(frozen=True, slots=True)
class Recall:
    """Why a resident is on the list: the tube, the reason and what the station does."""

    pool: str
    reason: str
    action: str


def install(db: Database) -> None:
    migrate(db, COMPONENT, MIGRATIONS)


def version(conn: sqlite3.Connection) -> int:
    """The version of the list held (0: none yet); StorageError when it cannot be read."""
    try:
        row = conn.execute("SELECT version FROM recall_state WHERE id = 1").fetchone()
    except sqlite3.Error as exc:
        raise StorageError(f"cannot read the recall list's version: {exc}") from exc
    return int(row[0]) if row else 0


def lookup(conn: sqlite3.Connection, sub: str) -> Recall | None:
    row = conn.execute("SELECT pool, reason, action FROM recall_list WHERE sub = ?", (sub,))
    found = row.fetchone()
    return None if found is None else Recall(str(found[0]), str(found[1]), str(found[2]))


def _check(township: str, args: dict[str, Any]) -> list[dict[str, Any]]:
    if args["township"] != township:
        raise CommandError(
            f"args.township: this station belongs to {township}, not {args['township']}"
        )
    first, last, changes = int(args["from"]), int(args["through"]), list(args["changes"])
    if [c["v"] for c in changes] != list(range(first, last + 1)):
        raise CommandError(
            f"args.changes: must be the changes {first} to {last}, each once and in order"
        )
    for c in changes:
        if c["op"] == "add" and "action" not in c:
            raise CommandError(f"args.changes: change {c['v']} adds without an action")
    return changes


def apply(db: Database, township: str, args: dict[str, Any], now: float) -> dict[str, Any]:
    """Apply one ``recall_update`` chunk; returns ``{"recall_version": N, "applied": K}``."""
    changes = _check(township, args)
    try:
        with write_transaction(db) as conn:
            held = version(conn)
            if int(args["from"]) > held + 1:
                raise RecallGap(
                    f"recall_update from {args['from']} leaves a gap: this station holds "
                    f"version {held}; send from {held + 1}",
                    held,
                )
            new = [c for c in changes if c["v"] > held]
            for c in new:
                if c["op"] == "add":
                    conn.execute(
                        "INSERT INTO recall_list(sub, pool, reason, action, v, at) "
                        "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(sub) DO UPDATE SET "
                        "pool = excluded.pool, reason = excluded.reason, "
                        "action = excluded.action, v = excluded.v, at = excluded.at",
                        (c["sub"], c["pool"], c["reason"], c["action"], c["v"], now),
                    )
                else:
                    conn.execute("DELETE FROM recall_list WHERE sub = ?", (c["sub"],))
            if new:
                conn.execute(
                    "UPDATE recall_state SET township = ?, version = ?, at = ? WHERE id = 1",
                    (township, new[-1]["v"], now),
                )
            after = max(held, new[-1]["v"]) if new else held
    except StorageError as exc:
        raise CommandError(f"not stored: {exc}") from exc
    return {"recall_version": after, "applied": len(new)}
