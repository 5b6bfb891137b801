"""The kiosk's one composition root without a window: ``build(config)`` gives the kiosk and its
core loop; the sampler's actions return typed results, a refusal reaches the panel and not
the caller, and the panel reads what the station holds. Simulated devices, a real SQLite."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge_agent import recall_list
from edge_agent.db import open_db
from firmware.config import load_config
from kiosk_ui.core import national_id
from kiosk_ui.core.staff_lock import hash_secret
from kiosk_ui.core.tubes import DispatchResult, ScanResult, TubeResult
from kiosk_ui.kiosk import KioskCore, build
from tests.support.drills import drill_config

PIN = "2468"


@pytest.fixture
def core(tmp_path: Path) -> Iterator[KioskCore]:
    (tmp_path / "staff.pins").write_text(hash_secret(PIN, 1000) + "\n")
    path = drill_config(
        tmp_path,
        "mqtt://127.0.0.1:9",
        kiosk={"id_hash_key_file": "id.key", "staff_pin_file": "staff.pins"},
        sampling={"pool_size": 3},
    )
    with build(load_config(path)) as running:
        yield running
    assert not running.loop.running


def _scanned(core: KioskCore, text: str) -> object:
    """Feed the scan gun and read what the kiosk made of it, on its loop."""
    core.loop.call(core.kiosk.forget_last_scan)
    sim = core.kiosk.hardware.sim
    assert sim is not None
    assert sim.scanner.feed(text) is not None
    return core.loop.call(lambda: core.kiosk.last_scan)  # after the scan's own post


def _check_in_by_hand(core: KioskCore, number: str = "11010519491231002X") -> None:
    """Staff type a resident's ID number; the thermometer reads 36.5; wait for the result."""
    sim = core.kiosk.hardware.sim
    assert sim is not None
    sim.thermometer.queue([36.5])
    core.loop.call(lambda: core.kiosk.manual_id(number))
    deadline = time.monotonic() + 10
    while core.loop.call(lambda: core.kiosk.flow.state.value) != "result":
        assert time.monotonic() < deadline, "no result for the resident"
        time.sleep(0.05)


def test_the_root_starts_the_loop_that_ticks_the_flow(core: KioskCore) -> None:
    assert core.loop.running
    assert core.loop.call(lambda: core.kiosk.flow.state.value) == "idle"
    deadline = time.monotonic() + 5
    while core.kiosk.preview_frame() is None:  # the decoder reads the camera through the tap
        assert time.monotonic() < deadline, "no camera frame reached the preview"
        time.sleep(0.05)


def test_actions_return_the_stations_typed_results(core: KioskCore) -> None:
    k = core.kiosk
    opened = _scanned(core, "TB2026112300001")
    assert isinstance(opened, ScanResult) and opened.tube is not None
    assert opened.tube.tube == "TB2026112300001"
    _check_in_by_hand(core)
    sealed = core.loop.call(k.seal)
    assert isinstance(sealed, TubeResult) and sealed.tube.state == "sealed"
    assert sealed.tube.count == 1
    box = _scanned(core, "BX20261123A1")
    assert isinstance(box, ScanResult) and box.box == "BX20261123A1"
    assert box.ready == ("TB2026112300001",)
    sent = core.loop.call(k.dispatch)  # no box given: the one the scanner read last
    assert isinstance(sent, DispatchResult)
    assert (sent.box, sent.tubes) == ("BX20261123A1", ("TB2026112300001",))
    assert k.panel_message is not None and k.panel_message.ok
    assert k.panel_message.text("en") == "Box BX20261123A1 dispatched with 1 tubes."


def test_a_refused_scan_is_kept_as_the_last_scan(core: KioskCore) -> None:
    _scanned(core, "TB2026112300001")
    again = _scanned(core, "TB2026112300001")
    assert getattr(again, "code", None) == "tube_already_used"
    message = core.kiosk.panel_message
    assert message is not None and not message.ok


def test_the_panel_acts_only_when_unlocked_and_shows_refusals(core: KioskCore) -> None:
    k = core.kiosk
    ran: list[str] = []
    assert core.loop.call(lambda: k.act(lambda: ran.append("seal"))) is False
    assert ran == []
    assert core.loop.call(lambda: k.lock.unlock(PIN))
    # dispatch without a scanned box: the kiosk's rule, answered on the panel
    assert core.loop.call(lambda: k.act(k.dispatch)) is True
    assert k.panel_message is not None and not k.panel_message.ok
    assert k.panel_message.text("zh") == "请先扫描转运箱条码。"
    assert k.panel_message.text("en") == "Scan the box's barcode first."
    # sealing with no open tube: the station's refusal, also on the panel, not raised
    assert core.loop.call(lambda: k.act(k.seal)) is True
    assert k.panel_message is not None and not k.panel_message.ok
    assert core.loop.call(lambda: k.flow.state.value) == "idle"  # not a fault


def test_the_panel_reads_the_open_tube_and_the_counters(core: KioskCore) -> None:
    k = core.kiosk
    _scanned(core, "TB2026112300001")
    _check_in_by_hand(core)
    data = core.loop.call(k.panel_data)
    assert data.tube is not None and data.tube.tube == "TB2026112300001"
    assert data.tube.count == 1 and data.names == ("",)  # typed by hand: no name
    assert data.counters.checkins == 1 and not data.fault and not data.single_armed
    status = core.loop.call(k.link_status)
    # the tube opened, the check-in, the member added: nothing delivered (no agent runs)
    assert status.link == "unknown" and status.depth == 3
    assert not status.online


def test_stop_after_a_stop_is_harmless(core: KioskCore) -> None:
    core.stop()
    core.stop()
    assert not core.loop.running


def test_the_panel_says_why_a_recalled_resident_is_not_pooled(core: KioskCore) -> None:
    k = core.kiosk
    number = "11010519491231002X"
    sub = national_id.derive_sub(number, national_id.load_key(k.config.kiosk.id_hash_key_file))
    change = {"v": 1, "op": "add", "sub": sub, "pool": "TB2026112300009"}
    change |= {"reason": "pool_positive", "action": "single"}
    db = open_db(k.config.storage.path)  # as the agent, on its own connection
    try:
        args = {"township": "T01", "from": 1, "through": 1, "changes": [change]}
        recall_list.apply(db, "T01", args, time.time())
    finally:
        db.close()
    _scanned(core, "TB2026112300001")  # a pooled tube is open: the recalled one is not for it
    sim = k.hardware.sim
    assert sim is not None
    sim.thermometer.queue([36.5])
    core.loop.call(lambda: k.manual_id(number))
    deadline = time.monotonic() + 10
    while core.loop.call(lambda: k.flow.state.value) != "wait":
        assert time.monotonic() < deadline, "the recalled resident was not sent to wait"
        time.sleep(0.05)
    view = core.loop.call(lambda: k.flow.view)
    assert (view.decision, view.lane, view.reason) == ("single", "single", "pool_positive")
    message = core.loop.call(lambda: k.panel_message)
    assert message is not None and not message.ok
    assert message.text("en") == "Recalled: their pooled tube was positive. Sample them alone"
    assert message.text("zh") == "召回：所在混采管阳性，请单管复采"
    assert core.loop.call(k.station.open_tube).count == 0  # type: ignore[union-attr]
