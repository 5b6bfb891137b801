"""The kiosk's Kivy app: screens that draw the flow's views and forward touches.

Nothing here decides anything, and nothing here words anything: the resident screen shows
the presenter's record for the flow's :class:`~kiosk_ui.core.flow.View`
(``present.resident_text``: colour, an icon and words, never colour alone); the sampler
panel calls the kiosk's actions (``kiosk_ui.kiosk.Kiosk``) and shows the presenter's
record of what the kiosk read (``present.panel_text``). Widgets are in ``widgets``,
layout in ``screens.kv``, running it in ``running``.

Import this module only after :func:`kiosk_ui.kiosk_cli.prepare_kivy`: Kivy configures
itself from the environment on first import.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from kivy.app import App
from kivy.clock import Clock
from kivy.core.text import LabelBase
from kivy.core.window import Window
from kivy.graphics.opengl import glFlush
from kivy.graphics.texture import Texture
from kivy.lang import Builder
from kivy.uix.layout import Layout
from kivy.uix.screenmanager import NoTransition, ScreenManager

from kiosk_ui.core.flow import State, View
from kiosk_ui.core.i18n import LANGUAGES, Language, t
from kiosk_ui.core.rules import Thresholds
from kiosk_ui.errors import NationalIdError
from kiosk_ui.kiosk import Kiosk
from kiosk_ui.panel import LinkStatus, PanelData
from kiosk_ui.screens import fonts
from kiosk_ui.screens.present import (
    COLOURS,
    ID_COLORS,
    entry_text,
    keypad_keys,
    offline_banner,
    panel_text,
    resident_text,
    sample_views,
    void_choices,
)
from kiosk_ui.screens.widgets import (
    EntryScreen,
    MemberRow,
    PanelScreen,
    ResidentScreen,
    VoidDialog,
    fill_keypad,
)
from kiosk_ui.workers import LoopThread

log = logging.getLogger(__name__)

KV = Path(__file__).with_name("screens.kv")
FONT = "Station"


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
        th = Thresholds.from_settings(self.kiosk.config.sampling)  # the file's, no database
        shown = r.preview
        # The idle screen's texts sit beside the camera preview, the others beside the
        # smaller icon: the labels have another width, and a texture is made for one.
        for preview in (True, False):
            r.preview = preview
            for widget in r.walk(restrict=True):
                if isinstance(widget, Layout):
                    widget.do_layout()
            texts: dict[int, set[str]] = {slot: set() for slot in labels}
            for view in sample_views(th):
                if (view.state is State.IDLE) != preview:
                    continue
                for lang in LANGUAGES:
                    for slot, text in enumerate(resident_text(view, lang).labels):
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
        text = resident_text(view, lang)
        r.bg = COLOURS[text.background]
        r.icon = text.icon
        r.preview = view.state is State.IDLE
        r.title, r.line1, r.line2 = text.title, text.line1, text.line2
        r.line3a, r.line3b, r.line3 = text.line3a, text.line3b, text.line3
        r.banner = offline_banner(self.link, lang)
        if self.manager_current() == "panel":
            self._core(self._gather_panel)

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
        frame = self.kiosk.preview_frame()
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
            if not self.kiosk.act(fn):
                self._ui(self.close_panel)
                return
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
        """Send the box the scanner read last (the kiosk refuses when there is none)."""
        self._staff_action(self.kiosk.dispatch)

    def open_void(self) -> None:
        """Ask why the tube is voided; the reason chosen voids it."""
        lang = self.lang
        self.void_view = VoidDialog(
            void_choices(lang),
            t("panel.close", lang),
            lambda reason: self._staff_action(lambda: self.kiosk.void(reason)),
        )
        self.void_view.open()

    def _gather_panel(self) -> None:
        """On the core thread: what the panel shows, read from the station."""
        data = self.kiosk.panel_data()
        self._ui(lambda: self._apply_panel(data))

    def refresh_panel(self) -> None:
        self._core(self._gather_panel)

    def _apply_panel(self, data: PanelData) -> None:
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
        p.t_clear_fault = t("panel.clear_fault", lang)
        text = panel_text(data, self.link, lang)
        p.single_armed = text.single_armed
        p.temp_needed = text.temp_needed
        p.fault_active = text.fault_active
        p.tube_text = text.tube
        rows = p.ids.members
        rows.clear_widgets()
        remove = t("panel.remove", lang)
        for member in text.members:
            rows.add_widget(
                MemberRow(text=member.text, resident=member.resident, remove_text=remove)
            )
        p.counters_text = text.counters
        p.link_text, p.link_color = text.link, text.link_rgba
        p.message_text, p.message_color = text.message, text.message_rgba

    # -- the keypad (PIN, ID number, temperature) -----------------------------------------

    def open_entry(self, mode: str) -> None:
        e = self.entry
        e.mode = mode
        e.value = ""
        e.error = ""
        self.entry_color = "green"
        fill_keypad(e.ids.keypad, keypad_keys(mode), self.entry_key)
        self.refresh_entry()
        self.root.current = "entry"

    def refresh_entry(self) -> None:
        e = self.entry
        lang = self.lang
        text = entry_text(e.mode, e.value, self.entry_color, lang)
        e.prompt, e.shown = text.prompt, text.shown
        e.ok_text = t("id.ok", lang)
        e.cancel_text = t("panel.close", lang)
        e.color_text, e.color_rgba = text.color, text.color_rgba

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
