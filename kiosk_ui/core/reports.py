"""The station's figures: the SQL behind the sampler panel's counters and ``station db``.

Read only, like ``kiosk_ui.core.views`` that calls it; every other statement on the kiosk's
tables is in ``kiosk_ui.core.store``.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any, NamedTuple

# The check-ins of day ?1: the rows from that day's first id on that carry the day (a clock
# set back can interleave days; the day column decides). No day row means no check-in.
DAY_CHECKINS = (
    "FROM checkins WHERE id >= coalesce((SELECT first_checkin FROM checkin_days "
    "WHERE day = ?1), (SELECT max(id) + 1 FROM checkins), 0) AND day = ?1"
)


def counts_by(conn: sqlite3.Connection, sql: str, args: Sequence[Any]) -> dict[str, int]:
    return {str(k): int(n) for k, n in conn.execute(sql, tuple(args)).fetchall()}


def member_names(conn: sqlite3.Connection, members: Sequence[str]) -> list[str]:
    """The masked names of residents as their latest check-ins recorded them ("" if none)."""
    names: list[str] = []
    for sub in members:
        row = conn.execute(
            "SELECT name FROM checkins WHERE resident = ? ORDER BY id DESC LIMIT 1", (sub,)
        ).fetchone()
        names.append(str(row[0]) if row is not None and row[0] else "")
    return names


class DayCounts(NamedTuple):
    """One local day's figures: check-ins by decision and lane, tubes closed, boxes."""

    by_decision: dict[str, int]
    by_lane: dict[str, int]
    tubes_sealed: int
    tubes_voided: int
    residents_sealed: int
    boxes_dispatched: int


def day_counts(conn: sqlite3.Connection, day: str) -> DayCounts:
    by_decision = counts_by(conn, f"SELECT decision, count(*) {DAY_CHECKINS} GROUP BY 1", [day])
    by_lane = counts_by(conn, f"SELECT lane, count(*) {DAY_CHECKINS} GROUP BY 1", [day])
    closed = counts_by(
        conn,
        "SELECT CASE WHEN state = 'voided' THEN 'voided' ELSE 'sealed' END, count(*) "
        "FROM tubes WHERE closed_day = ? GROUP BY 1",
        [day],
    )
    residents = conn.execute(
        "SELECT count(*) FROM tube_members m JOIN tubes t ON t.tube = m.tube "
        "WHERE t.closed_day = ? AND t.state IN ('sealed', 'dispatched') "
        "AND m.position IS NOT NULL",
        (day,),
    ).fetchone()[0]
    boxes = conn.execute("SELECT count(*) FROM boxes WHERE day = ?", (day,)).fetchone()[0]
    return DayCounts(
        by_decision=by_decision,
        by_lane=by_lane,
        tubes_sealed=closed.get("sealed", 0),
        tubes_voided=closed.get("voided", 0),
        residents_sealed=int(residents),
        boxes_dispatched=int(boxes),
    )
