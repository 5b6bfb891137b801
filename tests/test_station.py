"""Check-ins through the Station: every row of the decision table, written with its events."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from edge_agent import outbox
from kiosk_ui.core.station import Station
from kiosk_ui.errors import RuleViolation
from tests.support.contract import check_outbox, validate_event
from tests.support.station import Rig, open_station, rejected, resident

TUBE1, TUBE2 = "TB2026112300001", "TB2026112300002"


@pytest.fixture
def rig(tmp_path: Path):
    r = open_station(tmp_path, {"pool_size": 10})
    r.station.scan(TUBE1, "S07")
    yield r
    check_outbox(r.station.db.conn)
    r.station.close()


def stored(rig: Rig, checkin_id: int) -> dict[str, object]:
    conn = rig.station.db.conn
    cur = conn.execute("SELECT * FROM checkins WHERE id = ?", (checkin_id,))
    names = [d[0] for d in cur.description]
    return dict(zip(names, cur.fetchone(), strict=True))


def data_of(result, type_: str) -> dict[str, object]:
    found = [e for e in result.events if e["type"] == type_]
    assert len(found) == 1
    validate_event(found[0])
    return found[0]["data"]


@pytest.mark.parametrize("reason", ["not_a_code", "bad_signature", "expired", "unknown_key"])
def test_rejected_code_is_referred_and_joins_nothing(rig: Rig, reason: str) -> None:
    r = rig.station.check_in(rejected(reason), [36.5])
    assert (r.decision, r.lane, r.reason, r.tube, r.resident, r.alert) == (
        "refer",
        "staff",
        reason,
        None,
        None,
        None,
    )
    assert [e["type"] for e in r.events] == ["sampling.checkin.recorded"]
    assert data_of(r, "sampling.checkin.recorded") == {
        "resident": None,
        "color": None,
        "temperature_c": None,
        "decision": "refer",
        "reason": reason,
        "lane": "staff",
        "tube": None,
        "position": None,
        "waiting": False,
        "cat": [],
        "readings": [],
        "via": "code",
    }
    assert rig.station.open_tube().members == ()


def test_red_code_isolates_and_raises_an_alert_without_measuring(rig: Rig) -> None:
    v = resident("red1", "red", name="王五")
    assert rig.station.needs_temperature(v) is False
    r = rig.station.check_in(v)
    assert (r.decision, r.lane, r.reason, r.alert, r.tube) == (
        "isolate",
        "isolation",
        "red_code",
        "red_code",
        None,
    )
    assert [e["type"] for e in r.events] == ["sampling.checkin.recorded", "sampling.alert.raised"]
    alert = data_of(r, "sampling.alert.raised")
    assert (alert["kind"], alert["resident"]) == ("red_code", "red1")
    assert rig.station.open_tube().members == ()


def test_fever_twice_isolates_with_an_alert(rig: Rig) -> None:
    r = rig.station.check_in(resident("f1"), [37.6, 38.1])
    assert (r.decision, r.lane, r.reason, r.temperature_c, r.alert) == (
        "isolate",
        "isolation",
        "fever",
        38.1,
        "fever",
    )
    rec = data_of(r, "sampling.checkin.recorded")
    assert (rec["temperature_c"], rec["readings"]) == (38.1, [37.6, 38.1])
    alert = data_of(r, "sampling.alert.raised")
    assert (alert["kind"], alert["resident"], alert["temperature_c"]) == ("fever", "f1", 38.1)


def test_fever_then_normal_joins_with_the_second_reading(rig: Rig) -> None:
    r = rig.station.check_in(resident("f2"), [37.6, 36.9])
    assert (r.decision, r.lane, r.temperature_c, r.tube, r.position) == (
        "pool",
        "main",
        36.9,
        TUBE1,
        1,
    )
    assert r.alert is None


def test_implausible_readings_are_referred(rig: Rig) -> None:
    r = rig.station.check_in(resident("i1"), [12.0, 50.0, 30.0])
    assert (r.decision, r.lane, r.reason, r.temperature_c) == (
        "refer",
        "staff",
        "implausible_temperature",
        None,
    )
    assert data_of(r, "sampling.checkin.recorded")["readings"] == [12.0, 50.0, 30.0]


def test_too_few_readings_write_nothing(rig: Rig) -> None:
    conn = rig.station.db.conn
    before = conn.execute("SELECT count(*) FROM outbox").fetchone()[0]
    for rs in ([], [37.5], [10.0, 11.0]):
        assert rig.station.assess(rs).need_reading
        with pytest.raises(RuleViolation) as info:
            rig.station.check_in(resident("n1"), rs)
        assert info.value.code == "temperature_needed"
    assert conn.execute("SELECT count(*) FROM outbox").fetchone()[0] == before
    assert conn.execute("SELECT count(*) FROM checkins").fetchone()[0] == 0


def test_already_sampled_within_the_window_is_referred(rig: Rig) -> None:
    s = rig.station
    s.check_in(resident("a"), [36.5])
    s.seal("S07")
    rig.clock.advance(11.9 * 3600)
    again = s.check_in(resident("a"), [36.5])
    assert (again.decision, again.lane, again.reason, again.tube) == (
        "refer",
        "staff",
        "already_sampled",
        None,
    )
    rig.clock.advance(0.2 * 3600)  # past the 12 h window
    s.scan(TUBE2, "S07")
    later = s.check_in(resident("a"), [36.5])
    assert (later.decision, later.tube, later.position) == ("pool", TUBE2, 1)


def test_already_in_the_open_tube_is_referred_even_with_a_zero_window(tmp_path: Path) -> None:
    rig = open_station(tmp_path, {"resample_window_h": 0})
    rig.station.scan(TUBE1, "S07")
    rig.station.check_in(resident("a"), [36.5])
    again = rig.station.check_in(resident("a"), [36.5])
    assert again.reason == "already_sampled"
    rig.station.close()


def test_yellow_goes_to_the_single_desk(rig: Rig) -> None:
    r = rig.station.check_in(resident("y1", "yellow"), [36.5])
    assert (r.decision, r.lane, r.reason, r.tube, r.waiting) == (
        "single",
        "single",
        None,
        None,
        True,
    )
    assert rig.station.open_tube().members == ()


def test_green_with_a_priority_group_takes_the_green_lane(rig: Rig) -> None:
    r = rig.station.check_in(resident("g1", cat=["elderly"]), [36.5])
    assert (r.decision, r.lane, r.tube, r.position) == ("pool", "green", TUBE1, 1)
    assert data_of(r, "sampling.checkin.recorded")["cat"] == ["elderly"]


def test_green_joins_the_main_lane_and_shows_only_a_masked_name(rig: Rig) -> None:
    r = rig.station.check_in(resident("g2", name="李小龙"), [36.5])
    assert (r.decision, r.lane, r.reason, r.name) == ("pool", "main", None, "李**")
    rec = data_of(r, "sampling.checkin.recorded")
    assert "李小龙" not in json.dumps(rec, ensure_ascii=False)
    assert stored(rig, r.checkin_id)["name"] == "李**"


def test_a_reading_that_is_not_a_number_is_kept_as_null_in_valid_json(rig: Rig) -> None:
    r = rig.station.check_in(resident("nan"), [float("nan"), float("inf"), 36.6])
    assert (r.decision, r.temperature_c) == ("pool", 36.6)
    (payload,) = rig.station.db.conn.execute(
        "SELECT payload FROM outbox WHERE seq = ?", (r.events[0]["seq"],)
    ).fetchone()
    assert "NaN" not in payload and "Infinity" not in payload
    event = json.loads(payload)
    validate_event(event)
    assert event["data"]["readings"] == [None, None, 36.6]


def test_fever_threshold_override_applies_to_the_next_resident(rig: Rig) -> None:
    s = rig.station
    assert s.check_in(resident("a"), [37.5, 37.5]).decision == "isolate"
    s.db.conn.execute(
        "INSERT INTO settings_override(key, value, updated_at, origin) "
        "VALUES ('sampling.fever_threshold_c', '37.8', 0, 'command:c1')"
    )
    assert s.thresholds().fever_threshold_c == 37.8
    assert s.check_in(resident("b"), [37.5]).decision == "pool"


def test_resample_window_override(rig: Rig) -> None:
    s = rig.station
    s.check_in(resident("a"), [36.5])
    s.seal("S07")
    s.scan(TUBE2, "S07")
    rig.clock.advance(3 * 3600)
    s.db.conn.execute(
        "INSERT INTO settings_override(key, value, updated_at, origin) "
        "VALUES ('sampling.resample_window_h', '2', 0, 'command:c1')"
    )
    assert s.check_in(resident("a"), [36.5]).decision == "pool"


def test_inconsistent_overrides_fall_back_to_the_file(rig: Rig) -> None:
    rig.station.db.conn.execute(
        "INSERT INTO settings_override(key, value, updated_at, origin) "
        "VALUES ('sampling.fever_threshold_c', '45', 0, 'command:c1')"
    )
    assert rig.station.thresholds().fever_threshold_c == 37.3


def test_manual_check_in_by_staff(rig: Rig) -> None:
    r = rig.station.check_in_manual(
        "m-0001", "green", staff="desk-2", readings=[36.7], name="赵六", cat=["disabled"]
    )
    assert (r.decision, r.lane, r.tube, r.position, r.name) == ("pool", "green", TUBE1, 1, "赵*")
    rec = data_of(r, "sampling.checkin.recorded")
    assert (rec["via"], rec["staff"], rec["resident"]) == ("manual", "desk-2", "m-0001")
    for args, code in [
        (("", "green"), "bad_resident_id"),
        (("m-2", "blue"), "bad_color"),
    ]:
        with pytest.raises(RuleViolation) as info:
            rig.station.check_in_manual(*args, staff="desk-2", readings=[36.5])
        assert info.value.code == code
    with pytest.raises(RuleViolation) as info:
        rig.station.check_in_manual("m-3", "green", staff="d", readings=[36.5], cat=["vip"])
    assert info.value.code == "bad_category"


def test_counters_of_today(rig: Rig) -> None:
    s = rig.station
    s.check_in(resident("a"), [36.5])
    s.check_in(resident("b", cat=["child"]), [36.5])
    s.check_in(resident("c", "yellow"), [36.5])
    s.check_in(resident("d", "red"))
    s.check_in(rejected("expired"))
    s.seal("S07")
    c = s.counters()
    assert c.checkins == 5
    assert c.by_decision == {"pool": 2, "single": 1, "isolate": 1, "refer": 1}
    assert c.by_lane == {"main": 1, "green": 1, "single": 1, "isolation": 1, "staff": 1}
    assert (c.tubes_sealed, c.residents_sealed, c.waiting_single, c.open_pool_members) == (
        1,
        2,
        1,
        None,
    )
    assert c.outbox_pending == len(check_outbox(s.db.conn))
    rig.clock.advance(24 * 3600)
    assert s.counters().checkins == 0


def test_a_clock_set_back_never_records_before_the_newest_fact(rig: Rig) -> None:
    s = rig.station
    s.check_in(resident("d1-a", "red"))
    rig.clock.advance(24 * 3600)
    for sub in ("d2-a", "d2-b"):
        s.check_in(resident(sub, "red"))
    floor = rig.clock()
    rig.clock.advance(-24 * 3600)  # the clock went a day back (a Pi booted on a saved time)
    late = s.check_in(resident("d2-c", "red"))
    # recorded at the floor, on the newest fact's day, not the day before
    assert late.events[0]["time"] == outbox.rfc3339(floor)
    assert s.counters().checkins == 3
    rig.clock.advance(24 * 3600)
    s.check_in(resident("d2-d", "red"))
    assert s.counters().by_decision == {"isolate": 4}
    # a station restarted on a clock gone back reads its floor from the database
    s.close()
    rig.clock.advance(-24 * 3600)
    again = rig.station = Station.open(rig.config, clock=rig.clock)
    assert again.ledger.floor == floor
    again.check_in(resident("d2-e", "red"))
    assert again.counters().checkins == 5
    ats = [r[0] for r in again.db.conn.execute("SELECT at FROM checkins ORDER BY id")]
    assert ats == sorted(ats) and len(ats) == 6
    rig.clock.advance(48 * 3600)
    assert again.counters().checkins == 0
    days = again.db.conn.execute("SELECT day FROM checkin_days ORDER BY day").fetchall()
    assert len(days) == 2


def test_every_event_keeps_the_contract_and_seq_runs_without_gaps(rig: Rig) -> None:
    s = rig.station
    for i in range(25):
        s.check_in(resident(f"r{i}", ["green", "yellow", "red"][i % 3]), [36.5])
    s.seal("S07")
    events = check_outbox(s.db.conn)
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert len({e["id"] for e in events}) == len(events)
    assert {e["source"] for e in events} == {"urn:sampling:T01:K03"}


def test_state_survives_reopening_the_file(tmp_path: Path) -> None:
    rig = open_station(tmp_path, {"pool_size": 2})
    rig.station.scan(TUBE1, "S07")
    rig.station.check_in(resident("a"), [36.5])
    rig.station.check_in(resident("b"), [36.5])
    rig.station.check_in(resident("c"), [36.5])
    rig.station.close()
    again = Station.open(rig.config, clock=rig.clock)
    assert again.open_tube().members == ("a", "b")
    assert [w.resident for w in again.waiting()] == ["c"]
    assert again.check_in(resident("d"), [36.5]).queue_place == 2
    again.close()


def test_two_threads_share_one_station(rig: Rig) -> None:
    """The screen thread checks residents in while the scanner thread opens and seals tubes."""
    s = rig.station
    errors: list[BaseException] = []
    stop = threading.Event()

    def sampler() -> None:
        n = 2
        try:
            while not stop.is_set():
                t = s.open_tube()
                if t is not None and t.full:
                    s.seal("S07")
                    n += 1
                    s.scan(f"TB20261123{n:05d}", "S07")
                stop.wait(0.001)
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=sampler, name="test-sampler")
    thread.start()
    try:
        for i in range(60):
            s.check_in(resident(f"t{i:03d}"), [36.5])
    finally:
        stop.set()
        thread.join(timeout=10)
    assert not thread.is_alive() and errors == []
    events = check_outbox(s.db.conn)
    joined = [e for e in events if e["type"] == "sampling.tube.member_added"]
    assert sorted(e["data"]["resident"] for e in joined) + [
        w.resident for w in s.waiting()
    ] == sorted(f"t{i:03d}" for i in range(60))
