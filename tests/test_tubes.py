"""The tube lifecycle through the Station: every transition and every rejection."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from edge_agent import outbox
from edge_agent.errors import StorageError
from kiosk_ui.core.barcodes import ScanKind
from kiosk_ui.core.rules import TubeMode
from kiosk_ui.errors import RuleViolation
from tests.support.contract import check_outbox, validate_event
from tests.support.station import Rig, open_station, resident

TUBE1, TUBE2, TUBE3 = "TB2026112300001", "TB2026112300002", "TB2026112300003"
BOX = "BX20261123A"


@pytest.fixture
def rig(tmp_path: Path):
    r = open_station(tmp_path, {"pool_size": 3})
    yield r
    check_outbox(r.station.db.conn)
    r.station.close()


def join(rig: Rig, sub: str, color: str = "green", t: list[float] | None = None):
    return rig.station.check_in(resident(sub, color), t or [36.5])


def types(events) -> list[str]:
    for e in events:
        validate_event(e)
    return [e["type"].removeprefix("sampling.") for e in events]


def violation(fn, *args, **kwargs) -> RuleViolation:
    with pytest.raises(RuleViolation) as info:
        fn(*args, **kwargs)
    v = info.value
    assert v.en and v.zh and v.en != v.zh
    return v


def outbox_len(rig: Rig) -> int:
    return int(rig.station.db.conn.execute("SELECT count(*) FROM outbox").fetchone()[0])


def test_tube_barcode_first_then_residents_join_in_order(rig: Rig) -> None:
    s = rig.station
    r = s.scan(TUBE1, "S07")
    assert r.kind is ScanKind.TUBE and r.tube is not None
    assert (r.tube.tube, r.tube.mode, r.tube.capacity, r.tube.state) == (TUBE1, "pool", 3, "open")
    assert types(r.events) == ["tube.opened"]
    assert r.events[0]["data"] == {"tube": TUBE1, "mode": "pool", "capacity": 3, "sampler": "S07"}
    a = join(rig, "a")
    b = join(rig, "b")
    assert (a.tube, a.position, a.capacity, a.waiting) == (TUBE1, 1, 3, False)
    assert (b.tube, b.position) == (TUBE1, 2)
    assert types(b.events) == ["checkin.recorded", "tube.member_added"]
    assert b.events[1]["data"] == {"tube": TUBE1, "resident": "b", "position": 2}
    assert b.events[0]["data"]["tube"] == TUBE1 and b.events[0]["data"]["position"] == 2
    open_ = s.open_tube()
    assert open_ is not None and open_.members == ("a", "b")


def test_full_tube_blocks_intake_until_sealed(rig: Rig) -> None:
    s = rig.station
    s.scan(TUBE1, "S07")
    for sub in "abc":
        join(rig, sub)
    d = join(rig, "d")
    assert (d.decision, d.tube, d.position, d.waiting, d.queue_place) == (
        "pool",
        None,
        None,
        True,
        1,
    )
    assert types(d.events) == ["checkin.recorded"]
    assert d.events[0]["data"]["waiting"] is True
    v = violation(s.scan, TUBE2, "S07")
    assert v.code == "tube_full"
    sealed = s.seal("S07")
    assert sealed.tube.state == "sealed" and sealed.tube.members == ("a", "b", "c")
    assert types(sealed.events) == ["tube.sealed"]
    assert sealed.events[0]["data"] == {
        "tube": TUBE1,
        "mode": "pool",
        "members": ["a", "b", "c"],
        "sampler": "S07",
        "capacity": 3,
    }
    nxt = s.scan(TUBE2, "S07")
    assert [(j.resident, j.position) for j in nxt.joined] == [("d", 1)]
    assert types(nxt.events) == ["tube.opened", "tube.member_added"]
    assert s.waiting() == []


def test_seal_a_partial_tube(rig: Rig) -> None:
    s = rig.station
    s.scan(TUBE1, "S07")
    join(rig, "a")
    r = s.seal("S07")
    assert r.tube.members == ("a",) and r.tube.state == "sealed"
    assert s.open_tube() is None


def test_seal_without_an_open_tube_or_empty_tube_is_refused(rig: Rig) -> None:
    s = rig.station
    assert violation(s.seal, "S07").code == "no_open_tube"
    s.scan(TUBE1, "S07")
    before = outbox_len(rig)
    assert violation(s.seal, "S07").code == "tube_empty"
    assert outbox_len(rig) == before


def test_residents_wait_while_no_tube_is_open_and_join_in_order(rig: Rig) -> None:
    s = rig.station
    results = [join(rig, sub) for sub in "pqrst"]
    assert [r.queue_place for r in results] == [1, 2, 3, 4, 5]
    assert all(r.waiting and r.decision == "pool" for r in results)
    assert [w.resident for w in s.waiting()] == list("pqrst")
    # the edge agent reports the queue length from agent_state
    assert outbox.read_state(s.db)["kiosk.queue_length"] == 5
    first = s.scan(TUBE1, "S07")
    assert outbox.read_state(s.db)["kiosk.queue_length"] == 2
    assert [(j.resident, j.position) for j in first.joined] == [("p", 1), ("q", 2), ("r", 3)]
    assert [w.resident for w in s.waiting()] == ["s", "t"]
    late = join(rig, "u")  # later arrivals queue behind the waiting ones
    assert late.waiting and late.queue_place == 3
    s.seal("S07")
    second = s.scan(TUBE2, "S07")
    assert [j.resident for j in second.joined] == ["s", "t", "u"]
    added = [e for e in second.events if e["type"] == "sampling.tube.member_added"]
    assert [e["data"]["from_queue"] for e in added] == [True, True, True]


def test_waiting_resident_showing_the_code_again_keeps_their_place(rig: Rig) -> None:
    s = rig.station
    join(rig, "a")
    join(rig, "b")
    again = join(rig, "a")
    assert again.repeated and again.waiting and again.queue_place == 1 and again.events == ()
    assert [w.resident for w in s.waiting()] == ["a", "b"]


def test_waiting_resident_with_a_new_decision_leaves_the_queue(rig: Rig) -> None:
    s = rig.station
    join(rig, "a")
    join(rig, "b")
    fever = s.check_in(resident("a"), [38.0, 38.4])
    assert fever.decision == "isolate" and not fever.waiting
    assert [w.resident for w in s.waiting()] == ["b"]


def test_remove_closes_up_positions_and_says_so(rig: Rig) -> None:
    s = rig.station
    s.scan(TUBE1, "S07")
    for sub in "abc":
        join(rig, sub)
    r = s.remove("a", "resident left before the swab", "S07")
    assert r is not None and r.tube.members == ("b", "c")
    assert types(r.events) == ["tube.member_removed"]
    assert r.events[0]["data"] == {
        "tube": TUBE1,
        "resident": "a",
        "reason": "resident left before the swab",
        "sampler": "S07",
        "position": 1,
        "members": ["b", "c"],
    }
    rows = s.db.conn.execute(
        "SELECT resident, position FROM tube_members WHERE tube = ? AND position IS NOT NULL "
        "ORDER BY position",
        (TUBE1,),
    ).fetchall()
    assert rows == [("b", 1), ("c", 2)]
    again = join(rig, "a")  # removed before sealing: free to join again
    assert (again.tube, again.position) == (TUBE1, 3)


def test_remove_from_a_full_tube_lets_the_first_waiting_resident_in(rig: Rig) -> None:
    s = rig.station
    s.scan(TUBE1, "S07")
    for sub in "abcde":
        join(rig, sub)
    r = s.remove("b", "wrong person", "S07")
    assert r is not None
    assert r.tube.members == ("a", "c", "d")
    assert [(j.resident, j.position) for j in r.joined] == [("d", 3)]
    assert types(r.events) == ["tube.member_removed", "tube.member_added"]
    assert [w.resident for w in s.waiting()] == ["e"]


def test_remove_a_waiting_resident(rig: Rig) -> None:
    s = rig.station
    join(rig, "a")
    join(rig, "b")
    assert s.remove("a", "went home", "S07") is None
    assert [w.resident for w in s.waiting()] == ["b"]
    last = s.db.conn.execute("SELECT payload FROM outbox ORDER BY seq DESC LIMIT 1").fetchone()
    validate_event(last[0])
    assert '"sampling.checkin.withdrawn"' in last[0]


def test_a_sealed_group_never_changes(rig: Rig) -> None:
    s = rig.station
    s.scan(TUBE1, "S07")
    join(rig, "a")
    join(rig, "b")
    s.seal("S07")
    assert violation(s.remove, "a", "mistake", "S07").code == "tube_sealed"
    assert violation(s.remove, "a", "mistake", "S07", tube=TUBE1).code == "tube_sealed"
    assert violation(s.seal, "S07", tube=TUBE1).code == "tube_sealed"
    # even a write that bypasses the station is stopped by the database
    conn = s.db.conn
    for sql in (
        "INSERT INTO tube_members(tube, joined, resident, position, added_at) "
        f"VALUES ('{TUBE1}', 3, 'x', 3, 0)",
        f"UPDATE tube_members SET position = 9 WHERE tube = '{TUBE1}'",
        f"DELETE FROM tube_members WHERE tube = '{TUBE1}'",
        f"UPDATE tubes SET state = 'open' WHERE tube = '{TUBE1}'",
        f"DELETE FROM tubes WHERE tube = '{TUBE1}'",
    ):
        with pytest.raises(sqlite3.IntegrityError):
            conn.execute(sql)
    t = s.tube(TUBE1)
    assert t is not None and t.members == ("a", "b") and t.state == "sealed"


def test_the_database_refuses_two_members_on_one_position(rig: Rig) -> None:
    s = rig.station
    s.scan(TUBE1, "S07")
    join(rig, "a")
    join(rig, "b")
    conn = s.db.conn
    with pytest.raises(sqlite3.IntegrityError, match="position in the tube is taken"):
        conn.execute(
            "INSERT INTO tube_members(tube, joined, resident, position, added_at) "
            f"VALUES ('{TUBE1}', 9, 'x', 2, 0)"
        )
    with pytest.raises(sqlite3.IntegrityError, match="position in the tube is taken"):
        conn.execute(f"UPDATE tube_members SET position = 1 WHERE tube = '{TUBE1}' AND joined = 2")
    t = s.tube(TUBE1)
    assert t is not None and t.members == ("a", "b")


def test_void_frees_the_members_to_join_again(rig: Rig) -> None:
    s = rig.station
    s.scan(TUBE1, "S07")
    join(rig, "a")
    join(rig, "b")
    refused = join(rig, "a")
    assert (refused.decision, refused.reason) == ("refer", "already_sampled")
    r = s.void("tube dropped", "S07")
    assert r.tube.state == "voided"
    assert types(r.events) == ["tube.voided"]
    assert r.events[0]["data"]["members"] == ["a", "b"]
    assert r.events[0]["data"]["reason"] == "tube dropped"
    s.scan(TUBE2, "S07")
    back = join(rig, "a")
    assert (back.decision, back.tube, back.position) == ("pool", TUBE2, 1)


def test_void_a_sealed_tube_but_not_a_dispatched_one(rig: Rig) -> None:
    s = rig.station
    s.scan(TUBE1, "S07")
    join(rig, "a")
    s.seal("S07")
    r = s.void("label smeared", "S07", tube=TUBE1)
    assert r.tube.state == "voided" and r.events[0]["data"]["was"] == "sealed"
    s.scan(TUBE2, "S07")
    join(rig, "b")
    s.seal("S07")
    s.dispatch(BOX, "S07")
    assert violation(s.void, "late", "S07", tube=TUBE2).code == "tube_dispatched"
    assert violation(s.void, "late", "S07", tube=TUBE1).code == "tube_voided"
    assert violation(s.void, "late", "S07", tube="TB999999").code == "unknown_tube"
    assert violation(s.void, "late", "S07").code == "no_open_tube"


def test_void_needs_a_reason(rig: Rig) -> None:
    rig.station.scan(TUBE1, "S07")
    assert violation(rig.station.void, "  ", "S07").code == "bad_reason"
    assert violation(rig.station.seal, "").code == "bad_sampler"


def test_single_sample_tubes_for_yellow_codes(rig: Rig) -> None:
    s = rig.station
    y1 = join(rig, "y1", "yellow")
    y2 = join(rig, "y2", "yellow")
    assert (y1.decision, y1.lane, y1.waiting, y1.queue_place) == ("single", "single", True, 1)
    assert y2.queue_place == 2
    s.scan(TUBE1, "S07")  # a pooled tube does not take yellow residents
    assert s.open_tube().members == ()
    r = s.scan(TUBE2, "S09", mode=TubeMode.SINGLE)
    assert r.tube is not None and (r.tube.mode, r.tube.capacity, r.tube.members) == (
        "single",
        1,
        ("y1",),
    )
    assert violation(s.scan, TUBE3, "S09", mode="single").code == "tube_full"
    sealed = s.seal("S09", tube=TUBE2)
    assert sealed.events[0]["data"]["mode"] == "single"
    nxt = s.scan(TUBE3, "S09", mode="single")
    assert [j.resident for j in nxt.joined] == ["y2"]
    g = join(rig, "g1")
    assert g.tube == TUBE1  # the pooled tube stayed open beside the single one


def test_a_tube_barcode_is_never_used_twice(rig: Rig) -> None:
    s = rig.station
    s.scan(TUBE1, "S07")
    assert violation(s.scan, TUBE1, "S07").code == "tube_already_used"
    join(rig, "a")
    s.seal("S07")
    assert violation(s.scan, TUBE1, "S07").code == "tube_already_used"
    assert violation(s.scan, TUBE1, "S07", mode="single").code == "tube_already_used"
    s.scan(TUBE2, "S07")
    s.void("broken", "S07")
    assert violation(s.scan, TUBE2, "S07").code == "tube_already_used"


def test_tube_while_another_is_open_is_refused(rig: Rig) -> None:
    s = rig.station
    s.scan(TUBE1, "S07")
    join(rig, "a")
    v = violation(s.scan, TUBE2, "S07")
    assert v.code == "tube_still_open" and TUBE1 in v.en and TUBE1 in v.zh


def test_resident_code_on_the_tube_scanner_is_refused(rig: Rig) -> None:
    before = outbox_len(rig)
    v = violation(rig.station.scan, "HC1:6BFOXN*TS0BI$ZD4N9:9S6RCVN5+O30K3/XIV0W23", "S07")
    assert v.code == "resident_code_on_scanner"
    assert "tube barcode" in v.en and "试管条码" in v.zh
    assert outbox_len(rig) == before


def test_tube_barcode_on_the_camera_is_refused(rig: Rig) -> None:
    v = violation(rig.station.verify, TUBE1)
    assert v.code == "tube_barcode_on_camera" and "health code" in v.en and "健康码" in v.zh
    assert violation(rig.station.verify, BOX).code == "box_barcode_on_camera"


@pytest.mark.parametrize("text", ["hello", "TB12", "tb2026112300001", "", "TB" + "9" * 40])
def test_unknown_barcodes_are_refused(rig: Rig, text: str) -> None:
    assert violation(rig.station.scan, text, "S07").code == "unknown_barcode"


def test_scanner_line_ends_are_ignored(rig: Rig) -> None:
    r = rig.station.scan(f"  {TUBE1}\r\n", "S07")
    assert r.tube is not None and r.tube.tube == TUBE1


def test_dispatch_sealed_tubes_in_a_box(rig: Rig) -> None:
    s = rig.station
    s.scan(TUBE1, "S07")
    join(rig, "a")
    s.seal("S07")
    s.scan(TUBE2, "S07")
    join(rig, "b")
    s.seal("S07")
    s.scan(TUBE3, "S07")
    join(rig, "c")  # open, stays behind
    sel = s.scan(BOX, "S07")
    assert (sel.kind, sel.box, sel.ready, sel.events) == (ScanKind.BOX, BOX, (TUBE1, TUBE2), ())
    d = s.dispatch(BOX, "S07")
    assert d.tubes == (TUBE1, TUBE2)
    assert types(d.events) == ["box.dispatched"]
    assert d.events[0]["data"] == {"box": BOX, "tubes": [TUBE1, TUBE2], "sampler": "S07"}
    assert [s.tube(t).state for t in (TUBE1, TUBE2, TUBE3)] == ["dispatched", "dispatched", "open"]
    assert violation(s.scan, BOX, "S07").code == "box_already_used"
    assert violation(s.dispatch, BOX, "S07").code == "box_already_used"


def test_dispatch_chosen_tubes_and_refusals(rig: Rig) -> None:
    s = rig.station
    assert violation(s.dispatch, BOX, "S07").code == "nothing_to_dispatch"
    s.scan(TUBE1, "S07")
    join(rig, "a")
    s.seal("S07")
    s.scan(TUBE2, "S07")
    join(rig, "b")
    assert violation(s.dispatch, BOX, "S07", tubes=[TUBE2]).code == "tube_open"
    assert violation(s.dispatch, BOX, "S07", tubes=["TB000000"]).code == "unknown_tube"
    assert violation(s.dispatch, TUBE1, "S07").code == "not_a_box"
    assert violation(s.dispatch, "HC1:XYZ", "S07").code == "resident_code_on_scanner"
    d = s.dispatch(BOX, "S07", tubes=[TUBE1])
    assert d.tubes == (TUBE1,)


def test_pool_size_override_applies_to_the_next_tube(rig: Rig) -> None:
    s = rig.station
    s.scan(TUBE1, "S07")
    s.db.conn.execute(
        "INSERT INTO settings_override(key, value, updated_at, origin) "
        "VALUES ('sampling.pool_size', '5', 0, 'command:test')"
    )
    assert s.open_tube().capacity == 3
    join(rig, "a")
    s.seal("S07")
    assert s.scan(TUBE2, "S07").tube.capacity == 5


def test_a_failed_write_leaves_the_tube_as_it_was(rig: Rig) -> None:
    s = rig.station
    s.scan(TUBE1, "S07")
    join(rig, "a")
    before = outbox_len(rig)
    # a reader holding the write lock past the busy timeout makes the write fail
    other = sqlite3.connect(rig.config.storage.path, isolation_level=None, timeout=0)
    other.execute("BEGIN IMMEDIATE")
    s.db.conn.execute("PRAGMA busy_timeout = 50")
    try:
        with pytest.raises(StorageError):
            s.seal("S07")
    finally:
        other.execute("ROLLBACK")
        other.close()
    t = s.open_tube()
    assert t is not None and t.state == "open" and t.members == ("a",)
    assert outbox_len(rig) == before


def test_yellow_joining_an_open_single_tube_is_told_by_member_added(rig: Rig) -> None:
    s = rig.station
    s.scan(TUBE1, "S09", mode="single")
    y = join(rig, "y1", "yellow")
    assert (y.decision, y.tube, y.position, y.capacity, y.waiting) == ("single", TUBE1, 1, 1, False)
    assert types(y.events) == ["checkin.recorded", "tube.member_added"]
    recorded, added = (e["data"] for e in y.events)
    assert (recorded["tube"], recorded["position"], recorded["waiting"]) == (None, None, False)
    assert added == {"tube": TUBE1, "resident": "y1", "position": 1}
    nxt = join(rig, "y2", "yellow")
    assert nxt.waiting and nxt.queue_place == 1
