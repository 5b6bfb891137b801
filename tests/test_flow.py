"""The kiosk's resident flow on the real Station (SQLite file) and the real lane lights
(gpiozero's MockFactory), without Kivy."""

from __future__ import annotations

import contextlib
import json
import sqlite3
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge_agent import recall_list
from firmware.errors import ConfigError
from firmware.hardware import build_lights
from firmware.lights import LaneLights, plan
from kiosk_ui.core import national_id
from kiosk_ui.core.flow import (
    TRANSITIONS,
    FaultKind,
    KioskFlow,
    State,
    View,
    light_for,
)
from kiosk_ui.core.rules import Decision, Lane
from kiosk_ui.core.staff_lock import StaffLock, hash_secret, load_secret_hashes
from kiosk_ui.core.station import Station
from kiosk_ui.errors import RuleViolation
from kiosk_ui.screens.present import resident_text
from tests.support.contract import check_outbox
from tests.support.station import Clock, make_config, rejected, resident


class TableVerifier:
    """Codes the test prints: text -> verdict, as a verifier would decide them."""

    def __init__(self) -> None:
        self.table: dict[str, Any] = {}

    def verify(self, text: str, now: float) -> Any:
        if text not in self.table:
            raise ValueError(f"the test printed no code {text!r}")
        return self.table[text]


@dataclass
class Kiosk:
    flow: KioskFlow
    station: Station
    lights: LaneLights
    clock: Clock
    codes: TableVerifier
    views: list[View] = field(default_factory=list)
    measures: list[int] = field(default_factory=list)
    spoken: list[View] = field(default_factory=list)

    def show(self, text: str, *temps: float) -> View:
        self.flow.code_read(text)
        for t in temps:
            assert self.flow.state in (State.MEASURING, State.REMEASURE)
            self.flow.reading(t)
        return self.flow.view


@pytest.fixture
def kiosk(tmp_path: Path) -> Iterator[Kiosk]:
    config = make_config(tmp_path)
    clock = Clock()
    codes = TableVerifier()
    station = Station.open(config, codes, clock=clock)
    lights = build_lights(config.hardware)
    k = Kiosk(None, station, lights, clock, codes)  # type: ignore[arg-type]
    k.flow = KioskFlow(
        station,
        result_timeout_s=6.0,
        measure=lambda: k.measures.append(1),
        on_view=k.views.append,
        set_lights=lights.show,
        speak=k.spoken.append,
        clock=clock,
    )
    k.flow.start()
    codes.table.update(
        {
            "HC1:GREEN1": resident("r1", "green", "张三"),
            "HC1:GREEN2": resident("r2", "green", "李四"),
            "HC1:ELDER": resident("r3", "green", "王五", cat=["elderly"]),
            "HC1:YELLOW": resident("r4", "yellow", "赵六"),
            "HC1:RED": resident("r5", "red", "钱七"),
            "HC1:FORGED": rejected("bad_signature"),
        }
    )
    yield k
    lights.close()
    station.close()
    # every event the flow produced keeps the published contract, seq without gaps
    conn = sqlite3.connect(config.storage.path)
    try:
        check_outbox(conn)
    finally:
        conn.close()


def events(station: Station) -> list[tuple[str, dict[str, Any]]]:
    rows = station.db.conn.execute("SELECT type, payload FROM outbox ORDER BY seq").fetchall()
    return [(t, json.loads(p)["data"]) for t, p in rows]


def test_green_code_joins_the_open_tube_and_lights_the_main_lane(kiosk: Kiosk) -> None:
    kiosk.station.scan("TB2026112300001", "S1")
    view = kiosk.show("HC1:GREEN1", 36.6)
    assert view.state is State.RESULT
    assert (view.decision, view.lane, view.tube, view.position, view.capacity) == (
        "pool",
        "main",
        "TB2026112300001",
        1,
        10,
    )
    assert view.name == "张*"
    assert view.temperature_c == 36.6
    assert kiosk.lights.snapshot() == {"main": "go", "green": "idle", "isolation": "idle"}
    assert kiosk.measures == [1]
    # committed before it was shown
    checkins = [d for t, d in events(kiosk.station) if t == "sampling.checkin.recorded"]
    assert len(checkins) == 1 and checkins[0]["position"] == 1
    assert kiosk.spoken[-1].position == 1


def test_priority_group_goes_to_the_green_lane(kiosk: Kiosk) -> None:
    kiosk.station.scan("TB2026112300001", "S1")
    view = kiosk.show("HC1:ELDER", 36.4)
    assert (view.state, view.lane, view.position) == (State.RESULT, "green", 1)
    assert kiosk.lights.snapshot()["green"] == "go"
    assert kiosk.lights.snapshot()["main"] == "idle"


def test_fever_is_measured_again_and_the_second_reading_counts(kiosk: Kiosk) -> None:
    kiosk.station.scan("TB2026112300001", "S1")
    kiosk.flow.code_read("HC1:GREEN1")
    kiosk.flow.reading(37.8)
    assert kiosk.flow.state is State.REMEASURE
    assert kiosk.flow.view.prompt == "measure.again_why"
    assert kiosk.lights.snapshot()["main"] == "wait"
    kiosk.flow.reading(36.9)
    assert kiosk.flow.state is State.RESULT
    assert kiosk.flow.view.temperature_c == 36.9
    assert len(kiosk.measures) == 2


def test_confirmed_fever_sends_to_isolation_with_beacon_and_alert(kiosk: Kiosk) -> None:
    kiosk.station.scan("TB2026112300001", "S1")
    view = kiosk.show("HC1:GREEN1", 37.9, 38.1)
    assert (view.state, view.decision, view.lane, view.reason) == (
        State.ISOLATION,
        "isolate",
        "isolation",
        "fever",
    )
    assert view.tube is None
    assert kiosk.lights.snapshot() == {"main": "stop", "green": "idle", "isolation": "isolate"}
    kinds = [d["kind"] for t, d in events(kiosk.station) if t == "sampling.alert.raised"]
    assert kinds == ["fever"]
    assert kiosk.station.open_tube().count == 0  # type: ignore[union-attr]


def test_red_code_is_isolated_without_measuring(kiosk: Kiosk) -> None:
    view = kiosk.show("HC1:RED")
    assert (view.state, view.reason, view.prompt) == (State.ISOLATION, "red_code", "isolation.red")
    assert kiosk.measures == []


def test_rejected_code_goes_to_the_staff_desk_and_joins_nothing(kiosk: Kiosk) -> None:
    kiosk.station.scan("TB2026112300001", "S1")
    view = kiosk.show("HC1:FORGED")
    assert (view.state, view.decision, view.lane, view.reason) == (
        State.STAFF,
        "refer",
        "staff",
        "bad_signature",
    )
    assert kiosk.lights.snapshot()["main"] == "stop"
    assert kiosk.station.open_tube().members == ()  # type: ignore[union-attr]


def test_yellow_code_gets_a_single_tube(kiosk: Kiosk) -> None:
    kiosk.station.scan("TB2026112300009", "S1", mode="single")
    view = kiosk.show("HC1:YELLOW", 36.5)
    assert (view.state, view.decision, view.lane, view.prompt) == (
        State.RESULT,
        "single",
        "single",
        "result.single",
    )
    assert kiosk.lights.snapshot()["main"] == "go"


def test_no_open_tube_waits_then_joins_when_the_sampler_scans_one(kiosk: Kiosk) -> None:
    view = kiosk.show("HC1:GREEN1", 36.6)
    assert (view.state, view.prompt, view.queue_place) == (State.WAIT, "wait.no_tube", 1)
    assert kiosk.lights.snapshot()["main"] == "wait"
    kiosk.station.scan("TB2026112300001", "S1")
    kiosk.flow.tubes_changed()
    view = kiosk.flow.view
    assert (view.state, view.tube, view.position) == (State.RESULT, "TB2026112300001", 1)
    assert kiosk.lights.snapshot()["main"] == "go"


def test_full_tube_waits_with_the_full_message(tmp_path: Path) -> None:
    config = make_config(tmp_path, {"pool_size": 1})
    codes = TableVerifier()
    codes.table.update({"HC1:A": resident("a"), "HC1:B": resident("b")})
    with Station.open(config, codes, clock=Clock()) as station:
        flow = KioskFlow(station, clock=Clock())
        station.scan("TB2026112300001", "S1")
        flow.code_read("HC1:A")
        flow.reading(36.5)
        assert flow.view.position == 1
        flow.code_read("HC1:B")
        flow.reading(36.5)
        assert (flow.state, flow.view.prompt, flow.view.tube_full) == (
            State.WAIT,
            "wait.full",
            True,
        )


def test_the_result_gives_way_to_idle_after_the_timeout(kiosk: Kiosk) -> None:
    kiosk.station.scan("TB2026112300001", "S1")
    kiosk.show("HC1:GREEN1", 36.6)
    kiosk.clock.advance(5.9)
    kiosk.flow.tick()
    assert kiosk.flow.state is State.RESULT
    kiosk.clock.advance(0.2)
    kiosk.flow.tick()
    assert kiosk.flow.state is State.IDLE
    assert kiosk.lights.snapshot() == {"main": "idle", "green": "idle", "isolation": "idle"}


def test_the_next_code_is_served_while_a_result_is_still_shown(kiosk: Kiosk) -> None:
    kiosk.station.scan("TB2026112300001", "S1")
    kiosk.show("HC1:GREEN1", 36.6)
    view = kiosk.show("HC1:GREEN2", 36.7)
    assert (view.state, view.position, view.name) == (State.RESULT, 2, "李*")


def test_a_code_shown_while_measuring_is_ignored(kiosk: Kiosk) -> None:
    kiosk.station.scan("TB2026112300001", "S1")
    kiosk.flow.code_read("HC1:GREEN1")
    kiosk.flow.code_read("HC1:GREEN2")
    kiosk.flow.reading(36.6)
    assert kiosk.flow.view.name == "张*"
    assert kiosk.station.open_tube().members == ("r1",)  # type: ignore[union-attr]


def test_thermometer_fault_asks_staff_for_a_hand_reading(kiosk: Kiosk) -> None:
    kiosk.station.scan("TB2026112300001", "S1")
    kiosk.flow.code_read("HC1:GREEN1")
    kiosk.flow.sensor_fault("no one in front of the thermometer within 5.0 s")
    view = kiosk.flow.view
    assert (view.state, view.fault, view.prompt) == (
        State.MANUAL_TEMPERATURE,
        FaultKind.THERMOMETER,
        "fault.thermometer",
    )
    kiosk.flow.manual_temperature(36.5)
    assert kiosk.flow.state is State.RESULT
    # one failure may be a resident who did not step up: the next one is measured
    kiosk.flow.code_read("HC1:GREEN2")
    assert kiosk.flow.state is State.MEASURING
    kiosk.flow.sensor_fault("thermometer at I2C address 0x5A: reading register 0x06 failed")
    kiosk.flow.manual_temperature(36.6)
    # two in a row is the sensor: the next resident goes straight to the hand reading
    kiosk.flow.code_read("HC1:ELDER")
    assert kiosk.flow.state is State.MANUAL_TEMPERATURE
    assert len(kiosk.measures) == 2
    kiosk.flow.manual_temperature(36.4)
    kiosk.flow.thermometer_ok()  # the probe reads the sensor again
    kiosk.flow.code_read("HC1:GREEN2")
    assert kiosk.flow.state is State.MEASURING
    assert len(kiosk.measures) == 3
    # the gateway heard of it once, when the sensor was taken for faulty, and of its return
    alerts = [e for e in check_outbox(kiosk.station.db.conn) if "alert" in e["type"]]
    assert [(e["type"], e["data"]["kind"], e["data"]["device"]) for e in alerts] == [
        ("sampling.alert.raised", "sensor_fault", "thermometer"),
        ("sampling.alert.cleared", "sensor_fault", "thermometer"),
    ]
    assert "0x06" in alerts[0]["data"]["detail"]
    assert alerts[1]["data"]["raised_seq"] == alerts[0]["seq"]
    assert kiosk.station.standing_alerts() == {}


def test_a_thermometer_that_keeps_failing_is_one_standing_alert(kiosk: Kiosk) -> None:
    kiosk.station.scan("TB2026112300001", "S1")
    for code in ("HC1:GREEN1", "HC1:GREEN2", "HC1:ELDER"):
        kiosk.flow.code_read(code)
        kiosk.flow.sensor_fault("reading register 0x07 failed: PEC mismatch")
        kiosk.flow.manual_temperature(36.5)
    raised = [
        e for e in check_outbox(kiosk.station.db.conn) if e["type"] == "sampling.alert.raised"
    ]
    assert len(raised) == 1
    standing = kiosk.station.standing_alerts()
    assert list(standing) == ["sensor_fault.thermometer"]
    assert standing["sensor_fault.thermometer"]["seq"] == raised[0]["seq"]
    # a real reading is as good as the probe: the alert ends
    kiosk.flow.code_read("HC1:GREEN1")
    kiosk.flow.reading(36.6)
    assert kiosk.station.standing_alerts() == {}
    types = [t for t, _ in events(kiosk.station)]
    assert types.count("sampling.alert.cleared") == 1
    # the sensor was back before this resident's check-in was recorded
    assert types[-2:] == ["sampling.alert.cleared", "sampling.checkin.recorded"]


def test_a_tube_held_to_the_camera_tells_the_staff_and_records_nothing(kiosk: Kiosk) -> None:
    kiosk.flow.code_read("TB2026112300001")
    view = kiosk.flow.view
    assert (view.state, view.reason) == (State.STAFF, "tube_barcode_on_camera")
    assert view.message("zh") and view.message("en")
    assert events(kiosk.station) == []


def test_storage_failure_is_the_failsafe_and_confirms_nothing(kiosk: Kiosk) -> None:
    kiosk.station.scan("TB2026112300001", "S1")
    kiosk.station.db.conn.execute("PRAGMA query_only = ON")
    kiosk.flow.code_read("HC1:GREEN1")
    kiosk.flow.reading(36.6)
    view = kiosk.flow.view
    assert (view.state, view.fault) == (State.FAULT, FaultKind.STORAGE)
    assert view.position is None
    assert kiosk.lights.snapshot()["main"] == "fault"
    kiosk.station.db.conn.execute("PRAGMA query_only = OFF")
    assert kiosk.station.open_tube().members == ()  # type: ignore[union-attr]


def test_an_unexpected_error_ends_in_the_failsafe_state(kiosk: Kiosk) -> None:
    kiosk.flow.code_read("HC1:NEVER-PRINTED")
    assert (kiosk.flow.state, kiosk.flow.view.fault) == (State.FAULT, FaultKind.INTERNAL)
    assert "ValueError" in (kiosk.flow.view.message("en") or "")
    kiosk.flow.code_read("HC1:GREEN1")  # nobody is served until staff reset
    assert kiosk.flow.state is State.FAULT
    kiosk.flow.reset()
    assert kiosk.flow.state is State.IDLE


def test_a_transition_outside_the_table_is_refused(kiosk: Kiosk) -> None:
    assert State.WAIT not in TRANSITIONS[State.FAULT]
    kiosk.flow.storage_fault("disk full")
    kiosk.flow._enter(View(State.WAIT, since=0.0))
    assert (kiosk.flow.state, kiosk.flow.view.fault) == (State.FAULT, FaultKind.INTERNAL)


def test_camera_fault_and_recovery(kiosk: Kiosk) -> None:
    kiosk.flow.camera_fault("no frame from the camera within 1.0 s")
    assert (kiosk.flow.state, kiosk.flow.view.fault) == (State.FAULT, FaultKind.CAMERA)
    kiosk.flow.reset()
    assert kiosk.flow.state is State.FAULT  # still broken: reset does not pretend
    kiosk.flow.camera_ok()
    assert kiosk.flow.state is State.IDLE
    alerts = [(t, data.get("device")) for t, data in events(kiosk.station)]
    assert alerts == [("sampling.alert.raised", "camera"), ("sampling.alert.cleared", "camera")]


def test_resident_without_a_code_checks_in_by_national_id(kiosk: Kiosk) -> None:
    kiosk.station.scan("TB2026112300001", "S1")
    key = b"campaign-key-0123456789"
    sub = national_id.derive_sub("11010519491231002x", key)
    kiosk.flow.manual_id(sub, staff="S1")
    assert kiosk.flow.state is State.MEASURING
    kiosk.flow.reading(36.4)
    view = kiosk.flow.view
    assert (view.state, view.decision, view.position) == (State.RESULT, "pool", 1)
    payloads = kiosk.station.db.conn.execute("SELECT payload FROM outbox").fetchall()
    text = "".join(p for (p,) in payloads)
    assert sub in text and "110105" not in text


def test_staff_lock_opens_with_pin_or_badge_and_closes_after_inactivity(tmp_path: Path) -> None:
    pin_file = tmp_path / "staff.pins"
    pin_file.write_text(
        "# staff of tent K03\n" + hash_secret("2468", 1000) + "\n" + hash_secret("BADGE-77", 1000)
    )
    clock = Clock()
    lock = StaffLock(load_secret_hashes(pin_file), lock_after_s=120, clock=clock)
    assert not lock.unlocked
    assert not lock.unlock("1234")
    assert lock.unlock("2468")
    clock.advance(100)
    lock.touch()
    clock.advance(100)
    assert lock.unlocked
    clock.advance(120)
    assert not lock.unlocked
    assert lock.unlock("BADGE-77", who="badge")
    assert "2468" not in pin_file.read_text()


def test_a_pin_file_that_holds_a_plain_pin_is_refused(tmp_path: Path) -> None:
    pin_file = tmp_path / "staff.pins"
    pin_file.write_text("2468\n")
    with pytest.raises(ConfigError, match="pbkdf2_sha256"):
        load_secret_hashes(pin_file)


def test_database_closed_under_the_kiosk_is_a_storage_fault(kiosk: Kiosk) -> None:
    kiosk.station.scan("TB2026112300001", "S1")
    kiosk.flow.code_read("HC1:GREEN1")
    kiosk.station.db.conn.close()
    kiosk.flow.reading(36.6)
    assert kiosk.flow.view.fault is FaultKind.STORAGE
    kiosk.station.db.conn = sqlite3.connect(":memory:")  # so the fixture can close it


def test_the_same_code_held_up_while_its_result_shows_is_not_a_new_visit(kiosk: Kiosk) -> None:
    kiosk.station.scan("TB2026112300001", "S1")
    kiosk.show("HC1:GREEN1", 36.6)
    kiosk.flow.code_read("HC1:GREEN1")
    assert (kiosk.flow.state, kiosk.flow.view.position) == (State.RESULT, 1)
    assert len(kiosk.measures) == 1
    kiosk.clock.advance(7)
    kiosk.flow.tick()
    kiosk.flow.code_read("HC1:GREEN1")  # back at idle: a new visit, the rules decide
    assert kiosk.flow.state is State.MEASURING


flow_events = st.lists(
    st.one_of(
        st.tuples(
            st.just("code"),
            st.sampled_from(
                ["HC1:GREEN1", "HC1:GREEN2", "HC1:ELDER", "HC1:YELLOW", "HC1:RED", "HC1:FORGED"]
            ),
        ),
        st.tuples(st.just("reading"), st.floats(30.0, 40.0)),
        st.tuples(st.just("fault"), st.just("no answer")),
        st.tuples(st.just("tick"), st.floats(0.0, 10.0)),
        st.tuples(st.just("tube"), st.integers(1, 50)),
        st.tuples(st.just("seal"), st.just(0)),
    ),
    max_size=25,
)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(flow_events)
def test_any_sequence_of_events_keeps_the_machine_consistent(seq: list[tuple[str, Any]]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        config = make_config(Path(tmp), {"pool_size": 2})
        clock = Clock()
        codes = TableVerifier()
        codes.table.update(
            {
                "HC1:GREEN1": resident("r1", "green", "张三"),
                "HC1:GREEN2": resident("r2", "green", "李四"),
                "HC1:ELDER": resident("r3", "green", "王五", cat=["elderly"]),
                "HC1:YELLOW": resident("r4", "yellow", "赵六"),
                "HC1:RED": resident("r5", "red", "钱七"),
                "HC1:FORGED": rejected("bad_signature"),
            }
        )
        lights = build_lights(config.hardware)
        with Station.open(config, codes, clock=clock) as station:
            flow = KioskFlow(station, set_lights=lights.show, clock=clock)
            flow.start()
            for kind, arg in seq:
                before = flow.state
                if kind == "code":
                    flow.code_read(arg)
                elif kind == "reading":
                    flow.reading(arg)
                elif kind == "fault":
                    flow.sensor_fault(arg)
                elif kind == "tick":
                    clock.advance(arg)
                    flow.tick()
                elif kind == "tube":
                    with contextlib.suppress(RuleViolation):
                        station.scan(f"TB20261123{arg:05d}", "S1")
                    flow.tubes_changed()
                else:
                    with contextlib.suppress(RuleViolation):
                        station.seal("S1")
                    flow.tubes_changed()
                view = flow.view
                assert (
                    view.state is State.FAULT
                    or view.state in TRANSITIONS[before]
                    or (view.state is before)
                ), (before, view.state)
                assert view.state is not State.FAULT, view.message("en")
                assert lights.state == light_for(view)[0]
                if view.state is State.RESULT:
                    assert view.decision in ("pool", "single")
                    assert (view.position is None) == (view.decision == "single") or (
                        view.decision == "single"
                    )
                if view.state is State.ISOLATION:
                    assert view.tube is None and lights.snapshot()["isolation"] == "isolate"
        lights.close()


def test_a_resident_who_walks_away_during_the_check_is_given_up(kiosk: Kiosk) -> None:
    kiosk.station.scan("TB2026112300001", "S1")
    kiosk.flow.code_read("HC1:GREEN1")
    kiosk.flow.sensor_fault("no one in front of the thermometer within 5.0 s")
    kiosk.clock.advance(89)
    kiosk.flow.tick()
    assert kiosk.flow.state is State.MANUAL_TEMPERATURE
    kiosk.clock.advance(2)
    kiosk.flow.tick()
    assert kiosk.flow.state is State.IDLE
    kiosk.flow.manual_temperature(36.5)  # too late: nobody is pending
    assert kiosk.flow.state is State.IDLE
    assert events(kiosk.station) == [("sampling.tube.opened", events(kiosk.station)[0][1])]


@pytest.mark.parametrize(
    ("view", "shown"),
    [
        (View(State.RESULT, 0.0, decision=Decision.POOL, lane=Lane.MAIN), ("go", "main")),
        (View(State.RESULT, 0.0, decision=Decision.POOL, lane=Lane.GREEN), ("go", "green")),
        (View(State.RESULT, 0.0, decision=Decision.SINGLE, lane=Lane.SINGLE), ("go", "single")),
        (
            View(State.ISOLATION, 0.0, decision=Decision.ISOLATE, lane=Lane.ISOLATION),
            ("isolate", None),
        ),
        (View(State.STAFF, 0.0, decision=Decision.REFER, lane=Lane.STAFF), ("stop", None)),
        (View(State.WAIT, 0.0, decision=Decision.POOL, lane=Lane.MAIN), ("wait", None)),
    ],
)
def test_each_decision_shows_on_the_lights_as_they_can_show_it(
    view: View, shown: tuple[str, str | None]
) -> None:
    assert light_for(view) == shown
    plan(*light_for(view))  # the lights accept it (LightsError otherwise)


def _recall(station: Station, sub: str, reason: str, action: str) -> None:
    held = recall_list.version(station.db.conn)
    change = {"v": held + 1, "op": "add", "sub": sub, "pool": "TB2026112300009"}
    args = {"township": "T01", "from": held + 1, "through": held + 1}
    change |= {"reason": reason, "action": action}
    recall_list.apply(station.db, "T01", {**args, "changes": [change]}, 0.0)


def test_a_recalled_resident_is_sent_alone_with_its_own_words_and_lights(kiosk: Kiosk) -> None:
    kiosk.station.scan("TB2026112300001", "S1")
    _recall(kiosk.station, "r1", "pool_positive", "single")
    view = kiosk.show("HC1:GREEN1", 36.6)
    assert (view.decision, view.lane, view.reason, view.tube) == (
        "single",
        "single",
        "pool_positive",
        None,
    )
    assert (view.state, view.prompt) == (State.WAIT, "wait.no_tube")  # no single tube yet
    assert kiosk.station.open_tube().count == 0  # type: ignore[union-attr]


def test_a_recalled_resident_joins_an_open_single_tube_and_reads_why(kiosk: Kiosk) -> None:
    kiosk.station.scan("TB2026112300002", "S1", "single")
    _recall(kiosk.station, "r2", "pool_positive", "single")
    view = kiosk.show("HC1:GREEN2", 36.5)
    assert (view.state, view.prompt, view.tube) == (
        State.RESULT,
        "result.recall",
        "TB2026112300002",
    )
    text = resident_text(view, "zh")
    assert (text.title, text.line1) == ("单采台", "您需要单独复采，请到单采台")


def test_a_recall_to_isolation_says_so_without_a_fever_or_an_alert(kiosk: Kiosk) -> None:
    _recall(kiosk.station, "r1", "single_positive", "isolate")
    view = kiosk.show("HC1:GREEN1", 36.6)
    assert (view.state, view.reason, view.prompt) == (
        State.ISOLATION,
        "single_positive",
        "isolation.recall",
    )
    assert kiosk.lights.snapshot() == {"main": "stop", "green": "idle", "isolation": "isolate"}
    assert [d for t, d in events(kiosk.station) if t == "sampling.alert.raised"] == []
    assert resident_text(view, "en").line1 == "Your test result needs isolation"
