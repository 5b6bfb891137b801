"""The township's recall list: whom every station must stop, changed only by lab results.

The list is versioned per township: every change (``add`` or ``remove`` of one ``sub``) is a
numbered row of ``recall_changes`` (1, 2, 3, ... per township, never rewritten) and
``recall_list`` holds the list as the changes leave it. Stations receive the changes in order
as ``recall_update`` commands (see ``commands`` below and docs/commands/).

What a result does to the members of its tube (``outcome``):

| tube   | result   | members                                                        |
|--------|----------|----------------------------------------------------------------|
| pool   | negative | presumptive negative; the list is not changed                  |
| pool   | positive | added: action ``single``, reason ``pool_positive``             |
| pool   | invalid  | added unless already listed: ``single``, ``pool_invalid``      |
| single | positive | added (or raised): action ``isolate``, reason ``single_positive`` |
| single | invalid  | added unless already listed: ``single``, ``single_invalid``    |
| single | negative | removed (``single_negative``) if listed ``single`` for an earlier tube |

``pool_positive`` replaces an earlier ``*_invalid`` entry; ``isolate`` is never lowered by a
later result (only a correction of the result that caused it removes it). A correction of a
tube's result first takes back what the earlier result put on the list (``remove``, reason
``corrected``), then applies the new result; the change rows say only what differs.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from edge_agent.gateway.lab import Tube, chunks
from edge_agent.gateway.results import PoolResult
from edge_agent.gateway.store import GatewayStore, Tx

COMMAND = "recall_update"
MAX_COMMAND_BYTES = 16 * 1024  # the station's limit for any command (edge_agent.commands)
_COMMAND_OVERHEAD = 256  # envelope, id and the args' other keys, generously


@dataclass(frozen=True, slots=True)
class Entry:
    pool: str
    reason: str
    action: str
    sealed_at: float  # when the tube that caused it was sealed


@dataclass(frozen=True, slots=True)
class Change:
    v: int
    op: str  # "add" | "remove"
    sub: str
    pool: str
    reason: str
    action: str | None

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "v": self.v,
            "op": self.op,
            "sub": self.sub,
            "pool": self.pool,
            "reason": self.reason,
        }
        if self.action is not None:
            out["action"] = self.action
        return out


class Plan:
    """The recall list of the subs one import touches, changed in memory, then written."""

    def __init__(self, tx: Tx) -> None:
        self.tx = tx
        self.before: dict[tuple[str, str], Entry | None] = {}
        self.after: dict[tuple[str, str], Entry | None] = {}
        self.why_removed: dict[tuple[str, str], str] = {}

    def load(self, tubes: Iterable[Tube]) -> None:
        """Read the listed entries of every member of these tubes (one query per chunk)."""
        by_township: dict[str, set[str]] = {}
        for t in tubes:
            by_township.setdefault(t.township, set()).update(t.members)
        for township, subs in by_township.items():
            wanted = sorted(s for s in subs if (township, s) not in self.before)
            for part in chunks(wanted):
                marks = ", ".join(["%s"] * len(part))
                rows = self.tx.execute(
                    "SELECT sub, pool, reason, action, sealed_at FROM recall_list "
                    f"WHERE township = %s AND sub IN ({marks})",
                    (township, *part),
                )
                for sub in part:
                    self.before[(township, sub)] = None
                for sub, pool, reason, action, sealed in rows:
                    self.before[(township, str(sub))] = Entry(
                        str(pool), str(reason), str(action), float(sealed)
                    )
        for key, entry in self.before.items():
            self.after.setdefault(key, entry)

    def outcome(self, tube: Tube, result: PoolResult, *, corrects: bool) -> None:
        """Apply one result of ``tube`` (a correction first takes back the earlier one's)."""
        sealed = tube.sealed_at or 0.0
        for sub in tube.members:
            key = (tube.township, sub)
            current = self.after[key]
            if corrects and current is not None and current.pool == tube.tube:
                current = self._set(key, None, "corrected")
            new = _next(current, tube, result, sealed)
            if new is not current:
                self._set(key, new, "single_negative")

    def _set(self, key: tuple[str, str], entry: Entry | None, why: str) -> Entry | None:
        self.after[key] = entry
        if entry is None:
            self.why_removed[key] = why
        return entry

    def write(self, at: float) -> dict[str, tuple[int, int]]:
        """Number and store the changes; per township the versions (from, through) made."""
        made: dict[str, tuple[int, int]] = {}
        by_township: dict[str, list[tuple[str, Entry | None, Entry | None]]] = {}
        for (township, sub), entry in sorted(self.after.items()):
            old = self.before[(township, sub)]
            if entry != old:
                by_township.setdefault(township, []).append((sub, old, entry))
        for township, diffs in by_township.items():
            first = head(self.tx, township) + 1
            changes = [
                Change(first + i, "add", sub, new.pool, new.reason, new.action)
                if new is not None
                else Change(
                    first + i,
                    "remove",
                    sub,
                    old.pool if old else "",
                    self.why_removed[(township, sub)],
                    None,
                )
                for i, (sub, old, new) in enumerate(diffs)
            ]
            _store(self.tx, township, changes, {sub: new for sub, _old, new in diffs}, at)
            made[township] = (first, first + len(changes) - 1)
        return made


def _next(current: Entry | None, tube: Tube, result: PoolResult, sealed: float) -> Entry | None:
    """What one result makes of one member's entry (the table in the module's docstring)."""
    pooled = tube.mode != "single"
    if result is PoolResult.POSITIVE:
        if pooled:
            if current is None or current.reason.endswith("_invalid"):
                return Entry(tube.tube, "pool_positive", "single", sealed)
            return current
        if current is None or current.action != "isolate":
            return Entry(tube.tube, "single_positive", "isolate", sealed)
        return current
    if result is PoolResult.INVALID:
        if current is None:
            reason = "pool_invalid" if pooled else "single_invalid"
            return Entry(tube.tube, reason, "single", sealed)
        return current
    if (
        not pooled
        and current is not None
        and current.action == "single"
        and sealed > current.sealed_at
    ):
        return None
    return current


def _store(
    tx: Tx,
    township: str,
    changes: Sequence[Change],
    final: dict[str, Entry | None],
    at: float,
) -> None:
    tx.executemany(
        "INSERT INTO recall_changes(township, v, op, sub, pool, reason, action, at) "
        "VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
        [(township, c.v, c.op, c.sub, c.pool, c.reason, c.action, at) for c in changes],
    )
    version = {c.sub: c.v for c in changes}
    gone = [(township, sub) for sub, entry in final.items() if entry is None]
    if gone:
        tx.executemany("DELETE FROM recall_list WHERE township = %s AND sub = %s", gone)
    tx.executemany(
        "INSERT INTO recall_list(township, sub, pool, reason, action, sealed_at, v) "
        "VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT (township, sub) DO UPDATE SET "
        "pool = excluded.pool, reason = excluded.reason, action = excluded.action, "
        "sealed_at = excluded.sealed_at, v = excluded.v",
        [
            (township, sub, e.pool, e.reason, e.action, e.sealed_at, version[sub])
            for sub, e in final.items()
            if e is not None
        ],
    )


def head(reader: Tx | GatewayStore, township: str) -> int:
    """The township's latest recall version (0: no change yet)."""
    sql = "SELECT COALESCE(max(v), 0) FROM recall_changes WHERE township = %s"
    rows = (
        reader.execute(sql, (township,))
        if not isinstance(reader, GatewayStore)
        else (reader.query(sql, (township,)))
    )
    return int(rows[0][0])


def heads(store: GatewayStore) -> dict[str, int]:
    """Every township's latest recall version."""
    rows = store.query("SELECT township, max(v) FROM recall_changes GROUP BY township")
    return {str(t): int(v) for t, v in rows}


def changes_since(
    store: GatewayStore, township: str, after: int, limit: int = 100_000
) -> list[Change]:
    rows = store.query(
        "SELECT v, op, sub, pool, reason, action FROM recall_changes "
        "WHERE township = %s AND v > %s ORDER BY v LIMIT %s",
        (township, after, limit),
    )
    return [
        Change(int(v), str(op), str(sub), str(pool), str(reason), None if a is None else str(a))
        for v, op, sub, pool, reason, a in rows
    ]


def listed(store: GatewayStore, township: str) -> dict[str, Entry]:
    rows = store.query(
        "SELECT sub, pool, reason, action, sealed_at FROM recall_list WHERE township = %s",
        (township,),
    )
    return {str(s): Entry(str(p), str(r), str(a), float(t)) for s, p, r, a, t in rows}


def commands(
    township: str, changes: Sequence[Change], max_bytes: int = MAX_COMMAND_BYTES
) -> list[dict[str, Any]]:
    """``recall_update`` commands carrying ``changes`` (consecutive versions) in order, each
    within ``max_bytes`` of JSON."""
    out: list[dict[str, Any]] = []
    batch: list[dict[str, Any]] = []
    size = _COMMAND_OVERHEAD
    for change in changes:
        item = change.as_json()
        cost = len(json.dumps(item, ensure_ascii=False).encode()) + 2
        if batch and size + cost > max_bytes:
            out.append(_command(township, batch))
            batch, size = [], _COMMAND_OVERHEAD
        batch.append(item)
        size += cost
    if batch:
        out.append(_command(township, batch))
    return out


def _command(township: str, batch: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "id": str(uuid.uuid4()),
        "command": COMMAND,
        "args": {
            "township": township,
            "from": batch[0]["v"],
            "through": batch[-1]["v"],
            "changes": batch,
        },
    }
