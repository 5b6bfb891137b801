"""The kiosk with a clock it cannot trust (kiosk_ui.core.clock at the kiosk): codes are not
verified, the resident is sent to the staff, the panel says why, a standing
``clock_untrusted`` alert is raised once and cleared, and staff still check people in by
hand. The whole kiosk from ``build`` on simulated devices and a real SQLite file."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from firmware.config import load_config
from kiosk_ui.clock_sources import SimClock
from kiosk_ui.kiosk import KioskCore, build
from kiosk_ui.screens.present import panel_text, resident_text
from tests.support.drills import drill_config


@pytest.fixture
def core(tmp_path: Path) -> Iterator[KioskCore]:
    path = drill_config(tmp_path, "mqtt://127.0.0.1:9", kiosk={"id_hash_key_file": "id.key"})
    with build(load_config(path)) as running:
        yield running


def _sim_clock(core: KioskCore) -> SimClock:
    clock = core.kiosk.sim_clock
    assert clock is not None
    return clock


def _check_in_by_hand(core: KioskCore, number: str) -> None:
    sim = core.kiosk.hardware.sim
    assert sim is not None
    sim.thermometer.queue([36.5])
    core.loop.call(lambda: core.kiosk.manual_id(number))
    deadline = time.monotonic() + 10
    while core.loop.call(lambda: core.kiosk.flow.state.value) != "wait":  # no tube open
        assert time.monotonic() < deadline, core.loop.call(lambda: core.kiosk.flow.history)
        time.sleep(0.05)
    core.loop.call(core.kiosk.flow.reset)


def _alert_events(core: KioskCore) -> list[tuple[str, str]]:
    rows = core.kiosk.station.db.conn.execute(
        "SELECT type, payload FROM outbox WHERE type LIKE 'sampling.alert.%' ORDER BY seq"
    ).fetchall()
    return [(t, json.loads(p)["data"]["kind"]) for t, p in rows]


def test_an_untrusted_clock_sends_residents_to_staff_and_raises_one_alert(
    core: KioskCore,
) -> None:
    k = core.kiosk
    assert core.loop.call(lambda: k.flow.clock_problem) is None  # the sim clock starts synced
    _check_in_by_hand(core, "11010519491231002X")
    floor = k.station.ledger.floor
    clock = _sim_clock(core)
    clock.set(0.0)  # a Pi that booted on 1970, no network time
    clock.synchronise(False)
    core.loop.call(k.judge_clock)
    core.loop.call(k.judge_clock)  # judged again: the alert is not raised twice
    assert _alert_events(core) == [("sampling.alert.raised", "clock_untrusted")]
    assert "clock_untrusted" in k.station.standing_alerts()
    problem = core.loop.call(lambda: k.flow.clock_problem)
    assert problem is not None and "went back" in problem and "1970-01-01" in problem

    # a resident's code is not verified against 1970: "please see the staff"
    core.loop.call(lambda: k.flow.code_read("HC1:anything at all"))
    view = core.loop.call(lambda: k.flow.view)
    assert (view.state.value, view.reason) == ("staff", "clock_untrusted")
    assert resident_text(view, "en").line1 == "Please see the staff: they will check you in"
    assert resident_text(view, "zh").line1 == "请找工作人员，他们会为您登记"
    panel = core.loop.call(lambda: panel_text(k.panel_data(), k.link_status(), "en"))
    assert panel.message.startswith("Clock not trusted: the clock shows 1970-01-01")
    assert "clock not trusted" in panel.link

    # staff still check people in by hand, never before the newest fact
    core.loop.call(k.flow.reset)
    _check_in_by_hand(core, "110105198001010016")
    ats = [r[0] for r in k.station.db.conn.execute("SELECT at FROM checkins ORDER BY id")]
    assert len(ats) == 2 and ats[1] == floor

    # network time comes: trusted again, the alert cleared once
    clock.synchronise(True)
    core.loop.call(k.judge_clock)
    core.loop.call(k.judge_clock)
    assert core.loop.call(lambda: k.flow.clock_problem) is None
    assert _alert_events(core) == [
        ("sampling.alert.raised", "clock_untrusted"),
        ("sampling.alert.cleared", "clock_untrusted"),
    ]
    assert "clock_untrusted" not in k.station.standing_alerts()
    panel = core.loop.call(lambda: panel_text(k.panel_data(), k.link_status(), "en"))
    assert panel.message == "Clock trusted (ntp): health codes are checked again."


def test_the_core_loop_judges_the_clock_by_itself(core: KioskCore) -> None:
    k = core.kiosk
    _sim_clock(core).synchronise(False)  # no NTP, no RTC fitted: nothing vouches
    deadline = time.monotonic() + 5
    while core.loop.call(lambda: k.flow.clock_problem) is None:
        assert time.monotonic() < deadline, "the tick never judged the clock"
        time.sleep(0.05)
    assert "no source vouches" in str(core.loop.call(lambda: k.flow.clock_problem))
