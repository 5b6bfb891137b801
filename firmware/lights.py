"""Lane lights and the buzzer, through gpiozero.

Stable interface:

- :class:`LaneLights` ``(pins, pin_factory)`` -- ``show(state, lane=None)``,
  ``snapshot() -> {signal: state}``, ``outputs() -> {output: bool}``, ``close()``.

The hardware is three signals (the names ``snapshot`` uses, also the drills' ``expect.lights``
keys):

========== ============================================ ======================================
signal     outputs (``[hardware.lights]``)              states it shows
========== ============================================ ======================================
main       traffic light ``main_red``/``main_amber``/    idle (dark), go (green), wait (amber
           ``main_green`` at the entrance of the tent   blinking 1 Hz), stop (red), fault
                                                        (amber blinking 4 Hz)
green      ``green_lane``: the priority lane's light     idle (dark), go (lit)
isolation  ``isolation_beacon`` and ``buzzer``           idle, isolate (beacon flashing 2 Hz,
                                                        three beeps)
========== ============================================ ======================================

Station states and what each signal shows:

=========================== ======== ======== ==========
``show(...)``               main     green    isolation
=========================== ======== ======== ==========
``idle``                    idle     idle     idle
``go``, lane main or single go       idle     idle
``go``, lane green          idle     go       idle
``wait``                    wait     idle     idle
``stop`` (staff desk)       stop     idle     idle
``isolate``                 stop     idle     isolate
``fault``                   fault    idle     idle
=========================== ======== ======== ==========

The single-sample desk has no light of its own: its residents enter through the main
entrance (main go) and the screen tells them which desk. Which state shows a check-in is the
kiosk's to say (``kiosk_ui.core.flow.light_for``); the lights know states and lanes only.

No two conflicting states ever show at once: every change first turns every output off
(stopping any blinking) and only then lights the new pattern, under one lock; and a plan that
would light a green output while the isolation beacon is on is refused before any pin moves.
"""

from __future__ import annotations

import logging
import threading
from typing import Any, Literal

from gpiozero import LED, Buzzer
from gpiozero.exc import BadPinFactory, GPIOPinInUse, PinInvalidPin

from firmware.config import LightsSection
from firmware.errors import LightsError, PinMapError

log = logging.getLogger(__name__)

State = Literal["idle", "go", "wait", "stop", "isolate", "fault"]
STATES: tuple[State, ...] = ("idle", "go", "wait", "stop", "isolate", "fault")
SIGNALS = ("main", "green", "isolation")
OUTPUTS = ("main_red", "main_amber", "main_green", "green_lane", "isolation_beacon", "buzzer")
GREEN_OUTPUTS = frozenset({"main_green", "green_lane"})

# (on_time, off_time, n) for blinking outputs; None means steady on.
Blink = tuple[float, float, int | None] | None
SLOW_BLINK: Blink = (0.5, 0.5, None)
FAST_BLINK: Blink = (0.125, 0.125, None)
BEACON: Blink = (0.25, 0.25, None)
BEEPS: Blink = (0.2, 0.3, 3)

# signal state -> outputs lit (and how)
_PATTERNS: dict[tuple[str, str], dict[str, Blink]] = {
    ("main", "idle"): {},
    ("main", "go"): {"main_green": None},
    ("main", "wait"): {"main_amber": SLOW_BLINK},
    ("main", "stop"): {"main_red": None},
    ("main", "fault"): {"main_amber": FAST_BLINK},
    ("green", "idle"): {},
    ("green", "go"): {"green_lane": None},
    ("isolation", "idle"): {},
    ("isolation", "isolate"): {"isolation_beacon": BEACON, "buzzer": BEEPS},
}


def plan(state: str, lane: str | None = None) -> dict[str, str]:
    """What each signal shows for a station state (pure; raises LightsError)."""
    if state not in STATES:
        raise LightsError(f"unknown light state {state!r} (known: {', '.join(STATES)})")
    out = dict.fromkeys(SIGNALS, "idle")
    if state == "go":
        if lane in ("main", "single"):
            out["main"] = "go"
        elif lane == "green":
            out["green"] = "go"
        else:
            raise LightsError(f"'go' needs lane main, single or green (got {lane!r})")
    elif state == "isolate":
        out["main"] = "stop"
        out["isolation"] = "isolate"
    elif state != "idle":
        out["main"] = state
    return out


def _outputs_for(signals: dict[str, str]) -> dict[str, Blink]:
    lit: dict[str, Blink] = {}
    for signal, st in signals.items():
        lit.update(_PATTERNS[(signal, st)])
    if "isolation_beacon" in lit and GREEN_OUTPUTS & lit.keys():
        raise LightsError("refused: a green light with the isolation beacon")
    return lit


class LaneLights:
    """The station's lights and buzzer on the pins of ``[hardware.lights]``."""

    def __init__(self, pins: LightsSection, pin_factory: Any = None) -> None:
        self.pins = pins
        self._lock = threading.Lock()
        self._devices: dict[str, Any] = {}
        pin_map: dict[str, int] = pins.model_dump()
        problems: list[str] = []
        seen: dict[int, str] = {}
        for name, pin in pin_map.items():
            if pin in seen:
                problems.append(f"{name} and {seen[pin]} both use GPIO {pin}")
            seen[pin] = name
        if problems:
            raise PinMapError("hardware.lights", problems)
        try:
            for name in OUTPUTS:
                cls = Buzzer if name == "buzzer" else LED
                pin = pin_map[name]
                try:
                    self._devices[name] = cls(pin, pin_factory=pin_factory)
                except PinInvalidPin:
                    raise PinMapError(
                        "hardware.lights", [f"{name} = {pin}: the board has no GPIO {pin}"]
                    ) from None
                except GPIOPinInUse:
                    raise PinMapError(
                        "hardware.lights",
                        [f"{name} = {pin}: GPIO {pin} is already in use by another device"],
                    ) from None
        except BadPinFactory as exc:
            self._close_devices()
            raise LightsError(
                f"no GPIO library to drive the lights ({exc}); on a Pi install python3-lgpio"
            ) from None
        except PinMapError:
            self._close_devices()
            raise
        self._signals = dict.fromkeys(SIGNALS, "idle")
        self.state: State = "idle"
        self.lane: str | None = None

    def show(self, state: State, lane: str | None = None) -> None:
        signals = plan(state, lane)
        lit = _outputs_for(signals)
        with self._lock:
            if not self._devices:
                raise LightsError("the lights are closed")
            # Everything dark first: no moment shows the old and the new state together.
            for name in OUTPUTS:
                self._devices[name].off()
            for name, blink in lit.items():
                dev = self._devices[name]
                if blink is None:
                    dev.on()
                elif name == "buzzer":
                    dev.beep(on_time=blink[0], off_time=blink[1], n=blink[2])
                else:
                    dev.blink(on_time=blink[0], off_time=blink[1], n=blink[2])
            self._signals = signals
            self.state = state
            self.lane = lane
        log.info("lights: %s%s", state, f" ({lane})" if lane else "")

    def lamp_test(self, output: str | None) -> None:
        """Light ``output`` alone, steady (or nothing with None): the technician's lamp test.
        The signals count as idle meanwhile."""
        if output is not None and output not in OUTPUTS:
            raise LightsError(f"unknown output {output!r} (known: {', '.join(OUTPUTS)})")
        with self._lock:
            if not self._devices:
                raise LightsError("the lights are closed")
            for name in OUTPUTS:
                self._devices[name].off()
            if output is not None:
                self._devices[output].on()
            self._signals = dict.fromkeys(SIGNALS, "idle")
            self.state = "idle"
            self.lane = None

    def snapshot(self) -> dict[str, str]:
        """Signal name -> the state it shows."""
        with self._lock:
            return dict(self._signals)

    def outputs(self) -> dict[str, bool]:
        """Each output's pin level as read back now (a blinking output may read either)."""
        with self._lock:
            return {name: bool(dev.value) for name, dev in self._devices.items()}

    def expected_outputs(self) -> dict[str, bool | None]:
        """For the current state: True steady on, False off, None blinking."""
        lit = _outputs_for(self.snapshot())
        out: dict[str, bool | None] = {}
        for name in OUTPUTS:
            if name not in lit:
                out[name] = False
            else:
                out[name] = True if lit[name] is None else None
        return out

    def _close_devices(self) -> None:
        for dev in self._devices.values():
            dev.close()
        self._devices.clear()

    def close(self) -> None:
        with self._lock:
            self._close_devices()
