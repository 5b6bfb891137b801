"""Running the kiosk with its screens: ``station kiosk``, drills with screens, and tests.

:class:`Running` builds the kiosk through the one root (``kiosk_ui.kiosk.build``) and puts
the Kivy app on it; :func:`serve` runs it until the window closes or SIGTERM;
:func:`run_with_app` runs a drill beside it. :class:`KivyUi` and :class:`DrillUi` let a
drill's thread call onto the screens and the core; :class:`FrameMeter` is what the kiosk
benchmark reads (the gaps between frames), nothing else uses it.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any, TypeVar

from kivy.clock import Clock
from kivy.core.window import Window

from firmware.config import StationConfig
from firmware.hardware import Hardware, build_hardware
from firmware.systemd import Notifier
from kiosk_ui.kiosk import Kiosk, build
from kiosk_ui.screens.app import KioskApp
from kiosk_ui.speech import speaker_for
from kiosk_ui.workers import CORE_STALL_S, LoopThread, Watchdog, call_on

log = logging.getLogger(__name__)

T = TypeVar("T")
UI_SWITCH_INTERVAL_S = 0.001  # see Running.run


class FrameMeter:
    """The time between frames of Kivy's clock while measuring (the kiosk benchmark's
    figure for how long the UI thread was ever blocked). Start and stop on the UI thread."""

    def __init__(self) -> None:
        self.gaps_s: list[float] = []
        self._last = time.monotonic()
        self._event: Any = None  # Kivy's ClockEvent while measuring

    @property
    def max_gap_s(self) -> float:
        return max(self.gaps_s, default=0.0)

    def start(self) -> None:
        self.stop()
        self.gaps_s.clear()
        self._last = time.monotonic()
        self._event = Clock.schedule_interval(self._frame, 0)

    def stop(self) -> None:
        if self._event is not None:
            self._event.cancel()
            self._event = None

    def _frame(self, _dt: float) -> None:
        now = time.monotonic()
        self.gaps_s.append(now - self._last)
        self._last = now


class KivyUi:
    """Calls onto Kivy's main thread from a drill or test thread, and screenshots."""

    def __init__(self) -> None:
        self.main = threading.get_ident()

    def call(self, fn: Callable[[], T], timeout: float = 30.0) -> T:
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

    def call(self, fn: Callable[[], T], timeout: float = 30.0) -> T:
        return self.core.call(fn, timeout)

    def screenshot(self, path: Path) -> None:
        self.core.call(lambda: None)  # what the core published has reached the screens
        self.screens.screenshot(path)


class Running:
    """One kiosk with its core thread and its app, built and torn down together.

    Under systemd (``NOTIFY_SOCKET`` set) it says ``READY=1`` once the first frame showing
    the flow's view is on the screen, then ``WATCHDOG=1`` from the UI loop every half of
    ``WatchdogSec`` while the core thread answers too (:class:`~kiosk_ui.workers.Watchdog`,
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
        self.frames = FrameMeter()
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
