"""The self-test's clock check: which sources vouch for the system clock, and whether the clock
went back before the newest fact the station recorded.

A Raspberry Pi has no clock of its own while it is off. The system clock is believed when NTP
synchronised it, when a valid real-time clock (``firmware.rtc``) agrees with it within
:data:`AGREE_S`, or when the gateway's time on its newest ack (the agent's ``clock.gateway``
row) was that close to the station's clock, recorded less than :data:`GATEWAY_RECENT_S` ago.
Whatever the sources say, a system clock earlier than the newest event in
the station database (by more than :data:`BACK_SLACK_S`) went back: a Pi that booted on the
time ``fake-hwclock`` saved, or 1970. The check says so, and says what each source said.
"""

from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Literal

from firmware.rtc import RtcState
from hardware_tests.probes import ClockStatus

AGREE_S = 60.0  # a valid real-time clock this close to the system clock vouches for it
BACK_SLACK_S = 2.0  # two processes' clocks read a moment apart
GATEWAY_RECENT_S = 3600.0  # as the kiosk's judge (kiosk_ui.core.clock)
GATEWAY_TIME_KEY = "clock.gateway"  # the agent's agent_state row (edge_agent.outbox)


def gateway_time(path: Path) -> tuple[float, float] | None:
    """The gateway's time on its newest ack and the station's clock then, as the agent
    recorded them, or None (no database, no row, or not readable). Read-only."""
    if not path.is_file():
        return None
    conn: sqlite3.Connection | None = None
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        row = conn.execute(
            "SELECT value FROM agent_state WHERE key = ?", (GATEWAY_TIME_KEY,)
        ).fetchone()
        value = json.loads(row[0]) if row else None
        if not isinstance(value, dict):
            return None
        gateway = datetime.fromisoformat(str(value["gateway"])).timestamp()
        station = datetime.fromisoformat(str(value["station"])).timestamp()
        return gateway, station
    except (sqlite3.Error, ValueError, TypeError, KeyError, OverflowError):
        return None
    finally:
        if conn is not None:
            conn.close()


def _gateway(now: float, seen: tuple[float, float] | None, said: list[str]) -> bool:
    if seen is None:
        said.append("gateway: no time yet")
        return False
    gateway, station = seen
    ago = now - station
    if ago < -BACK_SLACK_S or ago > GATEWAY_RECENT_S:
        said.append(f"gateway: time recorded at {_when(station)}, not within the last hour")
        return False
    apart = gateway - station
    said.append(
        f"gateway: {abs(apart):.0f} s {'ahead' if apart > 0 else 'behind'}, {ago:.0f} s ago"
    )
    return abs(apart) <= AGREE_S


def newest_fact(path: Path) -> float | None:
    """When the station's newest event was made (system time, epoch seconds), or None when
    there is no database or no event yet. Read-only: the running kiosk is not disturbed."""
    if not path.is_file():
        return None
    conn: sqlite3.Connection | None = None
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        row = conn.execute("SELECT max(created_at) FROM outbox").fetchone()
    except sqlite3.Error:
        return None
    finally:
        if conn is not None:
            conn.close()
    return float(row[0]) if row is not None and isinstance(row[0], int | float) else None


def _when(at: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(at))


@dataclass(frozen=True)
class ClockVerdict:
    status: Literal["pass", "fail", "skip"]
    detail: str


def judge(
    now: float,
    ntp: ClockStatus,
    rtc: RtcState | None,
    newest: float | None,
    *,
    sim: bool,
    gateway: tuple[float, float] | None = None,
) -> ClockVerdict:
    """The clock check's verdict from what each source said (``rtc`` None: none fitted or
    not read)."""
    said = [
        "NTP: "
        + {True: "synchronised", False: "not synchronised", None: "cannot tell"}[ntp.synchronised]
        + f" ({ntp.detail})"
    ]
    rtc_agrees = False
    if rtc is not None:
        if rtc.valid and rtc.time is not None:
            apart = rtc.time.timestamp() - now
            rtc_agrees = abs(apart) <= AGREE_S
            said.append(f"RTC: valid, {abs(apart):.0f} s {'ahead' if apart > 0 else 'behind'}")
        else:
            said.append(f"RTC: {rtc.describe()}")
    gateway_agrees = _gateway(now, gateway, said)
    if newest is not None:
        said.append(f"newest fact {_when(newest)}")
    sources = "; ".join(said)
    if newest is not None and now < newest - BACK_SLACK_S:
        return ClockVerdict(
            "fail",
            f"the system clock ({_when(now)}) is {newest - now:.0f} s before the newest fact "
            f"the station recorded: it went back; set it from NTP or the real-time clock "
            f"before anyone checks in ({sources})",
        )
    if ntp.synchronised is True:
        return ClockVerdict("pass", f"synchronised ({sources})")
    if rtc_agrees:
        return ClockVerdict("pass", f"the real-time clock vouches for it ({sources})")
    if gateway_agrees:
        return ClockVerdict("pass", f"the gateway vouches for it ({sources})")
    if ntp.synchronised is None and rtc is None:
        return ClockVerdict("skip", f"cannot tell whether it is synchronised: {sources}")
    if sim:
        # Drills and tests run anywhere (a laptop, a container, CI without network); only a
        # station's own clock stamps real events.
        return ClockVerdict(
            "skip", f"not trusted, not required on the simulated backend ({sources})"
        )
    return ClockVerdict(
        "fail",
        f"no source vouches for it ({sources}): event times would be wrong; check network "
        "time (timedatectl timesync-status) or fit a real-time clock",
    )
