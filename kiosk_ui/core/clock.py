"""The station's clock judge: may the kiosk believe its system clock right now?

A Raspberry Pi has no clock that runs while it is off. A tent whose network is down at dawn
boots with the time ``fake-hwclock`` saved last night, or with 1970; codes then look expired
or not yet valid, and the 12-hour resample window lies. So before the kiosk checks a
resident's code against the clock it asks :class:`ClockJudge`, which believes the clock
(:attr:`Judgement.trusted`) when

- NTP synchronised it (``ntp`` says so), or
- a valid real-time clock (``firmware.rtc.RtcState.valid``) agrees with it within
  :data:`AGREE_S`, or
- the gateway's time (on its newest ack, recorded by the edge agent with the station's clock
  at that moment) was within :data:`AGREE_S` of the station's, recorded no longer than
  :data:`GATEWAY_RECENT_S` ago by this clock and not in its future,

and never when it shows a time before the floor: the newest fact the station committed
(``Ledger.floor``), less :data:`BACK_SLACK_S`. Otherwise the judgement is untrusted with a
``reason`` (:class:`Reason`) and a line for the sampler and the technician.

No I/O here: each source is a callable passed in (``kiosk_ui.clock_sources`` has the real
ones and the drills' settable clock), so the judge is the same on a Pi, in a drill and in a
test. A source that fails (a real-time clock that does not answer) counts as not vouching.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from firmware.errors import StationError
from firmware.rtc import RtcState

log = logging.getLogger(__name__)

AGREE_S = 60.0  # a valid real-time clock this close to the system clock vouches for it
GATEWAY_RECENT_S = 3600.0  # a gateway time older than this by the station's clock vouches no more
BACK_SLACK_S = 2.0  # a clock this little before the floor is NTP slewing, not a clock gone back
CLOCK_UNTRUSTED = "clock_untrusted"  # the standing alert's kind


class Reason(StrEnum):
    """Why the clock is not believed."""

    BEFORE_FLOOR = "before_floor"  # earlier than the newest committed fact: it went back
    NO_SOURCE = "no_source"  # neither NTP, a valid real-time clock nor the gateway vouches


@dataclass(frozen=True)
class GatewayTime:
    """The gateway's time on its newest ack and the station's clock when it came (Unix s)."""

    gateway: float
    station: float


@dataclass(frozen=True)
class Judgement:
    """One look at the clock: trusted (and by which source), or why not."""

    trusted: bool
    source: str | None  # "ntp", "rtc" or "gateway" when trusted
    reason: Reason | None  # when not trusted
    detail: str  # what each source said, one line for the sampler panel and the technician
    now: float
    floor: float


def _when(at: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(at))


class ClockJudge:
    """Judges the system clock ``wall`` by ``ntp``, ``rtc``, ``gateway`` and the ``floor``.

    ``ntp`` returns whether NTP synchronised the clock (None: cannot tell); ``rtc`` the
    real-time clock's state (None when none is fitted); ``gateway`` the newest gateway time
    recorded (None when none is); ``floor`` the time of the newest
    committed fact. Cheap enough to run once a second (each source is read once).
    """

    def __init__(
        self,
        *,
        wall: Callable[[], float],
        ntp: Callable[[], bool | None],
        floor: Callable[[], float],
        rtc: Callable[[], RtcState] | None = None,
        gateway: Callable[[], GatewayTime | None] | None = None,
        agree_s: float = AGREE_S,
        recent_s: float = GATEWAY_RECENT_S,
    ) -> None:
        self.wall = wall
        self.ntp = ntp
        self.floor = floor
        self.rtc = rtc
        self.gateway = gateway
        self.agree_s = agree_s
        self.recent_s = recent_s

    def judge(self) -> Judgement:
        now, floor = self.wall(), self.floor()
        synced = self.ntp()
        said = [
            "NTP: " + {True: "synchronised", False: "not synchronised", None: "cannot tell"}[synced]
        ]
        rtc_agrees = self._rtc(now, said)
        gateway_agrees = self._gateway(now, said)
        if floor > 0:
            said.append(f"newest fact {_when(floor)}")
        sources = "; ".join(said)
        if now < floor - BACK_SLACK_S:
            return Judgement(
                False,
                None,
                Reason.BEFORE_FLOOR,
                f"the clock shows {_when(now)}, {floor - now:.0f} s before the newest fact "
                f"recorded: it went back ({sources})",
                now,
                floor,
            )
        if synced is True:
            return Judgement(True, "ntp", None, f"synchronised ({sources})", now, floor)
        if rtc_agrees:
            return Judgement(True, "rtc", None, f"the RTC vouches for it ({sources})", now, floor)
        if gateway_agrees:
            return Judgement(
                True, "gateway", None, f"the gateway vouches for it ({sources})", now, floor
            )
        return Judgement(
            False,
            None,
            Reason.NO_SOURCE,
            f"no source vouches for the clock ({sources})",
            now,
            floor,
        )

    def _rtc(self, now: float, said: list[str]) -> bool:
        """Whether the real-time clock vouches for ``now``; what it said goes to ``said``."""
        if self.rtc is None:
            return False
        try:
            state = self.rtc()
        except StationError as exc:
            said.append(f"RTC: {exc}")
            return False
        if not state.valid or state.time is None:
            said.append(f"RTC: {state.describe()}")
            return False
        apart = state.time.timestamp() - now
        said.append(f"RTC: valid, {abs(apart):.0f} s {'ahead' if apart > 0 else 'behind'}")
        return abs(apart) <= self.agree_s

    def _gateway(self, now: float, said: list[str]) -> bool:
        """Whether the gateway's newest recorded time vouches for ``now``; see the module."""
        if self.gateway is None:
            return False
        seen = self.gateway()
        if seen is None:
            said.append("gateway: no time yet")
            return False
        ago = now - seen.station
        if ago < -BACK_SLACK_S:
            said.append(f"gateway: time recorded at {_when(seen.station)}, after this clock")
            return False
        if ago > self.recent_s:
            said.append(f"gateway: last time {ago:.0f} s ago, too old")
            return False
        apart = seen.gateway - seen.station
        said.append(
            f"gateway: {abs(apart):.0f} s {'ahead' if apart > 0 else 'behind'}, {ago:.0f} s ago"
        )
        return abs(apart) <= self.agree_s
