"""The recall list on a station: chunks applied once and in order, gaps and strangers refused
with nothing changed, and a 100,000-entry list read in one lookup."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from edge_agent import recall_list
from edge_agent.db import Database, open_db, write_transaction
from edge_agent.errors import CommandError
from edge_agent.gateway import recall
from edge_agent.recall_list import Recall, RecallGap
from tests.support.contract import validate_event
from tests.support.station import Rig, open_station, resident


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


# --- at the kiosk: the decision table's recall rows -------------------------------------------

TUBE = "TB2026120300001"


def recall_on(rig: Rig, *entries: tuple[str, str, str]) -> None:
    """Apply recall changes (sub, reason, action) to the station, as its agent would."""
    held = recall_list.version(rig.station.db.conn)
    changes = [
        {"v": held + i, "op": "add", "sub": sub, "pool": TUBE, "reason": why, "action": act}
        for i, (sub, why, act) in enumerate(entries, 1)
    ]
    args = {"township": "T01", "from": held + 1, "through": held + len(changes)}
    recall_list.apply(rig.station.db, "T01", {**args, "changes": changes}, rig.clock())


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    r = open_station(tmp_path)
    yield r
    r.station.close()


def test_a_recalled_resident_goes_to_the_single_desk_and_the_event_says_why(rig: Rig) -> None:
    recall_on(rig, ("r1", "pool_positive", "single"), ("r2", "pool_invalid", "single"))
    rig.station.scan(TUBE.replace("1", "9"), "S07")  # a pooled tube is open: not for them
    got = rig.station.check_in(resident("r1"), [36.5])
    assert (got.decision, got.lane, got.reason, got.tube, got.waiting) == (
        "single",
        "single",
        "pool_positive",
        None,
        True,
    )
    recorded = got.events[0]
    assert (recorded["type"], recorded["data"]["reason"]) == (
        "sampling.checkin.recorded",
        "pool_positive",
    )
    validate_event(dict(recorded))
    assert rig.station.check_in(resident("r2"), [36.5]).reason == "pool_invalid"
    assert rig.station.check_in(resident("r3"), [36.5]).decision == "pool"  # not recalled


def test_a_recall_to_isolation_and_the_rows_above_it(rig: Rig) -> None:
    recall_on(rig, ("r1", "single_positive", "isolate"), ("r2", "pool_positive", "single"))
    got = rig.station.check_in(resident("r1"), [36.5])
    assert (got.decision, got.lane, got.reason, got.tube) == (
        "isolate",
        "isolation",
        "single_positive",
        None,
    )
    assert got.alert is None  # not a fever, not a red code: the recall is the gateway's fact
    assert rig.station.check_in(resident("r2", "red"), []).reason == "red_code"
    assert rig.station.check_in(resident("r2"), [38.0, 38.1]).reason == "fever"


def test_recall_comes_before_already_sampled(rig: Rig) -> None:
    rig.station.scan(TUBE, "S07")
    assert rig.station.check_in(resident("r1"), [36.5]).decision == "pool"
    rig.station.seal("S07")
    assert rig.station.check_in(resident("r1"), [36.5]).reason == "already_sampled"
    recall_on(rig, ("r1", "pool_positive", "single"))
    got = rig.station.check_in(resident("r1"), [36.5])
    assert (got.decision, got.reason) == ("single", "pool_positive")


def test_a_check_in_against_a_list_of_100000_decides_as_fast(rig: Rig) -> None:
    with write_transaction(rig.station.db) as conn:
        conn.executemany(
            "INSERT INTO recall_list(sub, pool, reason, action, v, at) "
            "VALUES (?, ?, 'pool_positive', 'single', ?, 0)",
            ((f"recalled-{v:06d}", f"TB{v:08d}", v) for v in range(1, 100_001)),
        )
        conn.execute("UPDATE recall_state SET township = 'T01', version = 100000 WHERE id = 1")
    rig.station.scan(TUBE, "S07")
    started = time.perf_counter()
    hit = rig.station.check_in(resident("recalled-054321"), [36.5])
    miss = rig.station.check_in(resident("walk-in"), [36.5])
    took = time.perf_counter() - started
    assert (hit.decision, hit.reason) == ("single", "pool_positive")
    assert (miss.decision, miss.tube, miss.position) == ("pool", TUBE, 1)
    assert took < 1.0  # two durable check-ins; the lookup itself is one B-tree descent
