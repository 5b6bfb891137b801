"""Barcode scanners: keyboard-wedge input assembled into whole barcodes, half ones dropped."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import queue
import sys
import threading
import time
import types
from pathlib import Path
from typing import ClassVar

import pytest
from hypothesis import given
from hypothesis import strategies as st

from firmware.errors import ScannerError
from firmware.scanner import (
    CHARMAP,
    EvdevScanner,
    KeyboardLineAssembler,
    find_scanner_device,
    keys_for,
)
from firmware.sim.scanner import SimScanner

TYPABLE = "".join(sorted(CHARMAP))


def type_text(asm: KeyboardLineAssembler, text: str, t: float, step: float = 0.005):
    """Press the keys of ``text`` and Enter; returns what the assembler delivered."""
    got = []
    for key, shift in keys_for(text):
        if shift:
            asm.press("KEY_RIGHTSHIFT", t)
        got.append(asm.press(key, t))
        asm.release(key)
        if shift:
            asm.release("KEY_RIGHTSHIFT")
        t += step
    got.append(asm.press("KEY_ENTER", t))
    return [g for g in got if g is not None], t


@given(st.text(alphabet=TYPABLE, min_size=6, max_size=80))
def test_any_typable_barcode_comes_back_whole(text: str) -> None:
    asm = KeyboardLineAssembler(min_length=6)
    got, _ = type_text(asm, text, 100.0)
    assert got == [text]
    assert asm.dropped == []
    assert asm.pending == ""


def test_tube_barcodes_in_a_row() -> None:
    asm = KeyboardLineAssembler()
    t = 0.0
    out = []
    for code in ["TB2026112300001", "TB2026112300002", "BOX-T01-0007"]:
        got, t = type_text(asm, code, t)
        out += got
        t += 1.0
    assert out == ["TB2026112300001", "TB2026112300002", "BOX-T01-0007"]


def test_half_barcode_without_enter_is_dropped_and_the_next_one_is_whole() -> None:
    asm = KeyboardLineAssembler(key_timeout_s=0.5)
    for i, key in enumerate(["KEY_T", "KEY_B", "KEY_2", "KEY_0"]):
        assert asm.press(key, 10.0 + i * 0.01) is None
    # The gun's Enter never came; the next scan starts 2 s later.
    got, _ = type_text(asm, "TB2026112300009", 12.0)
    assert got == ["tb2026112300009".upper()]
    assert asm.dropped == ["tb20"]


def test_expire_drops_a_stale_half_barcode_without_new_keys() -> None:
    asm = KeyboardLineAssembler(key_timeout_s=0.3)
    asm.press("KEY_1", 5.0)
    asm.press("KEY_2", 5.1)
    asm.expire(5.2)
    assert asm.pending == "12"
    asm.expire(5.5)
    assert asm.pending == ""
    assert asm.dropped == ["12"]
    assert asm.press("KEY_ENTER", 5.6) is None  # a lone Enter delivers nothing


def test_too_short_too_long_and_unexpected_keys_are_dropped() -> None:
    asm = KeyboardLineAssembler(min_length=6, max_length=10)
    got, t = type_text(asm, "TB12", 0.0)
    assert got == []
    got, t = type_text(asm, "X" * 11, t + 1)
    assert got == []  # overflow dropped; the Enter alone delivers nothing
    asm.press("KEY_1", t + 1)
    asm.press("KEY_F5", t + 1.01)
    assert asm.pending == ""
    assert asm.dropped == ["TB12", "X" * 11, "1"]


def test_sim_scanner_feeds_whole_barcodes_to_the_callback() -> None:
    now = [0.0]
    sc = SimScanner(clock=lambda: now[0])
    got: list[str] = []
    sc.start(got.append)
    assert sc.feed("TB2026112300001") == "TB2026112300001"
    assert got == ["TB2026112300001"]
    assert sc.feed("TB20", enter=False) is None
    now[0] += 2.0  # the half barcode is stale by the next scan
    sc.feed("TB2026112300002")
    assert got == ["TB2026112300001", "TB2026112300002"]
    assert sc.assembler.dropped == ["TB20"]
    sc.stop()
    sc.feed("TB2026112300003")
    assert len(got) == 2  # stopped: nobody is called
    assert sc.delivered[-1] == "TB2026112300003"


def test_a_character_no_scan_gun_types_is_refused() -> None:
    with pytest.raises(ScannerError, match="cannot type"):
        SimScanner().feed("TB\u00e9")


def test_auto_detect_finds_a_scan_gun_or_says_how_to_set_it(tmp_path: Path) -> None:
    with pytest.raises(ScannerError, match="no barcode scanner found"):
        find_scanner_device(tmp_path, tmp_path / "none")
    (tmp_path / "usb-Logitech_Keyboard-event-kbd").touch()
    with pytest.raises(ScannerError, match=r"hardware\.scanner\.device"):
        find_scanner_device(tmp_path, tmp_path / "none")
    gun = tmp_path / "usb-Honeywell_Barcode_Scanner-event-kbd"
    gun.touch()
    assert find_scanner_device(tmp_path, tmp_path / "none") == gun
    named = tmp_path / "barcode-scanner"
    named.touch()
    assert find_scanner_device(tmp_path, named) == named


@pytest.mark.skipif(
    importlib.util.find_spec("evdev") is not None, reason="evdev is installed: this is a Pi"
)
def test_evdev_scanner_without_evdev_says_what_to_install() -> None:
    with pytest.raises(ScannerError, match=r"sampling-station\[pi\]"):
        EvdevScanner("/dev/input/event0")


# -- the evdev reader, on a fake input device --------------------------------------------


class FakeEvent:
    def __init__(self, type_: int, code: int, value: int) -> None:
        self.type, self.code, self.value = type_, code, value


class FakeInputDevice:
    """An evdev.InputDevice stand-in: a pipe makes it readable, events come from a list."""

    opened: ClassVar[list[FakeInputDevice]] = []

    def __init__(self, path: str) -> None:
        if not path.startswith("/dev/input/"):
            raise FileNotFoundError(2, "No such file or directory")
        self.path = path
        self._r, self._w = os.pipe()
        self.fd = self._r
        self.pending: list[FakeEvent] = []
        self.grabbed = False
        self.fail: OSError | None = None
        self.lock = threading.Lock()
        FakeInputDevice.opened.append(self)

    def grab(self) -> None:
        self.grabbed = True

    def ungrab(self) -> None:
        self.grabbed = False

    def push(self, events: list[FakeEvent]) -> None:
        with self.lock:
            self.pending += events
        os.write(self._w, b"x")

    def read(self) -> list[FakeEvent]:
        os.read(self._r, 1)
        if self.fail is not None:
            raise self.fail
        with self.lock:
            out, self.pending = self.pending, []
        return out

    def close(self) -> None:
        for fd in (self._r, self._w):
            with contextlib.suppress(OSError):
                os.close(fd)


EV_KEY, EV_MSC = 1, 4
CODES = {"KEY_LEFTSHIFT": 42, "KEY_ENTER": 28, "KEY_T": 20, "KEY_B": 48, "KEY_1": 2, "KEY_2": 3}


@pytest.fixture
def fake_evdev(monkeypatch: pytest.MonkeyPatch):
    module = types.ModuleType("evdev")
    module.InputDevice = FakeInputDevice  # type: ignore[attr-defined]
    ecodes = types.SimpleNamespace(EV_KEY=EV_KEY, KEY={v: k for k, v in CODES.items()})
    module.ecodes = ecodes  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "evdev", module)
    FakeInputDevice.opened.clear()
    yield module
    for dev in FakeInputDevice.opened:
        dev.close()


def key_events(text: str) -> list[FakeEvent]:
    out: list[FakeEvent] = []
    for key, shift in keys_for(text):
        if shift:
            out.append(FakeEvent(EV_KEY, CODES["KEY_LEFTSHIFT"], 1))
        out += [FakeEvent(EV_MSC, 4, 458775), FakeEvent(EV_KEY, CODES[key], 1)]
        out.append(FakeEvent(EV_KEY, CODES[key], 0))
        if shift:
            out.append(FakeEvent(EV_KEY, CODES["KEY_LEFTSHIFT"], 0))
    return out


def test_evdev_scanner_delivers_whole_barcodes_and_grabs_the_device(fake_evdev) -> None:
    got: queue.Queue[str] = queue.Queue()
    sc = EvdevScanner("/dev/input/barcode-scanner", min_length=4)
    dev = FakeInputDevice.opened[-1]
    assert dev.grabbed
    sc.start(got.put)
    try:
        dev.push(key_events("TB1212"))
        dev.push([FakeEvent(EV_KEY, CODES["KEY_ENTER"], 1)])
        assert got.get(timeout=2.0) == "TB1212"
        # A half barcode (no Enter) never arrives, and the next whole one does.
        dev.push(key_events("TB12"))
        time.sleep(0.7)
        dev.push([*key_events("TB2121"), FakeEvent(EV_KEY, CODES["KEY_ENTER"], 1)])
        assert got.get(timeout=2.0) == "TB2121"
        assert got.empty()
        assert sc.assembler.dropped == ["TB12"]
    finally:
        sc.stop(2.0)
    assert not dev.grabbed


def test_evdev_scanner_reports_an_unplugged_gun_and_reopens_it(fake_evdev) -> None:
    faults: list[ScannerError] = []
    got: queue.Queue[str] = queue.Queue()
    sc = EvdevScanner("/dev/input/barcode-scanner", min_length=4, on_fault=faults.append)
    first = FakeInputDevice.opened[-1]
    sc.start(got.put)
    try:
        first.fail = OSError(19, "No such device")
        first.push([])
        deadline = time.monotonic() + 3
        while len(FakeInputDevice.opened) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(faults) == 1
        assert "No such device" in str(faults[0])
        again = FakeInputDevice.opened[-1]
        assert again is not first
        again.push([*key_events("TB1221"), FakeEvent(EV_KEY, CODES["KEY_ENTER"], 1)])
        assert got.get(timeout=3.0) == "TB1221"
    finally:
        sc.stop(2.0)


def test_evdev_scanner_that_cannot_open_its_device_says_why(fake_evdev) -> None:
    with pytest.raises(ScannerError, match="cannot open the scanner /nowhere"):
        EvdevScanner("/nowhere")
