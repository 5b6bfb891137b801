"""The station's clock judge (kiosk_ui.core.clock), with the real DS3231 driver over the
simulated chip, and the ledger's floor on a real SQLite file."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from firmware.rtc import DS3231
from firmware.sim.i2c import FakeSMBus
from firmware.sim.rtc import FakeDS3231
from kiosk_ui.clock_sources import SimClock, ntp_synchronised
from kiosk_ui.core.clock import (
    AGREE_S,
    BACK_SLACK_S,
    GATEWAY_RECENT_S,
    ClockJudge,
    GatewayTime,
    Reason,
)
from tests.support.station import open_station, resident

NOW = datetime(2026, 11, 23, 7, 0, tzinfo=UTC).timestamp()


def rtc_at(at: float, *, running: bool = True) -> DS3231:
    chip = FakeDS3231(datetime.fromtimestamp(at, UTC), running=running)
    return DS3231(FakeSMBus({0x68: chip}))


def judge(
    now: float = NOW,
    ntp: bool | None = False,
    floor: float = 0.0,
    rtc: DS3231 | None = None,
    gateway: GatewayTime | None = None,
) -> ClockJudge:
    return ClockJudge(
        wall=lambda: now,
        ntp=lambda: ntp,
        floor=lambda: floor,
        rtc=rtc.state if rtc is not None else None,
        gateway=lambda: gateway,
    )


def test_ntp_synchronised_is_trusted() -> None:
    j = judge(ntp=True, floor=NOW - 3600).judge()
    assert (j.trusted, j.source, j.reason) == (True, "ntp", None)
    assert "NTP: synchronised" in j.detail


def test_no_source_is_untrusted_and_says_what_each_source_said() -> None:
    j = judge(ntp=None).judge()
    assert (j.trusted, j.reason) == (False, Reason.NO_SOURCE)
    assert "NTP: cannot tell" in j.detail


def test_a_valid_rtc_that_agrees_vouches_for_the_clock() -> None:
    j = judge(rtc=rtc_at(NOW + 3)).judge()
    assert (j.trusted, j.source) == (True, "rtc")
    assert "RTC: valid, 3 s ahead" in j.detail


def test_a_valid_rtc_that_disagrees_does_not() -> None:
    j = judge(rtc=rtc_at(NOW - AGREE_S - 30)).judge()
    assert (j.trusted, j.reason) == (False, Reason.NO_SOURCE)
    assert "s behind" in j.detail


def test_an_rtc_whose_oscillator_stopped_does_not() -> None:
    j = judge(rtc=rtc_at(NOW, running=False)).judge()
    assert (j.trusted, j.reason) == (False, Reason.NO_SOURCE)
    assert "oscillator stopped" in j.detail


def test_an_rtc_that_does_not_answer_counts_as_no_source() -> None:
    absent = DS3231(FakeSMBus({}), retries=0)
    j = judge(rtc=absent).judge()
    assert (j.trusted, j.reason) == (False, Reason.NO_SOURCE)
    assert "RTC: real-time clock at I2C address 0x68" in j.detail


def test_a_clock_before_the_floor_went_back_whatever_ntp_says() -> None:
    j = judge(now=0.0, ntp=True, floor=NOW).judge()
    assert (j.trusted, j.reason) == (False, Reason.BEFORE_FLOOR)
    assert "1970-01-01 00:00:00 UTC" in j.detail and "it went back" in j.detail
    # NTP slewing a second back is not a clock gone back
    assert judge(now=NOW - BACK_SLACK_S / 2, ntp=True, floor=NOW).judge().trusted


def test_a_recent_gateway_time_that_agrees_vouches_for_the_clock() -> None:
    j = judge(gateway=GatewayTime(gateway=NOW - 590 + 20, station=NOW - 590)).judge()
    assert (j.trusted, j.source) == (True, "gateway")
    assert "gateway: 20 s ahead, 590 s ago" in j.detail


def test_a_gateway_time_too_far_off_too_old_or_in_the_future_does_not() -> None:
    off = judge(gateway=GatewayTime(gateway=NOW + 600, station=NOW)).judge()
    old = judge(gateway=GatewayTime(NOW - GATEWAY_RECENT_S - 10, NOW - GATEWAY_RECENT_S - 10))
    ahead = judge(gateway=GatewayTime(gateway=NOW + 3600, station=NOW + 3600)).judge()
    none = judge(gateway=None).judge()
    for j in (off, old.judge(), ahead, none):
        assert not j.trusted and j.reason is Reason.NO_SOURCE, j.detail
    assert "gateway: 600 s ahead" in off.detail and "gateway: no time yet" in none.detail
    assert "too old" in old.judge().detail and "after this clock" in ahead.detail


@given(
    now=st.floats(0, 5e9),
    floor=st.floats(0, 5e9),
    ntp=st.sampled_from([True, False, None]),
    rtc_apart=st.none() | st.floats(-1e6, 1e6),
    gateway_ago=st.none() | st.floats(-2 * GATEWAY_RECENT_S, 2 * GATEWAY_RECENT_S),
    gateway_apart=st.floats(-1e6, 1e6),
)
def test_trusted_only_when_a_source_vouches_and_never_before_the_floor(
    now: float,
    floor: float,
    ntp: bool | None,
    rtc_apart: float | None,
    gateway_ago: float | None,
    gateway_apart: float,
) -> None:
    rtc = None
    rtc_year_ok = False
    if rtc_apart is not None and 1.8e9 < now + rtc_apart < 4e9:
        rtc = rtc_at(now + rtc_apart)
        rtc_year_ok = True
    seen = None
    if gateway_ago is not None:
        seen = GatewayTime(gateway=now - gateway_ago + gateway_apart, station=now - gateway_ago)
    j = judge(now=now, ntp=ntp, floor=floor, rtc=rtc, gateway=seen).judge()
    gateway_ok = (
        gateway_ago is not None
        and -BACK_SLACK_S + 1 < gateway_ago < GATEWAY_RECENT_S - 1
        and abs(gateway_apart) <= AGREE_S - 1
    )
    gateway_bad = (
        gateway_ago is None
        or not -BACK_SLACK_S - 1 < gateway_ago < GATEWAY_RECENT_S + 1
        or abs(gateway_apart) > AGREE_S + 1
    )
    vouched = ntp is True or (rtc_year_ok and abs(rtc_apart or 0.0) <= AGREE_S - 1) or gateway_ok
    if now < floor - BACK_SLACK_S:
        assert not j.trusted and j.reason is Reason.BEFORE_FLOOR
    elif vouched:
        assert j.trusted
    if j.trusted:
        assert now >= floor - BACK_SLACK_S and j.source in ("ntp", "rtc", "gateway")
        assert j.reason is None
    else:
        assert j.reason is not None and j.source is None
    if j.source == "gateway":  # only when neither NTP nor the RTC does, and the gateway agrees
        assert ntp is not True and not gateway_bad


def test_ntp_flag_file_says_synchronised(tmp_path: Path) -> None:
    flag = tmp_path / "synchronized"
    flag.touch()
    assert ntp_synchronised(flag) is True


def test_sim_clock_sets_jumps_and_synchronises() -> None:
    c = SimClock()
    assert c.ntp() is True
    c.set(0.0)
    c.synchronise(False)
    assert c.now() < 10 and c.ntp() is False
    c.jump(3600)
    assert 3600 <= c.now() < 3610
    c.synchronise(True)
    assert abs(c.now() - datetime.now(UTC).timestamp()) < 5 and c.ntp() is True


def test_the_ledger_floor_is_the_newest_committed_fact(tmp_path: Path) -> None:
    rig = open_station(tmp_path)
    s = rig.station
    assert s.ledger.floor == 0.0
    first = s.check_in(resident("r-1", "red"))
    at = rig.clock()
    assert s.ledger.floor == at
    rig.clock.advance(-7 * 86400)  # a week back: the check-in is recorded at the floor
    again = s.check_in(resident("r-2", "red"))
    assert again.events[0]["time"] == first.events[0]["time"]
    rows = s.db.conn.execute("SELECT at FROM checkins ORDER BY id").fetchall()
    assert [r[0] for r in rows] == [at, at]
    s.close()


def test_a_forward_jump_neither_splits_nor_duplicates_the_day(tmp_path: Path) -> None:
    rig = open_station(tmp_path, {"pool_size": 10})
    s = rig.station
    s.scan("TB2026112300001", "S07")
    s.check_in(resident("a"), [36.5])
    s.seal("S07")
    rig.clock.advance(3600)  # NTP synchronises an hour late: the clock jumps forward
    s.scan("TB2026112300002", "S07")
    again = s.check_in(resident("a"), [36.5])
    assert (again.decision, again.reason) == ("refer", "already_sampled")
    s.check_in(resident("b"), [36.5])
    c = s.counters()
    assert (c.checkins, c.by_decision) == (3, {"pool": 2, "refer": 1})
    assert s.db.conn.execute("SELECT count(*) FROM checkin_days").fetchone()[0] == 1
    # and back to 1970 (a reboot without network): still the same day, the window holds
    rig.clock.advance(-rig.clock())
    third = s.check_in(resident("a"), [36.5])
    assert (third.decision, third.reason) == ("refer", "already_sampled")
    assert s.counters().checkins == 4
    assert s.db.conn.execute("SELECT count(*) FROM checkin_days").fetchone()[0] == 1
    s.close()
