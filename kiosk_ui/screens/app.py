"""The kiosk's Kivy app: screens that draw the flow's views and forward touches.

Nothing here decides anything. The resident screen draws a :class:`~kiosk_ui.core.flow.View`
(colour, an icon and words, never colour alone); the sampler panel calls the kiosk's
actions (``kiosk_ui.kiosk.Kiosk``) and shows their answers. Layout is in ``screens.kv``.

Import this module only after :func:`kiosk_ui.kiosk_cli.prepare_kivy`: Kivy configures
itself from the environment on first import.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any, ClassVar

import numpy as np
from kivy.app import App
from kivy.clock import Clock
from kivy.core.text import LabelBase
from kivy.core.window import Window
from kivy.graphics import Color, Ellipse, Line, Triangle
from kivy.graphics.opengl import glFlush
from kivy.graphics.texture import Texture
from kivy.lang import Builder
from kivy.properties import (
    BooleanProperty,
    ColorProperty,
    ListProperty,
    StringProperty,
)
from kivy.uix.boxlayout import BoxLayout
from kivy.uix.button import Button
from kivy.uix.label import Label
from kivy.uix.layout import Layout
from kivy.uix.modalview import ModalView
from kivy.uix.screenmanager import NoTransition, Screen, ScreenManager
from kivy.uix.widget import Widget

from firmware.config import StationConfig
from firmware.errors import StationError
from firmware.hardware import Hardware, build_hardware
from firmware.systemd import Notifier
from kiosk_ui.core.codes import Reason, rejection_message
from kiosk_ui.core.flow import FaultKind, State, View
from kiosk_ui.core.i18n import STRINGS, Language, t
from kiosk_ui.core.national_id import NationalIdError
from kiosk_ui.core.rules import RuleViolation, Thresholds
from kiosk_ui.kiosk import Kiosk, build
from kiosk_ui.panel import LinkStatus
from kiosk_ui.screens import fonts
from kiosk_ui.speech import EspeakSpeaker
from kiosk_ui.workers import CORE_STALL_S, LoopThread, Watchdog, call_on

log = logging.getLogger(__name__)

KV = Path(__file__).with_name("screens.kv")
UI_SWITCH_INTERVAL_S = 0.001  # see Running.run
FONT = "Station"

# Background per state: the colour says it from afar, the icon and the words say it too.
COLOURS: dict[str, tuple[float, float, float, float]] = {
    "idle": (0.11, 0.20, 0.33, 1),
    "measure": (0.45, 0.30, 0.02, 1),
    "go": (0.06, 0.42, 0.20, 1),
    "green": (0.0, 0.50, 0.30, 1),
    "wait": (0.55, 0.36, 0.0, 1),
    "isolate": (0.62, 0.0, 0.10, 1),
    "staff": (0.12, 0.27, 0.55, 1),
    "fault": (0.25, 0.25, 0.27, 1),
}
REASONS = frozenset(r.value for r in Reason)
VOID_REASONS = ("void.spilled", "void.mislabelled", "void.contaminated")
ID_COLORS = ("green", "yellow", "red")
ID_COLOR_RGBA = {
    "green": (0.10, 0.50, 0.23, 1),
    "yellow": (0.70, 0.55, 0.0, 1),
    "red": (0.62, 0.0, 0.10, 1),
}


class Icon(Widget):
    """A shape that says the state without colour: check, cross, clock, warning, ..."""

    kind = StringProperty("idle")

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.bind(pos=self._draw, size=self._draw, kind=self._draw)

    def _draw(self, *_: Any) -> None:
        self.canvas.clear()
        s = min(self.width, self.height) * 0.8
        cx, cy = self.center
        x0, y0 = cx - s / 2, cy - s / 2
        w = max(6.0, s / 14)
        with self.canvas:
            Color(1, 1, 1, 1)
            if self.kind in ("go", "green"):
                Line(circle=(cx, cy, s / 2), width=w)
                Line(
                    points=[
                        x0 + s * 0.25,
                        cy,
                        x0 + s * 0.45,
                        y0 + s * 0.28,
                        x0 + s * 0.76,
                        y0 + s * 0.72,
                    ],
                    width=w * 1.3,
                )
            elif self.kind in ("staff", "stop"):
                Line(circle=(cx, cy, s / 2), width=w)
                d = s * 0.22
                Line(points=[cx - d, cy - d, cx + d, cy + d], width=w * 1.3)
                Line(points=[cx - d, cy + d, cx + d, cy - d], width=w * 1.3)
            elif self.kind in ("wait", "measure"):
                Line(circle=(cx, cy, s / 2), width=w)
                Line(points=[cx, cy, cx, cy + s * 0.32], width=w)
                Line(points=[cx, cy, cx + s * 0.22, cy], width=w)
            elif self.kind in ("isolate", "fault"):
                Triangle(points=[cx, y0 + s, x0, y0 + s * 0.1, x0 + s, y0 + s * 0.1])
                Color(*COLOURS[self.kind])
                Line(points=[cx, y0 + s * 0.75, cx, y0 + s * 0.38], width=w * 1.2)
                Ellipse(pos=(cx - w * 1.2, y0 + s * 0.2 - w), size=(w * 2.4, w * 2.4))


class CachedLabel(Label):
    """A label that keeps the textures of texts it has drawn before.

    The resident screen shows a small set of texts over and over (titles, lanes, places);
    drawing large CJK text costs 10-40 ms of the UI thread each time, a whole frame and
    more. Textures are kept by text and every drawing option, up to ``LIMIT`` of them.
    """

    LIMIT = 512  # the resident screen's fixed texts (about 250, warmed at start) and more
    _cache: ClassVar[OrderedDict[tuple[Any, ...], Any]] = OrderedDict()

    def texture_update(self, *largs: Any) -> None:
        text = self._label.text
        if not text:
            super().texture_update(*largs)
            return
        # ``text_size`` is kept apart from the other options, as the core label's usersize
        key = (
            text,
            repr(self._label.usersize),
            *sorted((k, repr(v)) for k, v in self._label.options.items()),
        )
        texture = self._cache.get(key)
        if texture is None:
            super().texture_update(*largs)
            drawn: Any = getattr(self, "texture", None)
            if drawn is not None:
                # Kivy fills a label's texture when it is first drawn, from whatever text
                # its core label holds by then, and refills the same texture for the next
                # text of the same size: fill it now, and let the next text have its own.
                drawn.bind()
                self._label.texture = None
                self._cache[key] = drawn
                while len(self._cache) > self.LIMIT:
                    self._cache.popitem(last=False)
            return
        self._cache.move_to_end(key)
        self.texture = texture
        self.texture_size = list(texture.size)
        self.is_shortened = False

    def prepare(self, text: str) -> None:
        """Draw ``text`` with this label's options into the cache, as if shown; the label
        shows its own text again afterwards."""
        shown = str(getattr(self, "text", ""))
        self.text = text
        self.texture_update()
        self.text = shown
        self.texture_update()


class GuideBox(Widget):
    """The frame a resident holds the code inside, drawn over the camera preview."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.bind(pos=self._draw, size=self._draw)

    def _draw(self, *_: Any) -> None:
        self.canvas.clear()
        s = min(self.width, self.height) * 0.7
        x, y = self.center_x - s / 2, self.center_y - s / 2
        with self.canvas:
            Color(1, 0.85, 0.2, 1)
            Line(rectangle=(x, y, s, s), width=4)


class ResidentScreen(Screen):
    bg = ColorProperty(COLOURS["idle"])
    icon = StringProperty("idle")
    preview = BooleanProperty(True)
    title = StringProperty("")
    line1 = StringProperty("")
    line2 = StringProperty("")
    line3 = StringProperty("")  # the two pieces below, as one line of text
    line3a = StringProperty("")
    line3b = StringProperty("")
    banner = StringProperty("")
    lang_text = StringProperty("")
    staff_text = StringProperty("")
    station_text = StringProperty("")


class MemberRow(BoxLayout):
    text = StringProperty("")
    resident = StringProperty("")
    remove_text = StringProperty("")


class PanelScreen(Screen):
    tube_text = StringProperty("")
    lang_text = StringProperty("")
    back_text = StringProperty("")
    lock_text = StringProperty("")
    t_seal = StringProperty("")
    t_void = StringProperty("")
    t_single = StringProperty("")
    t_dispatch = StringProperty("")
    t_manual_id = StringProperty("")
    t_manual_temp = StringProperty("")
    t_clear_fault = StringProperty("")
    fault_active = BooleanProperty(False)
    single_armed = BooleanProperty(False)
    temp_needed = BooleanProperty(False)
    counters_text = StringProperty("")
    link_text = StringProperty("")
    link_color = ColorProperty((0.7, 1, 0.7, 1))
    message_text = StringProperty("")
    message_color = ColorProperty((1, 1, 1, 1))


class EntryScreen(Screen):
    mode = StringProperty("pin")  # pin | id | temp
    prompt = StringProperty("")
    shown = StringProperty("")
    error = StringProperty("")
    ok_text = StringProperty("")
    cancel_text = StringProperty("")
    color_text = StringProperty("")
    color_rgba = ColorProperty(ID_COLOR_RGBA["green"])
    value = StringProperty("")
    keys = ListProperty([])


class KioskApp(App):
    """The screens of one kiosk. ``kiosk`` is built by the composition root.

    The kiosk's flow, its station and its devices' results run on ``core`` (a thread of its
    own): a commit waits for the disk, and the UI thread must never wait with it. This app
    only draws what the core publishes and posts the touches to it.
    """

    def __init__(self, kiosk: Kiosk, core: LoopThread, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.kiosk = kiosk
        self.core = core
        self.link: LinkStatus | None = None
        self.title = "Sampling station"
        self.view: View | None = None
        self.entry_color = "green"
        self.box: str | None = None
        self.max_frame_gap_s = 0.0
        self.frame_gaps_s: list[float] = []
        self._last_frame = time.monotonic()
        self._measuring_gaps = False
        self._events: list[Any] = []
        self.on_ready: list[Callable[[], None]] = []
        self.first_frame_at: float | None = None  # time.monotonic() of the first flip
        self.ready_at: float | None = None
        self.warmed: tuple[int, float] = (0, 0.0)  # texts drawn ahead, seconds it took

    def _ui(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` on the UI thread (from the core thread)."""
        Clock.schedule_once(lambda dt: fn(), 0)

    def _core(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` on the kiosk's core thread (from a touch)."""
        self.core.post(fn)

    # -- building -------------------------------------------------------------------------

    def build(self) -> ScreenManager:
        files = fonts.find_fonts()
        LabelBase.register(FONT, fn_regular=str(files.regular), fn_bold=str(files.bold))
        Builder.load_file(str(KV))
        sm = ScreenManager(transition=NoTransition())
        self.resident = ResidentScreen()
        self.panel = PanelScreen()
        self.entry = EntryScreen()
        for screen in (self.resident, self.panel, self.entry):
            sm.add_widget(screen)
        self.kiosk.views.append(lambda v: self._ui(lambda: self.on_view(v)))
        self.kiosk.panel_listeners.append(self._gather_panel)
        self._events += [
            Clock.schedule_interval(self._preview, 1 / 10),
            Clock.schedule_interval(lambda dt: self._core(self._gather_status), 2.0),
            Clock.schedule_interval(self._frame, 0),
        ]
        Window.bind(on_flip=self._flipped)
        Window.bind(on_flip=self._submit_frame)
        return sm

    def _submit_frame(self, *_: Any) -> None:
        """Hand each finished frame to the GPU now. A display's buffer swap does so anyway;
        the offscreen window (drills, tests) has none, and software GL (Mesa's llvmpipe)
        would keep the frames queued until a new text's texture forces it to draw them all
        at once, on the UI thread, tens of milliseconds."""
        glFlush()

    def _flipped(self, *_: Any) -> None:
        """Each frame as it goes to the screen, until the one showing the flow's view."""
        if self.first_frame_at is None:
            self.first_frame_at = time.monotonic()
        if self.view is None or self.ready_at is not None:
            return
        Window.unbind(on_flip=self._flipped)
        self.ready_at = time.monotonic()
        Clock.schedule_once(lambda dt: self._became_ready(), 0)

    def _became_ready(self) -> None:
        started = time.monotonic()
        count = self.warm_texts()
        self.warmed = (count, time.monotonic() - started)
        log.info("%d texts drawn ahead in %.2f s", *self.warmed)
        for fn in list(self.on_ready):
            fn()

    def warm_texts(self) -> int:
        """Draw every fixed text of the resident screen, in both languages, before the first
        resident: titles, prompts, lanes, tube places ``k/n`` and temperatures. New large
        CJK textures cost a frame and more when made during a check-in; made here, a
        check-in reuses them and draws only the masked name. Returns how many."""
        r = self.resident
        labels = {
            0: r.ids.title,
            1: r.ids.line1,
            2: r.ids.line2,
            3: r.ids.line3,
            4: r.ids.line3b,
        }
        count = 0
        shown = r.preview
        # The idle screen's texts sit beside the camera preview, the others beside the
        # smaller icon: the labels have another width, and a texture is made for one.
        for preview in (True, False):
            r.preview = preview
            for widget in r.walk(restrict=True):
                if isinstance(widget, Layout):
                    widget.do_layout()
            texts: dict[int, set[str]] = {slot: set() for slot in labels}
            for view in self._sample_views():
                if (view.state is State.IDLE) != preview:
                    continue
                for lang in ("zh", "en"):
                    parts = self._texts(view, lang)[2:]
                    for slot, text in enumerate(parts):
                        if text:
                            texts[slot].add(text)
            for slot, label in labels.items():
                for text in sorted(texts[slot]):
                    label.prepare(text)
                    count += 1
        r.preview = shown
        for widget in r.walk(restrict=True):
            if isinstance(widget, Layout):
                widget.do_layout()
        return count

    def _sample_views(self) -> list[View]:
        """A view of every state with every fixed text it can show (no names)."""
        th = Thresholds.from_settings(self.kiosk.config.sampling)  # the file's, no database
        keys = sorted(STRINGS)
        views = [View(State.IDLE, 0.0), View(State.MANUAL_TEMPERATURE, 0.0)]
        for state, family in (
            (State.MEASURING, "measure."),
            (State.REMEASURE, "measure."),
            (State.WAIT, "wait."),
            (State.ISOLATION, "isolation."),
        ):
            views += [View(state, 0.0, prompt=k) for k in keys if k.startswith(family)]
            views.append(View(state, 0.0))
        reasons = {r.value for r in Reason} | {
            k.removeprefix("reason.") for k in keys if k.startswith("reason.")
        }
        views += [View(State.STAFF, 0.0, reason=reason) for reason in sorted(reasons)]
        views += [View(State.FAULT, 0.0, fault=kind) for kind in FaultKind]
        lanes = [k.removeprefix("lane.") for k in keys if k.startswith("lane.")]
        for lane in lanes:
            views.append(View(State.RESULT, 0.0, decision="single", lane=lane))
            views += [
                View(State.RESULT, 0.0, decision="pool", lane=lane, position=k, capacity=n)
                for n in {th.pool_size}
                for k in range(1, n + 1)
            ]
        # every temperature a resident can be sent on with, to a tenth of a degree
        tenths = range(round(th.plausible_min_c * 10), round(th.fever_threshold_c * 10))
        views += [
            View(State.RESULT, 0.0, decision="pool", lane="main", temperature_c=x / 10)
            for x in tenths
        ]
        return views

    def every(self, interval_s: float, fn: Callable[[], Any]) -> None:
        """Run ``fn`` on the UI thread every ``interval_s`` until the app stops."""

        def call(_dt: float) -> None:
            fn()  # whatever it returns: a False would unschedule the interval

        self._events.append(Clock.schedule_interval(call, interval_s))

    def on_start(self) -> None:
        self._core(self.kiosk.flow.start)  # the view on screen now, to the new screens
        self._core(self._gather_status)

    def on_stop(self) -> None:
        for ev in self._events:
            ev.cancel()

    def _frame(self, _dt: float) -> None:
        now = time.monotonic()
        if self._measuring_gaps:
            gap = now - self._last_frame
            self.frame_gaps_s.append(gap)
            self.max_frame_gap_s = max(self.max_frame_gap_s, gap)
        self._last_frame = now

    def measure_frame_gaps(self, on: bool = True) -> None:
        """Record the time between frames from now on (the benchmark reads them)."""
        self._measuring_gaps = on
        self.frame_gaps_s.clear()
        self._last_frame = time.monotonic()

    # -- the resident screen --------------------------------------------------------------

    @property
    def lang(self) -> Language:
        return "en" if self.kiosk.language == "en" else "zh"

    def on_view(self, view: View) -> None:
        self.view = view
        self.render()

    def render(self) -> None:
        view = self.view
        if view is None:
            return
        lang = self.lang
        r = self.resident
        r.lang_text = t("lang.switch", lang)
        r.staff_text = t("panel.title", lang)
        cfg = self.kiosk.config.station
        r.station_text = f"{cfg.township} · {cfg.id}"
        bg, icon, title, l1, l2, l3a, l3b = self._texts(view, lang)
        r.bg = COLOURS[bg]
        r.icon = icon
        r.preview = view.state is State.IDLE
        r.title, r.line1, r.line2 = title, l1, l2
        r.line3a, r.line3b = l3a, l3b
        r.line3 = "  ".join(x for x in (l3a, l3b) if x)
        st = self.link
        offline = st is not None and not st.online and st.depth
        r.banner = t("fault.offline", lang) if offline else ""
        if self.manager_current() == "panel":
            self._core(self._gather_panel)

    def _texts(self, view: View, lang: Language) -> tuple[str, str, str, str, str, str, str]:
        """Background, icon, title, line 1, line 2, and line 3 in two pieces (the
        resident's masked name or a fixed text, the temperature)."""
        s = view.state
        msg = view.message(lang) or ""
        name = view.name or ""
        if s is State.IDLE:
            return (
                "idle",
                "idle",
                t("idle.title", lang),
                t("idle.hint", lang),
                "",
                t("idle.no_code", lang),
                "",
            )
        if s in (State.MEASURING, State.REMEASURE):
            sub = t(view.prompt or "measure.closer", lang)
            title = t("measure.again", lang) if s is State.REMEASURE else t("measure.title", lang)
            return (
                "measure",
                "measure",
                title,
                t("measure.closer", lang),
                sub if s is State.REMEASURE else "",
                name,
                "",
            )
        if s is State.MANUAL_TEMPERATURE:
            return (
                "measure",
                "fault",
                t("measure.title", lang),
                t("fault.thermometer", lang),
                "",
                name,
                "",
            )
        temp = t("result.temperature", lang, t=view.temperature_c) if view.temperature_c else ""
        if s is State.RESULT:
            lane = t(f"lane.{view.lane}", lang)
            if view.decision == "single":
                return "go", "go", lane, t("result.single", lang), name, temp, ""
            pos = t("result.position", lang, k=view.position, n=view.capacity)
            bg = "green" if view.lane == "green" else "go"
            return bg, "go", t("result.go", lang), lane, pos, name, temp
        if s is State.WAIT:
            return (
                "wait",
                "wait",
                t("wait.title", lang),
                t(view.prompt or "wait.no_tube", lang),
                t("wait.next", lang),
                name,
                "",
            )
        if s is State.ISOLATION:
            return (
                "isolate",
                "isolate",
                t("isolation.title", lang),
                t(view.prompt or "isolation.fever", lang),
                t("isolation.next", lang),
                name,
                "",
            )
        if s is State.STAFF:
            return (
                "staff",
                "staff",
                t("staff.title", lang),
                _why(view, lang),
                t("staff.next", lang),
                name,
                "",
            )
        kind = view.fault.value if view.fault is not None else "internal"
        return "fault", "fault", t("fault.title", lang), t(f"fault.{kind}", lang), msg[:80], "", ""

    def manager_current(self) -> str:
        return str(self.root.current) if self.root is not None else ""

    def toggle_language(self) -> None:
        new = "en" if self.lang == "zh" else "zh"

        def switch() -> None:
            self.kiosk.set_language(new)  # publishes the view again: the screen redraws
            self._gather_panel()
            self._ui(self.refresh_entry)

        self._core(switch)

    def _gather_status(self) -> None:
        """On the core thread: the agent's link and backlog, for the screens."""
        try:
            st = self.kiosk.link_status()
        except Exception as exc:  # a status line must never take the kiosk down
            log.warning("link status: %s", exc)
            return
        self._ui(lambda: self._set_link(st))

    def _set_link(self, st: LinkStatus) -> None:
        self.link = st
        self.render()

    def _preview(self, _dt: float) -> None:
        if self.view is None or self.view.state is not State.IDLE:
            return
        frame = getattr(self.kiosk.hardware.camera, "last_frame", None)
        if frame is None:
            return
        frame = frame[::2, ::2]  # a quarter of the pixels: a preview, not the decoder's input
        h, w = frame.shape[:2]
        image = self.resident.ids.preview
        tex = image.texture
        if tex is None or tex.size != (w, h):
            tex = Texture.create(size=(w, h), colorfmt="luminance")
            tex.flip_vertical()
        tex.blit_buffer(
            np.ascontiguousarray(frame).tobytes(), colorfmt="luminance", bufferfmt="ubyte"
        )
        image.texture = tex
        image.canvas.ask_update()

    # -- the sampler panel ----------------------------------------------------------------

    def open_panel(self) -> None:
        if self.kiosk.lock.unlocked:
            self.root.current = "panel"
            self._core(self._gather_panel)
        else:
            self.open_entry("pin")

    def close_panel(self) -> None:
        self.root.current = "resident"

    def lock_panel(self) -> None:
        self._core(self.kiosk.lock.lock)
        self.root.current = "resident"

    def _staff_action(self, fn: Callable[[], Any]) -> None:
        """Run a sampler's action on the core thread; the panel shows its answer."""

        def act() -> None:
            if not self.kiosk.lock.unlocked:
                self._ui(self.close_panel)
                return
            try:
                fn()
            except RuleViolation as exc:
                self.kiosk._refused(exc)
            except StationError as exc:
                self.kiosk.flow.storage_fault(str(exc))
            self._gather_panel()

        self._core(act)

    def panel_seal(self) -> None:
        self._staff_action(self.kiosk.seal)

    def panel_remove(self, resident: str) -> None:
        self._staff_action(lambda: self.kiosk.remove(resident))

    def panel_clear_fault(self) -> None:
        """Staff looked at the fault and clear it; a camera still dark stays a fault."""
        self._staff_action(self.kiosk.flow.reset)

    def arm_single(self) -> None:
        def toggle() -> None:
            self.kiosk.arm_single = not self.kiosk.arm_single

        self._staff_action(toggle)

    def panel_dispatch(self) -> None:
        def dispatch() -> None:
            box = getattr(self.kiosk.last_scan, "box", None)
            if not box:
                raise RuleViolation(
                    "scan_box", "Scan the box's barcode first.", "请先扫描转运箱条码。"
                )
            self.kiosk.dispatch(box)

        self._staff_action(dispatch)

    def open_void(self) -> None:
        lang = self.lang
        view = ModalView(size_hint=(0.8, 0.8), auto_dismiss=True)
        box = BoxLayout(orientation="vertical", spacing=8, padding=12)
        for key in VOID_REASONS:
            reason = t(key, "en")
            b = Button(text=t(key, lang))
            b.bind(on_release=lambda _b, r=reason: self._void(view, r))
            box.add_widget(b)
        cancel = Button(text=t("panel.close", lang))
        cancel.bind(on_release=lambda _b: view.dismiss())
        box.add_widget(cancel)
        view.add_widget(box)
        view.open()
        self.void_view = view

    def _void(self, view: ModalView, reason: str) -> None:
        view.dismiss()
        self._staff_action(lambda: self.kiosk.void(reason))

    def _gather_panel(self) -> None:
        """On the core thread: what the panel shows, read from the station."""
        k = self.kiosk
        tube = k.station.open_tube()
        data = {
            "tube": None if tube is None else (tube.tube, tube.count, tube.capacity),
            "members": list(tube.members) if tube is not None else [],
            "names": k.member_names(tube.members) if tube is not None else [],
            "counters": k.station.counters(),
            "single": k.arm_single,
            "temp_needed": k.flow.state is State.MANUAL_TEMPERATURE,
            "fault": k.flow.state is State.FAULT,
            "alerts": k.recent_alerts(),
            "message": k.panel_message,
        }
        self._ui(lambda: self._apply_panel(data))

    def refresh_panel(self) -> None:
        self._core(self._gather_panel)

    def _apply_panel(self, data: dict[str, Any]) -> None:
        lang = self.lang
        p = self.panel
        p.lang_text = t("lang.switch", lang)
        p.back_text = t("panel.close", lang)
        p.lock_text = t("panel.lock", lang)
        p.t_seal = t("panel.seal", lang)
        p.t_void = t("panel.void", lang)
        p.t_single = t("panel.single", lang)
        p.t_dispatch = t("panel.dispatch", lang)
        p.t_manual_id = t("panel.manual_id", lang)
        p.t_manual_temp = t("panel.manual_temp", lang)
        p.single_armed = data["single"]
        p.temp_needed = data["temp_needed"]
        p.fault_active = data["fault"]
        p.t_clear_fault = t("panel.clear_fault", lang)
        if data["tube"] is None:
            p.tube_text = t("panel.no_tube", lang)
        else:
            name, count, capacity = data["tube"]
            p.tube_text = f"{t('panel.open_tube', lang)} {name}  {count}/{capacity}"
        rows = p.ids.members
        rows.clear_widgets()
        for pos, (who, name) in enumerate(zip(data["members"], data["names"], strict=True), 1):
            rows.add_widget(
                MemberRow(
                    text=f"{pos}. {name} · {_short(who)}" if name else f"{pos}. {_short(who)}",
                    resident=who,
                    remove_text=t("panel.remove", lang),
                )
            )
        c = data["counters"]
        p.counters_text = (
            f"{t('panel.counters', lang)}: {t('counter.checkins', lang)} {c.checkins} · "
            f"{t('counter.pooled', lang)} {c.by_decision.get('pool', 0)} · "
            f"{t('counter.single', lang)} {c.by_decision.get('single', 0)} · "
            f"{t('counter.isolated', lang)} {c.by_decision.get('isolate', 0)} · "
            f"{t('counter.referred', lang)} {c.by_decision.get('refer', 0)} · "
            f"{t('counter.sealed', lang)} {c.tubes_sealed} · "
            f"{t('panel.waiting', lang, n=c.waiting_pool)}"
        )
        st = self.link or LinkStatus("unknown", c.outbox_pending)
        online = st.online
        word = t("panel.online", lang) if online else t("panel.offline", lang)
        p.link_text = (
            f"{t('panel.link', lang)}: {word} ({st.link}) · {t('panel.backlog', lang, n=st.depth)}"
        )

        def named(kind: str) -> str:
            return t(f"alert.{kind}", lang) if f"alert.{kind}" in STRINGS else kind

        alerts = [named(kind) for kind in sorted(st.alerts)] + [
            f"{named(kind)} {at}" for kind, at in data["alerts"]
        ]
        if alerts:
            p.link_text += f" · {t('panel.alerts', lang)}: {', '.join(alerts)}"
        p.link_color = (0.7, 1, 0.7, 1) if online else (1, 0.75, 0.4, 1)
        m = data["message"]
        p.message_text = m.text(lang) if m else ""
        p.message_color = (0.7, 1, 0.7, 1) if (m is None or m.ok) else (1, 0.6, 0.5, 1)

    # -- the keypad (PIN, ID number, temperature) -----------------------------------------

    def open_entry(self, mode: str) -> None:
        e = self.entry
        e.mode = mode
        e.value = ""
        e.error = ""
        self.entry_color = "green"
        keys = [*"123456789", "X" if mode == "id" else ".", "0", "←"]
        if mode == "pin":
            keys[9] = ""
        grid = e.ids.keypad
        grid.clear_widgets()
        for key in keys:
            b = Button(text=key, font_size=34, height=80, disabled=not key)
            b.bind(on_release=lambda _b, k=key: self.entry_key(k))
            grid.add_widget(b)
        self.refresh_entry()
        self.root.current = "entry"

    def refresh_entry(self) -> None:
        e = self.entry
        lang = self.lang
        prompts = {"pin": "panel.unlock", "id": "id.title", "temp": "panel.manual_temp"}
        e.prompt = t(prompts[e.mode], lang)
        e.shown = (
            "●" * len(e.value) if e.mode == "pin" else e.value + ("℃" if e.mode == "temp" else "")
        )
        e.ok_text = t("id.ok", lang)
        e.cancel_text = t("panel.close", lang)
        e.color_text = t(f"color.{self.entry_color}", lang)
        e.color_rgba = ID_COLOR_RGBA[self.entry_color]

    def entry_key(self, key: str) -> None:
        e = self.entry
        if key == "←":
            e.value = e.value[:-1]
        elif key and len(e.value) < 18:
            e.value += key
        e.error = ""
        self.refresh_entry()

    def entry_cycle_color(self) -> None:
        self.entry_color = ID_COLORS[(ID_COLORS.index(self.entry_color) + 1) % len(ID_COLORS)]
        self.refresh_entry()

    def entry_cancel(self) -> None:
        self.root.current = "panel" if self.kiosk.lock.unlocked else "resident"

    def entry_ok(self) -> None:
        e = self.entry
        mode, value, color = e.mode, e.value, self.entry_color
        if mode == "pin":
            # The PIN hash takes a moment on purpose: the core thread checks it.
            self._core(lambda: self._pin_result(self.kiosk.lock.unlock(value)))
            return

        def enter() -> None:
            lang = self.lang
            try:
                if mode == "id":
                    self.kiosk.manual_id(value, color)
                else:
                    self.kiosk.manual_temperature(float(value))
            except NationalIdError as exc:
                text = exc.message(lang)
                self._ui(lambda: self._entry_error(text))
                return
            except ValueError:
                self._ui(lambda: self._entry_error(t("entry.number", lang)))
                return
            self._ui(self.close_panel)

        self._staff_action(enter)

    def _entry_error(self, text: str) -> None:
        self.entry.error = text

    def _pin_result(self, ok: bool) -> None:
        self._ui(lambda: self._pin_checked(ok))
        if ok:
            self._gather_panel()

    def _pin_checked(self, ok: bool) -> None:
        if ok:
            self.root.current = "panel"
        else:
            self.entry.value = ""
            self.entry.error = t("panel.wrong_pin", self.lang)
            self.refresh_entry()


def _why(view: View, lang: Language) -> str:
    """Why a resident is sent to the staff desk, in plain words."""
    msg = view.message(lang)
    if msg:
        return msg
    if f"reason.{view.reason}" in STRINGS:
        return t(f"reason.{view.reason}", lang)
    if view.reason in REASONS:
        return rejection_message(Reason(view.reason), lang)
    return ""


def _short(resident: str) -> str:
    return resident if len(resident) <= 16 else resident[:12] + "…"


# -- running ----------------------------------------------------------------------------------


class KivyUi:
    """Calls onto Kivy's main thread from a drill or test thread, and screenshots."""

    def __init__(self) -> None:
        self.main = threading.get_ident()

    def call(self, fn: Callable[[], Any], timeout: float = 30.0) -> Any:
        if threading.get_ident() == self.main:
            return fn()
        return call_on(
            lambda run: Clock.schedule_once(lambda _dt: run(), 0),
            fn,
            timeout,
            "the kiosk's screens",
        )

    def screenshot(self, path: Path) -> None:
        """Save the window as drawn after the next frames to ``path``."""
        path.parent.mkdir(parents=True, exist_ok=True)

        def grab() -> None:
            # Kivy inserts a counter before the extension; move the file to the exact name.
            made = Window.screenshot(name=str(path))
            if made:
                Path(made).replace(path)

        for _ in range(3):  # let the frames with the latest change draw first
            self.call(lambda: None)
            time.sleep(1 / 60)
        self.call(grab)


class DrillUi:
    """For a drill: the kiosk's own calls run on its core thread, pictures on Kivy's."""

    def __init__(self, core: LoopThread, screens: KivyUi) -> None:
        self.core = core
        self.screens = screens

    def call(self, fn: Callable[[], Any], timeout: float = 30.0) -> Any:
        return self.core.call(fn, timeout)

    def screenshot(self, path: Path) -> None:
        self.core.call(lambda: None)  # what the core published has reached the screens
        self.screens.screenshot(path)


def speaker_for(config: StationConfig) -> EspeakSpeaker | None:
    return EspeakSpeaker() if config.kiosk.speech else None


class Running:
    """One kiosk with its core thread and its app, built and torn down together.

    Under systemd (``NOTIFY_SOCKET`` set) it says ``READY=1`` once the first frame showing
    the flow's view is on the screen, then ``WATCHDOG=1`` from the UI loop every half of
    ``WatchdogSec`` while the core thread answers too (:class:`~kiosk_ui.kiosk.Watchdog`,
    ``core_stall_s``), and ``STOPPING=1`` when it leaves. Elsewhere that is all a no-op.
    """

    def __init__(
        self,
        config: StationConfig,
        hardware: Hardware,
        *,
        notifier: Notifier | None = None,
        core_stall_s: float = CORE_STALL_S,
    ) -> None:
        self.kiosk_core = build(config, hardware=hardware, speaker=speaker_for(config))
        self.kiosk = self.kiosk_core.kiosk
        self.core = self.kiosk_core.loop
        self.app = KioskApp(self.kiosk, self.core)
        self.screens = KivyUi()
        self.notifier = notifier if notifier is not None else Notifier()
        self.watchdog = Watchdog(self.notifier, self.core, core_stall_s)
        self.app.on_ready.append(self._ready)

    def _ready(self) -> None:
        """On the UI thread, after the first frame with the flow's view."""
        cfg = self.kiosk.config.station
        self.notifier.ready(f"kiosk {cfg.id} showing {self.kiosk.flow.state.value}")
        interval = self.notifier.watchdog_interval_s()
        if interval:
            self.watchdog.ping()
            self.app.every(interval, self.watchdog.ping)

    def run(self) -> None:
        # A worker busy in Python code (the rules, a simulated device) keeps the interpreter
        # for up to the switch interval (5 ms by default) each time the UI thread wants it
        # back: a quarter of a frame. 1 ms keeps that wait well inside a frame.
        switch = sys.getswitchinterval()
        sys.setswitchinterval(UI_SWITCH_INTERVAL_S)
        try:
            # Devices and workers run before the first frame: a drill may start at once.
            self.kiosk_core.start()
            self.app.run()
        finally:
            sys.setswitchinterval(switch)
            self.notifier.stopping()
            self.kiosk_core.stop()


def run_with_app(
    config: StationConfig,
    hardware: Hardware,
    drive: Callable[[Kiosk, DrillUi], int],
    *,
    window: bool,
) -> int:
    """Run the screens on this (main) thread and ``drive`` on another; returns its result."""
    r = Running(config, hardware)
    ui = DrillUi(r.core, r.screens)
    result: dict[str, int] = {}

    def drive_then_stop() -> None:
        try:
            result["code"] = drive(r.kiosk, ui)
        except BaseException:
            log.exception("the drill failed")
            result["code"] = 1
        finally:
            Clock.schedule_once(lambda dt: r.app.stop(), 0)

    driver = threading.Thread(target=drive_then_stop, name="drill", daemon=True)
    Clock.schedule_once(lambda dt: driver.start(), 0.2)
    try:
        r.run()
    finally:
        driver.join(10)
    return result.get("code", 1)


def run_kiosk(config: StationConfig) -> int:
    """``station kiosk``: the screens on the configured devices until closed or SIGTERM."""
    return serve(Running(config, build_hardware(config)))


def serve(running: Running) -> int:
    """Run a built kiosk on this (main) thread until its window closes or SIGTERM."""

    def stop(_signum: int, _frame: FrameType | None) -> None:
        # systemd stops the kiosk with SIGTERM: leave the main loop, then close everything
        # (Running.run says STOPPING=1 first).
        Clock.schedule_once(lambda dt: running.app.stop(), 0)

    signal.signal(signal.SIGTERM, stop)
    running.run()
    return 0
