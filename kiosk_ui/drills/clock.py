"""The drills' clock step: set, jump and synchronise the simulated backend's system clock.

``{"clock": {"set": "1970-01-01T00:00:00Z"}}`` -- the clock shows that time (a Pi that booted
on 1970, or on the time ``fake-hwclock`` saved last night); ``{"clock": {"jump_s": 3600}}`` --
it jumps (NTP syncing late: forward; negative: back); ``{"clock": {"ntp": false}}`` -- NTP
has not synchronised it (``true``: it has, and the clock shows the real time again). Keys
combine in one step: ``set`` or ``jump_s`` first, then ``ntp``. The kiosk judges the clock
again at once (``kiosk_ui.core.clock``), so the next step sees the verdict.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from kiosk_ui.clock_sources import SimClock
from kiosk_ui.errors import DrillError

CLOCK_KEYS = ("set", "jump_s", "ntp")


@dataclass(frozen=True)
class ClockStep:
    set_at: float | None = None
    jump_s: float | None = None
    ntp: bool | None = None

    def describe(self) -> str:
        parts = []
        if self.set_at is not None:
            parts.append(f"set {datetime.fromtimestamp(self.set_at).astimezone().isoformat()}")
        if self.jump_s is not None:
            parts.append(f"jump {self.jump_s:+.0f} s")
        if self.ntp is not None:
            parts.append("NTP synchronised" if self.ntp else "no NTP")
        return "clock " + ", ".join(parts)

    def apply(self, clock: SimClock) -> None:
        if self.set_at is not None:
            clock.set(self.set_at)
        if self.jump_s is not None:
            clock.jump(self.jump_s)
        if self.ntp is not None:
            clock.synchronise(self.ntp)


def parse_clock(value: Any, where: str) -> ClockStep:
    """A ``clock`` step's object, or DrillError naming ``where`` and what is wrong."""
    if not isinstance(value, dict) or not value:
        raise DrillError(f"{where}: 'clock' is an object with {', '.join(CLOCK_KEYS)}")
    unknown = sorted(set(value) - set(CLOCK_KEYS))
    if unknown:
        raise DrillError(
            f"{where}: unknown key {unknown[0]!r} in 'clock' (allowed: {', '.join(CLOCK_KEYS)})"
        )
    if "set" in value and "jump_s" in value:
        raise DrillError(f"{where}: a 'clock' step sets the clock or jumps it, not both")
    set_at = _moment(value["set"], where) if "set" in value else None
    jump = value.get("jump_s")
    if jump is not None and (
        isinstance(jump, bool) or not isinstance(jump, int | float) or not math.isfinite(jump)
    ):
        raise DrillError(f"{where}: 'jump_s' must be a number of seconds, got {jump!r}")
    ntp = value.get("ntp")
    if "ntp" in value and not isinstance(ntp, bool):
        raise DrillError(f"{where}: 'ntp' must be true or false, got {ntp!r}")
    return ClockStep(set_at, None if jump is None else float(jump), ntp)


def _moment(text: Any, where: str) -> float:
    if not isinstance(text, str):
        raise DrillError(f"{where}: 'set' is an RFC 3339 time, got {text!r}")
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise DrillError(f"{where}: 'set' is not an RFC 3339 time: {text!r}") from None
    if moment.tzinfo is None:
        raise DrillError(f"{where}: 'set' needs a time zone (e.g. Z): {text!r}")
    return moment.timestamp()
