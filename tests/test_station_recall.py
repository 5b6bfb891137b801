"""The recall list on a station: chunks applied once and in order, gaps and strangers refused
with nothing changed, and a 100,000-entry list read in one lookup."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from edge_agent import recall_list
from edge_agent.db import Database, open_db
from edge_agent.errors import CommandError
from edge_agent.gateway import recall
from edge_agent.recall_list import Recall, RecallGap


@pytest.fixture
def db(tmp_path: Path) -> Database:
    d = open_db(tmp_path / "station.db")
    recall_list.install(d)
    return d


def chunk(first: int, last: int, township: str = "T01", **extra: Any) -> dict[str, Any]:
    changes = [
        recall.Change(v, "add", f"sub-{v}", f"TB{v:06d}", "pool_positive", "single").as_json()
        for v in range(first, last + 1)
    ]
    return {"township": township, "from": first, "through": last, "changes": changes, **extra}


def listed(db: Database) -> dict[str, tuple[str, str, str]]:
    rows = db.conn.execute("SELECT sub, pool, reason, action FROM recall_list").fetchall()
    return {r[0]: (r[1], r[2], r[3]) for r in rows}


def test_chunks_apply_in_order_and_a_repeat_changes_nothing(db: Database) -> None:
    assert recall_list.apply(db, "T01", chunk(1, 5), 1.0) == {"recall_version": 5, "applied": 5}
    assert recall_list.apply(db, "T01", chunk(1, 5), 2.0) == {"recall_version": 5, "applied": 0}
    # Overlapping: 4 and 5 are held, 6..8 are new.
    assert recall_list.apply(db, "T01", chunk(4, 8), 3.0) == {"recall_version": 8, "applied": 3}
    removal = {"v": 9, "op": "remove", "sub": "sub-2", "pool": "TB000002", "reason": "corrected"}
    got = recall_list.apply(
        db, "T01", {"township": "T01", "from": 9, "through": 9, "changes": [removal]}, 4.0
    )
    assert got == {"recall_version": 9, "applied": 1}
    assert sorted(listed(db)) == sorted(f"sub-{v}" for v in (1, 3, 4, 5, 6, 7, 8))
    assert recall_list.version(db.conn) == 9
    assert recall_list.lookup(db.conn, "sub-3") == Recall("TB000003", "pool_positive", "single")
    assert recall_list.lookup(db.conn, "sub-2") is None


def test_a_gap_is_refused_naming_the_version_held(db: Database) -> None:
    recall_list.apply(db, "T01", chunk(1, 3), 1.0)
    with pytest.raises(RecallGap, match="this station holds version 3; send from 4") as caught:
        recall_list.apply(db, "T01", chunk(5, 9), 2.0)
    assert caught.value.version == 3
    assert recall_list.version(db.conn) == 3
    assert len(listed(db)) == 3


def test_another_township_or_a_broken_sequence_is_refused_whole(
    db: Database,
) -> None:
    with pytest.raises(CommandError, match="this station belongs to T01, not T02"):
        recall_list.apply(db, "T01", chunk(1, 3, township="T02"), 1.0)
    broken = chunk(1, 3)
    broken["changes"] = broken["changes"][::-1]
    with pytest.raises(CommandError, match="must be the changes 1 to 3, each once and in order"):
        recall_list.apply(db, "T01", broken, 1.0)
    short = chunk(1, 3)
    short["through"] = 4
    with pytest.raises(CommandError, match="must be the changes 1 to 4"):
        recall_list.apply(db, "T01", short, 1.0)
    bare = chunk(1, 1)
    del bare["changes"][0]["action"]
    with pytest.raises(CommandError, match="change 1 adds without an action"):
        recall_list.apply(db, "T01", bare, 1.0)
    assert (recall_list.version(db.conn), listed(db)) == (0, {})


def test_a_list_of_100000_is_applied_and_read_in_one_lookup(db: Database) -> None:
    changes = [
        recall.Change(v, "add", f"sub-{v:06d}", f"TB{v:08d}", "pool_positive", "single")
        for v in range(1, 100_001)
    ]
    started = time.perf_counter()
    for command in recall.commands("T01", changes):
        recall_list.apply(db, "T01", command["args"], 1.0)
    applied_s = time.perf_counter() - started
    assert recall_list.version(db.conn) == 100_000
    assert db.conn.execute("SELECT count(*) FROM recall_list").fetchone()[0] == 100_000
    plan = db.conn.execute(
        "EXPLAIN QUERY PLAN SELECT pool, reason, action FROM recall_list WHERE sub = ?", ("x",)
    ).fetchall()
    assert "USING PRIMARY KEY (sub=?)" in plan[0][3]
    assert recall_list.lookup(db.conn, "sub-054321") == Recall(
        "TB00054321", "pool_positive", "single"
    )
    assert applied_s < 120  # about 900 chunks, one transaction each (slack for a shared CI)
