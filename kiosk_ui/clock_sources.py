"""Where the kiosk's clock judge (``kiosk_ui.core.clock``) gets its facts.

- :func:`ntp_synchronised`: on a Pi, systemd-timesyncd creates
  ``/run/systemd/timesync/synchronized`` once it has set the clock from the network (one
  ``stat``, cheap enough for once a second); without it the kernel's own clock state
  (``adjtimex``) says whether anything synchronised the clock.
- :class:`SimClock`: the simulated backend's clock, which drills set, jump and "synchronise"
  (``{"clock": ...}`` steps, docs/kiosk.md). It starts at the real time and synchronised, so a
  drill that never touches the clock runs as before.
- :func:`recorded_gateway_time`: the gateway's time on its newest ack, as the edge agent
  recorded it with the station's clock then (``agent_state`` row ``clock.gateway``).
- :func:`build_judge` and :class:`ClockWatch`: the kiosk's judge, asked once a second on the
  core loop (``kiosk_ui.kiosk.Kiosk.tick``).
"""

from __future__ import annotations

import ctypes
import functools
import json
import math
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path

from edge_agent.outbox import GATEWAY_TIME_KEY, parse_rfc3339
from firmware.config import StationConfig
from firmware.hardware import build_rtc
from firmware.rtc import RtcState
from kiosk_ui.core.clock import ClockJudge, GatewayTime, Judgement

TIMESYNC_FLAG = Path("/run/systemd/timesync/synchronized")
_TIME_ERROR = 5  # adjtimex(2): the clock is not synchronised
JUDGE_EVERY_S = 1.0


@functools.cache
def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def _adjtimex_state() -> int | None:
    try:
        libc = _libc()
        buf = ctypes.create_string_buffer(512)  # struct timex, modes = 0: read only
        state = int(libc.adjtimex(buf))
    except (OSError, AttributeError):
        return None
    return None if state < 0 else state


def ntp_synchronised(flag: Path = TIMESYNC_FLAG) -> bool | None:
    """Whether network time set the system clock; None when nothing can tell."""
    if flag.exists():
        return True
    state = _adjtimex_state()
    return None if state is None else state != _TIME_ERROR


def recorded_gateway_time(conn: sqlite3.Connection) -> GatewayTime | None:
    """The gateway time the agent recorded last (None: none yet, or the row is unreadable)."""
    try:
        row = conn.execute(
            "SELECT value FROM agent_state WHERE key = ?", (GATEWAY_TIME_KEY,)
        ).fetchone()
        value = json.loads(row[0]) if row else None
    except (sqlite3.Error, ValueError):
        return None
    if not isinstance(value, dict):
        return None
    gateway, station = parse_rfc3339(value.get("gateway")), parse_rfc3339(value.get("station"))
    if gateway is None or station is None:
        return None
    return GatewayTime(gateway, station)


class SimClock:
    """A system clock a drill controls: an offset from the real time, and whether NTP
    synchronised it. Thread-safe (the drill's thread sets, the core loop reads)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._offset = 0.0
        self._synced = True

    def now(self) -> float:
        with self._lock:
            return time.time() + self._offset

    def ntp(self) -> bool:
        with self._lock:
            return self._synced

    def set(self, at: float) -> None:
        """The clock shows ``at`` now (a Pi that booted on a saved time, or 1970)."""
        with self._lock:
            self._offset = at - time.time()

    def jump(self, seconds: float) -> None:
        with self._lock:
            self._offset += seconds

    def synchronise(self, synced: bool) -> None:
        """NTP synchronised the clock (it shows the real time again), or lost it."""
        with self._lock:
            self._synced = synced
            if synced:
                self._offset = 0.0


def build_judge(
    config: StationConfig,
    floor: Callable[[], float],
    sim_clock: SimClock | None,
    gateway: Callable[[], GatewayTime | None] | None = None,
) -> ClockJudge:
    """The clock judge of one kiosk: the drills' clock on the simulated backend, else the
    system clock with NTP as systemd or the kernel tell it; the real-time clock when fitted;
    the gateway's time as the agent recorded it (``gateway``)."""
    hw = config.hardware
    rtc: Callable[[], RtcState] | None = None
    if hw.rtc.fitted:
        rtc = build_rtc(hw).state
    if sim_clock is not None:
        return ClockJudge(
            wall=sim_clock.now, ntp=sim_clock.ntp, floor=floor, rtc=rtc, gateway=gateway
        )
    return ClockJudge(wall=time.time, ntp=ntp_synchronised, floor=floor, rtc=rtc, gateway=gateway)


class ClockWatch:
    """Asks the judge every ``every_s`` on the kiosk's core loop and tells the flow; says on
    the sampler panel when the clock stops or starts being trusted."""

    def __init__(self, judge: ClockJudge, every_s: float = JUDGE_EVERY_S) -> None:
        self.judge = judge
        self.every_s = every_s
        self.last: Judgement | None = None
        self._at = -math.inf

    def due(self, monotonic: float) -> bool:
        if monotonic - self._at < self.every_s:
            return False
        self._at = monotonic
        return True

    def look(self) -> tuple[Judgement, bool]:
        """A new judgement, and whether trust changed since the last one."""
        j = self.judge.judge()
        changed = self.last is None or self.last.trusted != j.trusted
        self.last = j
        return j, changed


def panel_words(j: Judgement) -> tuple[str, str]:
    """What the sampler panel says when the clock stops (or starts) being trusted."""
    if j.trusted:
        return (
            f"Clock trusted ({j.source}): health codes are checked again.",
            f"时钟可信（{j.source}）：恢复核验健康码。",
        )
    return (
        f"Clock not trusted: {j.detail}. Codes are not checked; check residents in by ID number.",
        f"时钟不可信：{j.detail}。暂不核验健康码，请按身份证号人工登记。",
    )
