"""The kiosk's screens in a real Kivy window (offscreen SDL), driven by touches.

Kivy configures itself once per process from the environment, so the screens run in a
child process (``python -m tests.test_kiosk_ui OUT CONFIG``) that drives a whole session:
residents through every screen, the language switched by touching its button, the sampler
panel unlocked by typing the PIN on the keypad, a tube sealed and a hand-taken temperature
entered by touch. It saves a picture of every screen in both languages and a JSON record
of what each screen showed; the tests here read them. ``python -m tests.test_kiosk_ui
docs/screenshots`` refreshes the pictures in the documentation.
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from PIL import Image, ImageChops, ImageFont

from firmware.thermometer import DEFAULT_ADDRESS
from kiosk_ui.core.flow import State
from kiosk_ui.core.i18n import STRINGS, all_text, missing, t
from kiosk_ui.core.staff_lock import hash_secret
from kiosk_ui.drills.issuer import Issuer, jwks
from kiosk_ui.errors import FontError
from kiosk_ui.screens import fonts
from tests.support.config import write_config

ROOT = Path(__file__).resolve().parents[1]
PIN = "2468"
SCREENS = [
    "idle",
    "measuring_again",
    "result",
    "result_green_lane",
    "wait",
    "isolation",
    "staff",
    "manual_temperature",
    "unlock",
    "panel",
    "id_entry",
    "fault_camera",
]
TOFU = "\U0010fffd"  # a private-use code point no font has: drawn as the missing-glyph box


# -- the child process ------------------------------------------------------------------------


def _write_station(directory: Path) -> tuple[Path, dict[str, str]]:
    issuer = Issuer.generate("EdDSA")
    codes = {
        "green": issuer.issue("R1", "green", name="张三"),
        "green2": issuer.issue("R2", "green", name="李四"),
        "elder": issuer.issue("R3", "green", name="王老五", cat=["elderly"]),
        "wait": issuer.issue("R4", "green", name="赵六"),
        "red": issuer.issue("R5", "red", name="钱七"),
        "hand": issuer.issue("R6", "green", name="孙八"),
    }
    (directory / "staff.pins").write_text(hash_secret(PIN, 1000) + "\n")
    (directory / "id.key").write_text("kiosk-test-id-key-0123456789")
    config = write_config(
        directory,
        {
            "sampling": {"pool_size": 3},
            "broker": {"url": "mqtt://127.0.0.1:9", "allow_plaintext": True},
            "kiosk": {
                "staff_pin_file": "staff.pins",
                "id_hash_key_file": "id.key",
                "result_timeout_s": 60.0,
            },
        },
        jwks=jwks([issuer]),
    )
    return config, codes


class Driver:
    """The screens driven as a person would, from a thread of the child process: touches on
    the real widgets, the simulated devices, and a record of what each screen showed."""

    def __init__(self, running: Any, out: Path) -> None:
        self.running = running
        self.kiosk, self.app = running.kiosk, running.app
        self.ui, self.core = running.screens, running.core
        sim = self.kiosk.hardware.sim
        assert sim is not None
        self.sim = sim
        self.out = out
        self.record: dict[str, Any] = {"screens": {}, "errors": [], "labels_wrong": []}
        self.states: list[State] = []
        self.cond = threading.Condition()
        self.kiosk.views.append(self._on_view)

    def _on_view(self, view: Any) -> None:
        with self.cond:
            self.states.append(view.state)
            self.cond.notify_all()

    def mark(self) -> int:
        with self.cond:
            return len(self.states)

    def wait_state(self, since: int, *want: State, timeout: float = 15.0) -> None:
        """Wait until one of ``want`` was published after the mark ``since``."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while not any(s in want for s in self.states[since:]):
                if not self.cond.wait(max(0.0, deadline - time.monotonic())):
                    v = self.kiosk.flow.view
                    raise TimeoutError(
                        f"no {want} within {timeout} s (seen {self.states[-5:]}; "
                        f"reason {v.reason}, {v.message('en')})"
                    )

    def frames(self, n: int = 3) -> None:
        """Let the core thread finish what it was given, and the screens draw it."""
        self.core.call(lambda: None)
        for _ in range(n):
            self.ui.call(lambda: None)
            time.sleep(1 / 60)

    def touch(self, find: Callable[[], Any]) -> None:
        from kivy.tests.common import UnitTestTouch  # noqa: PLC0415

        def press() -> None:
            w = find()
            x, y = w.to_window(*w.center)
            t_ = UnitTestTouch(x, y)
            t_.touch_down()
            t_.touch_up()

        self.ui.call(press)
        self.frames(1)
        self.frames()

    def type_keys(self, keys: str) -> None:
        for key in keys:
            self.touch(functools.partial(_key, self.app, key))

    def texts(self) -> dict[str, Any]:
        app, kiosk = self.app, self.kiosk

        def read() -> dict[str, Any]:
            r = app.resident
            return {
                "screen": app.root.current,
                "state": kiosk.flow.state.value,
                "title": r.title,
                "line1": r.line1,
                "line2": r.line2,
                "line3": r.line3,
                "lights": kiosk.hardware.lights.snapshot(),
                "panel_tube": app.panel.tube_text,
                "panel_message": app.panel.message_text,
                "panel_link": app.panel.link_text,
                "entry_prompt": app.entry.prompt,
                "entry_shown": app.entry.shown,
                "entry_error": app.entry.error,
            }

        return dict(self.ui.call(read))

    def switch_language(self) -> None:
        """By touch on the language button; the keypad has none, so there by the app."""
        app = self.app
        current = self.ui.call(lambda: app.root.current)
        if current == "entry":
            self.ui.call(app.toggle_language)
        elif current == "panel":
            self.touch(lambda: app.panel.ids.language)
        else:
            self.touch(lambda: app.resident.ids.lang)

    def capture(self, name: str) -> None:
        """A picture and a record of the screen in each language."""
        from kivy.core.text import Label as CoreLabel  # noqa: PLC0415

        self.frames()
        for lang in ("zh", "en"):
            if self.ui.call(lambda: self.app.lang) != lang:
                self.switch_language()
            self.frames(2)
            self.frames(2)
            self.ui.screenshot(self.out / f"{name}-{lang}.png")
            self.record["screens"][f"{name}-{lang}"] = self.texts()
            wrong = self.ui.call(lambda: _labels_drawn_wrong(self.app, CoreLabel))
            self.record["labels_wrong"] += [f"{name}-{lang}: {w}" for w in wrong]
        self.switch_language()
        self.frames()

    def show(self, code: str, *temps: float) -> None:
        sim = self.sim
        sim.camera.clear()  # the last resident steps away first
        time.sleep(0.2)
        sim.thermometer.clear_queue()
        if temps:
            sim.thermometer.queue(temps)
        self.kiosk.decoder.forget()
        sim.camera.show(code)

    def resident(self, code: str, *temps: float, until: State, name: str | None = None) -> None:
        """A resident shows ``code``; wait for ``until``; they step away; capture ``name``."""
        m = self.mark()
        self.show(code, *temps)
        self.wait_state(m, until)
        self.sim.camera.clear()
        if name is not None:
            self.capture(name)


def _residents(d: Driver, codes: dict[str, str]) -> None:
    """Residents through every resident screen, the thermometer failing at the end."""
    sim = d.sim
    d.wait_state(0, State.IDLE, timeout=5)
    d.frames(5)
    d.capture("idle")
    sim.scanner.feed("TB2026112300001")
    d.frames()
    # A first reading above the threshold: the kiosk asks for a second one.
    m = d.mark()
    d.show(codes["green"], 37.9)
    d.wait_state(m, State.REMEASURE)
    d.capture("measuring_again")
    m = d.mark()
    sim.thermometer.present(36.6)
    d.wait_state(m, State.RESULT)
    sim.thermometer.leave()
    sim.camera.clear()
    d.capture("result")
    d.resident(codes["elder"], 36.5, until=State.RESULT, name="result_green_lane")
    d.resident(codes["green2"], 36.4, until=State.RESULT)
    d.resident(codes["wait"], 36.4, until=State.WAIT, name="wait")
    d.resident(codes["red"], until=State.ISOLATION, name="isolation")
    d.resident("TB2026112300077", until=State.STAFF, name="staff")
    # The thermometer stops answering: staff take the temperature by hand.
    sim.thermometer.bus.devices.pop(DEFAULT_ADDRESS, None)
    d.resident(codes["hand"], until=State.MANUAL_TEMPERATURE, name="manual_temperature")


def _unlock(d: Driver) -> None:
    """The sampler panel: a wrong PIN, then the right one, typed on the keypad."""
    from kivy.uix.button import Button  # noqa: PLC0415

    app, record = d.app, d.record
    d.touch(lambda: app.resident.ids.staff)
    d.type_keys("1111")
    d.touch(lambda: app.entry.ids.ok)
    d.frames()
    record["wrong_pin"] = d.texts()
    d.type_keys(PIN)
    record["pin_shown"] = d.texts()["entry_shown"]
    d.capture("unlock")
    d.touch(lambda: app.entry.ids.ok)
    deadline = time.monotonic() + 10
    while d.ui.call(lambda: app.root.current) != "panel" and time.monotonic() < deadline:
        time.sleep(0.05)
    d.frames()
    record["touch_targets"] = d.ui.call(
        lambda: sorted(
            {
                round(w.height)
                for w in app.panel.walk()
                if isinstance(w, Button) and w.opacity > 0 and w.height > 0
            }
        )
    )
    d.capture("panel")
    record["panel_members"] = d.ui.call(
        lambda: [row.text for row in reversed(app.panel.ids.members.children)]
    )


def _panel_actions(d: Driver) -> None:
    """A standing alert, a hand-typed temperature, seal, void and dispatch by touch."""
    app, kiosk, sim, record = d.app, d.kiosk, d.sim, d.record
    # A second failure in a row: the thermometer is taken for faulty, a standing alert
    # that the gateway hears of and the panel lists.
    d.core.call(lambda: kiosk.flow.sensor_fault("no answer at I2C address 0x5A"))
    d.core.call(app._gather_status)
    d.frames(2)
    record["thermometer_alert"] = d.texts()
    # The hand-taken temperature, typed on the keypad.
    d.touch(lambda: app.panel.ids.manual_temp)
    d.type_keys("36.5")
    m = d.mark()
    d.touch(lambda: app.entry.ids.ok)
    d.wait_state(m, State.WAIT, State.RESULT)
    record["after_hand_reading"] = d.texts()
    sim.thermometer.bus.attach(DEFAULT_ADDRESS, sim.thermometer.device)
    d.core.call(kiosk.flow.thermometer_ok)
    # Seal the full tube by touch: the waiting residents join the next tube.
    d.ui.call(app.open_panel)
    d.frames()
    d.touch(lambda: app.panel.ids.seal)
    record["after_seal"] = d.texts()
    # The next tube takes the waiting residents; void it by touch, with a reason.
    sim.scanner.feed("TB2026112300002")
    d.frames()
    record["next_tube"] = d.texts()
    d.touch(lambda: app.panel.ids.void)
    d.touch(lambda: _reason_button(app, 0))
    record["after_void"] = d.texts()
    # Pack the sealed tube: scan the box, touch dispatch.
    sim.scanner.feed("BX20261123A1")
    d.frames()
    d.touch(lambda: app.panel.ids.dispatch)
    record["after_dispatch"] = d.texts()


def _id_and_faults(d: Driver) -> None:
    """A resident checked in by ID number; the camera and the storage failing."""
    from kivy.core.text import Label as CoreLabel  # noqa: PLC0415

    app, kiosk, sim, record = d.app, d.kiosk, d.sim, d.record
    d.touch(lambda: app.panel.ids.manual_id)
    d.type_keys("11010519491231002X")
    d.capture("id_entry")
    m = d.mark()
    d.touch(lambda: app.entry.ids.ok)
    sim.thermometer.present(36.6)
    d.wait_state(m, State.WAIT, State.RESULT)
    sim.thermometer.leave()
    record["after_id"] = d.texts()
    # The camera stops delivering frames.
    m = d.mark()
    sim.camera.stall()
    d.wait_state(m, State.FAULT)
    d.capture("fault_camera")
    m = d.mark()
    sim.camera.resume()
    d.wait_state(m, State.IDLE)
    record["after_camera"] = d.texts()
    # A storage fault: staff clear it from the panel once the disk has room again.
    d.core.call(lambda: kiosk.flow.storage_fault("database or disk is full"))
    d.frames()
    record["storage_fault"] = d.texts()
    d.ui.call(app.open_panel)
    d.frames()
    d.touch(lambda: app.panel.ids.clear_fault)
    record["after_clear_fault"] = d.texts()
    record["glyphs"] = d.ui.call(lambda: _glyph_pixels(CoreLabel))


def _drive(out: Path, config_path: Path, codes: dict[str, str]) -> None:
    from kiosk_ui.kiosk_cli import prepare_kivy  # noqa: PLC0415

    prepare_kivy(window=False)
    from kivy.clock import Clock  # noqa: PLC0415

    from firmware.config import load_config  # noqa: PLC0415
    from firmware.hardware import build_hardware  # noqa: PLC0415
    from kiosk_ui.screens.running import Running  # noqa: PLC0415

    config = load_config(config_path)
    running = Running(config, build_hardware(config))
    d = Driver(running, out)

    def run_session() -> None:
        try:
            _residents(d, codes)
            _unlock(d)
            _panel_actions(d)
            _id_and_faults(d)
        except BaseException as exc:
            d.record["errors"].append(f"{type(exc).__name__}: {exc}")
        finally:
            (out / "record.json").write_text(json.dumps(d.record, ensure_ascii=False, indent=1))
            Clock.schedule_once(lambda dt: running.app.stop(), 0)

    driver = threading.Thread(target=run_session, name="ui-test", daemon=True)
    Clock.schedule_once(lambda dt: driver.start(), 0.3)
    try:
        running.run()
    finally:
        driver.join(10)


def _key(app: Any, key: str) -> Any:
    for w in app.entry.ids.keypad.children:
        if w.text == key:
            return w
    raise LookupError(f"no key {key!r} on the keypad")


def _reason_button(app: Any, index: int) -> Any:
    box = app.void_view.children[0]
    return list(reversed(box.children))[index]


def _labels_drawn_wrong(app: Any, core_label: Any) -> list[str]:
    """The resident screen's labels whose texture is not their own text drawn afresh with
    their options (the texture cache must never show another text or another width)."""
    wrong = []
    for name in ("title", "line1", "line2", "line3", "line3b"):
        label = app.resident.ids[name]
        if not label.text:
            continue
        options = {k: v for k, v in label._label.options.items() if k != "text"}
        fresh = core_label(text=label.text, **options)
        fresh.usersize = label._label.usersize
        fresh.refresh()
        shown, want = label.texture, fresh.texture
        if shown is None or tuple(shown.size) != tuple(want.size) or shown.pixels != want.pixels:
            wrong.append(f"{name} {label.text!r}")
    return wrong


def _glyph_pixels(core_label: Any) -> dict[str, Any]:
    """Each sample character drawn by Kivy with the screen font, against the missing-glyph box."""

    def pixels(text: str) -> tuple[int, int, str]:
        lbl = core_label(text=text, font_name="Station", font_size=48)
        lbl.refresh()
        tex = lbl.texture
        return tex.width, tex.height, tex.pixels.hex()

    return {ch: pixels(ch) for ch in "体温请到隔离区采样管℃0123456789" + TOFU}


def child_main(argv: list[str]) -> int:
    """``python -m tests.test_kiosk_ui OUT [--docs]``; ``--docs`` keeps small pictures only."""
    out = Path(argv[0])
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        config, codes = _write_station(Path(tmp))
        _drive(out, config, codes)
    record = json.loads((out / "record.json").read_text())
    if record["errors"]:
        print("\n".join(record["errors"]), file=sys.stderr)
        return 1
    if "--docs" in argv:
        (out / "record.json").unlink()
        for png in out.glob("*.png"):
            small = Image.open(png).convert("RGB").quantize(colors=48, dither=Image.Dither.NONE)
            small.save(png, optimize=True)
    return 0


# -- the tests --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def session(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    out = tmp_path_factory.mktemp("screens")
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    env["KIVY_HOME"] = str(out / "kivy-home")
    env["XDG_CACHE_HOME"] = str(tmp_path_factory.getbasetemp() / "cache")
    proc = subprocess.run(
        [sys.executable, "-m", "tests.test_kiosk_ui", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=150,
        check=False,
    )
    record_path = out / "record.json"
    assert record_path.exists(), proc.stderr[-3000:]
    record = json.loads(record_path.read_text())
    assert proc.returncode == 0, (record["errors"], proc.stderr[-3000:])
    return out, record


@pytest.mark.kivy
@pytest.mark.timeout(200)
def test_every_screen_is_captured_in_both_languages(session: tuple[Path, dict[str, Any]]) -> None:
    out, record = session
    for name in SCREENS:
        zh = Image.open(out / f"{name}-zh.png").convert("RGB")
        en = Image.open(out / f"{name}-en.png").convert("RGB")
        assert zh.size == en.size == (800, 480), name
        # the language button changes what is drawn, not just a property
        assert ImageChops.difference(zh, en).getbbox() is not None, name
    states = {k: v["state"] for k, v in record["screens"].items()}
    assert states["result-zh"] == "result"
    assert states["wait-en"] == "wait"
    assert states["isolation-zh"] == "isolation"
    assert states["fault_camera-en"] == "fault"


@pytest.mark.kivy
def test_result_screen_says_lane_place_and_masked_name(
    session: tuple[Path, dict[str, Any]],
) -> None:
    _, record = session
    zh, en = record["screens"]["result-zh"], record["screens"]["result-en"]
    assert zh["title"] == t("result.go", "zh")
    assert zh["line1"] == t("lane.main", "zh")
    assert zh["line2"] == "管内第 1/3 位"
    assert en["line2"] == "Tube place 1/3"
    assert zh["line3"].startswith("张*") and "36.6℃" in zh["line3"]
    assert "张三" not in json.dumps(record, ensure_ascii=False)
    assert zh["lights"] == {"main": "go", "green": "idle", "isolation": "idle"}
    green = record["screens"]["result_green_lane-en"]
    assert green["line1"] == t("lane.green", "en") and green["lights"]["green"] == "go"


@pytest.mark.kivy
def test_wait_isolation_staff_and_fault_say_what_happens_next(
    session: tuple[Path, dict[str, Any]],
) -> None:
    _, record = session
    s = record["screens"]
    assert s["wait-zh"]["line1"] == t("wait.full", "zh")
    assert s["wait-zh"]["lights"]["main"] == "wait"
    assert s["isolation-en"]["line2"] == t("isolation.next", "en")
    assert s["isolation-en"]["lights"]["isolation"] == "isolate"
    assert "tube" in s["staff-en"]["line1"].lower()  # the tube-on-camera message
    assert s["manual_temperature-zh"]["line1"] == t("fault.thermometer", "zh")
    assert s["fault_camera-zh"]["line1"] == t("fault.camera", "zh")
    assert s["measuring_again-en"]["title"] == t("measure.again", "en")
    assert record["after_camera"]["state"] == "idle"


@pytest.mark.kivy
def test_staff_panel_by_touch(session: tuple[Path, dict[str, Any]]) -> None:
    _, record = session
    assert record["wrong_pin"]["entry_error"] == t("panel.wrong_pin", "zh")
    assert record["pin_shown"] == "●●●●"
    assert record["screens"]["panel-zh"]["screen"] == "panel"
    assert "3/3" in record["screens"]["panel-en"]["panel_tube"]
    assert record["panel_members"] == ["1. 张* · R1", "2. 王** · R3", "3. 李* · R2"]
    # the hand-taken temperature checked the resident in (the tube was full: waiting)
    assert record["after_hand_reading"]["state"] == "wait"
    assert "已封管" in record["after_seal"]["panel_message"]
    assert record["after_id"]["state"] in ("result", "wait")
    assert "TB2026112300002  2/3" in record["next_tube"]["panel_tube"]
    assert "已作废" in record["after_void"]["panel_message"]
    assert "BX20261123A1" in record["after_dispatch"]["panel_message"]
    assert "1 支试管" in record["after_dispatch"]["panel_message"]
    assert record["screens"]["id_entry-en"]["entry_shown"] == "11010519491231002X"
    assert record["storage_fault"]["line1"] == t("fault.storage", "zh")
    assert record["after_clear_fault"]["state"] == "idle"
    # the red code's alert, in the panel's language
    assert "红码" in record["screens"]["panel-zh"]["panel_link"]
    assert record["thermometer_alert"]["screen"] == "panel"
    assert t("alert.sensor_fault.thermometer", "zh") in record["thermometer_alert"]["panel_link"]
    assert "red code" in record["screens"]["panel-en"]["panel_link"]


@pytest.mark.kivy
def test_every_label_shows_its_own_text_at_its_own_width(
    session: tuple[Path, dict[str, Any]],
) -> None:
    # The resident screen reuses textures drawn before (and drawn ahead at start): each
    # capture compares what every label shows with its text drawn afresh.
    _, record = session
    assert len(record["screens"]) == 2 * len(SCREENS)
    assert record["labels_wrong"] == []


@pytest.mark.kivy
def test_touch_targets_are_big_enough_for_gloved_fingers(
    session: tuple[Path, dict[str, Any]],
) -> None:
    _, record = session
    # 800x480 on the 7" display's 154 mm: 80 px = 15.4 mm
    assert record["touch_targets"], "no buttons found on the panel"
    assert min(record["touch_targets"]) >= 80


@pytest.mark.kivy
def test_chinese_is_drawn_with_real_glyphs_not_missing_glyph_boxes(
    session: tuple[Path, dict[str, Any]],
) -> None:
    _, record = session
    glyphs = record["glyphs"]
    tofu = glyphs.pop(TOFU)
    drawn = [tuple(v) for v in glyphs.values()]
    for ch, pix in glyphs.items():
        assert tuple(pix) != tuple(tofu), f"{ch!r} is drawn as the missing-glyph box"
        assert any(int(pix[2][i : i + 2], 16) for i in range(6, len(pix[2]), 8)), ch
    assert len(set(drawn)) == len(drawn), "two characters look the same"


def test_every_string_is_translated_and_the_font_has_every_glyph() -> None:
    assert missing() == []
    files = fonts.find_fonts()
    font = ImageFont.truetype(str(files.regular), 32)
    tofu = font.getmask(TOFU)
    tofu_bytes = bytes(tofu)
    for ch in sorted(set(all_text() + "℃0123456789●←")):
        if ch.isspace():
            continue
        mask = font.getmask(ch)
        assert bytes(mask) != tofu_bytes or mask.size != tofu.size, f"no glyph for {ch!r}"


def test_the_font_is_the_simplified_chinese_face(tmp_path: Path) -> None:
    files = fonts.find_fonts(cache_dir=tmp_path)
    assert fonts.face_names(files.regular) == ["Noto Sans CJK SC"]
    # The collection's first face is the Japanese one: that is what Kivy would open.
    collection = Path("/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc")
    if collection.exists():
        assert fonts.face_names(collection)[0] != "Noto Sans CJK SC"
        assert fonts.face_names(collection)[fonts.sc_face_index(collection)] == ("Noto Sans CJK SC")
    # SC and JP draw some shared code points differently; the extracted face is SC's.
    sc = ImageFont.truetype(str(files.regular), 64)
    jp = ImageFont.truetype(str(collection), 64, index=0)
    assert bytes(sc.getmask("直")) != bytes(jp.getmask("直"))


def test_no_font_gives_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FontError, match="fonts-noto-cjk"):
        fonts.find_fonts(dirs=(tmp_path,), cache_dir=tmp_path)


def test_strings_table_is_not_empty() -> None:
    assert len(STRINGS) > 50


if __name__ == "__main__":
    raise SystemExit(child_main(sys.argv[1:]))
