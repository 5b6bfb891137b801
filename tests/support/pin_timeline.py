"""One timeline of every pin change, in the order the changes happened.

gpiozero's ``MockPin`` keeps a timeline per pin, each entry timed from that pin's previous
change; comparing two pins' timelines then rests on when each was cleared. A
:class:`TimelineFactory` (a ``MockFactory`` whose pins are :class:`RecordingPin`) also
appends every change of every pin, with its ``monotonic()`` time, to ``factory.timeline``
under one lock, so the list's order is the order in which the levels changed.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable
from typing import Any, NamedTuple

from gpiozero.pins.mock import MockFactory, MockPin


class Change(NamedTuple):
    t: float
    pin: str  # "GPIO17"
    state: bool


class RecordingPin(MockPin):  # type: ignore[misc]
    def _change_state(self, value: bool) -> bool:
        factory: TimelineFactory = self._factory
        with factory.timeline_lock:
            changed: bool = super()._change_state(value)
            if changed:
                factory.timeline.append(Change(self._last_change, self.info.name, bool(value)))
        return changed


class TimelineFactory(MockFactory):  # type: ignore[misc]
    def __init__(self, **kwargs: Any) -> None:
        self.timeline: list[Change] = []
        self.timeline_lock = threading.Lock()
        super().__init__(pin_class=RecordingPin, **kwargs)

    def mark(self) -> int:
        """A point in the timeline: pass it to :meth:`since`."""
        with self.timeline_lock:
            return len(self.timeline)

    def since(self, mark: int, pin: int | None = None, until: int | None = None) -> list[Change]:
        """Changes after ``mark`` and before the mark ``until`` (of GPIO ``pin`` only, if
        given), in order."""
        with self.timeline_lock:
            out = self.timeline[mark:until]
        if pin is not None:
            out = [c for c in out if c.pin == f"GPIO{pin}"]
        return out


def wait_until(cond: Callable[[], bool], timeout: float = 15.0) -> bool:
    """Poll ``cond`` until it holds or ``timeout`` passes; a generous bound, since a loaded
    machine may run a blink thread late."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.01)
    return cond()


def phases(changes: list[Change]) -> tuple[list[float], list[float]]:
    """Durations of the complete on and off phases of one pin's alternating changes (the
    phase still running at the last change is not complete and is left out)."""
    on: list[float] = []
    off: list[float] = []
    for prev, nxt in itertools.pairwise(changes):
        if prev.state == nxt.state:
            raise AssertionError(f"{prev.pin} changed to {prev.state} twice in a row")
        (on if prev.state else off).append(nxt.t - prev.t)
    return on, off
