"""The kiosk's Kivy widgets and screen classes; ``screens.kv`` lays them out.

They hold properties the app fills from the presenter's records (``present``) and draw
shapes; they decide nothing.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

from kivy.graphics import Color, Ellipse, Line, Triangle
from kivy.properties import BooleanProperty, ColorProperty, ListProperty, StringProperty
from kivy.uix.boxlayout import BoxLayout
from kivy.uix.button import Button
from kivy.uix.label import Label
from kivy.uix.modalview import ModalView
from kivy.uix.screenmanager import Screen
from kivy.uix.widget import Widget

from kiosk_ui.screens.present import COLOURS, ID_COLOR_RGBA


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


class VoidDialog(ModalView):
    """The reasons a sampler may void a tube for, a button each, and a way back."""

    def __init__(
        self,
        choices: Sequence[tuple[str, str]],
        back: str,
        on_choice: Callable[[str], None],
        **kwargs: Any,
    ) -> None:
        super().__init__(size_hint=(0.8, 0.8), auto_dismiss=True, **kwargs)
        self._on_choice = on_choice
        box = BoxLayout(orientation="vertical", spacing=8, padding=12)
        for label, reason in choices:
            button = Button(text=label)
            button.bind(on_release=lambda _b, r=reason: self._chosen(r))
            box.add_widget(button)
        cancel = Button(text=back)
        cancel.bind(on_release=lambda _b: self.dismiss())
        box.add_widget(cancel)
        self.add_widget(box)

    def _chosen(self, reason: str) -> None:
        self.dismiss()
        self._on_choice(reason)


def fill_keypad(grid: Widget, keys: Sequence[str], on_key: Callable[[str], None]) -> None:
    """Put a button per key into ``grid`` (an empty key is a blank, disabled button)."""
    grid.clear_widgets()
    for key in keys:
        button = Button(text=key, font_size=34, height=80, disabled=not key)
        button.bind(on_release=lambda _b, k=key: on_key(k))
        grid.add_widget(button)
