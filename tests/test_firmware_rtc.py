"""The DS3231 driver over the fake bus device that speaks its registers, and the formats."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st
from smbus2 import i2c_msg

from firmware.errors import ClockError, SimulationError
from firmware.rtc import (
    DS3231,
    NOT_BEFORE,
    OSF,
    REG_CONTROL,
    REG_HOURS,
    REG_SECONDS,
    REG_STATUS,
    REG_TEMP_MSB,
    bcd_decode,
    bcd_encode,
    decode_temperature,
    decode_time,
    encode_time,
)
from firmware.sim.i2c import FakeSMBus
from firmware.sim.rtc import POWER_ON, FakeDS3231

MOMENT = datetime(2026, 12, 3, 7, 15, 42, tzinfo=UTC)
moments = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2199, 12, 31, 23, 59, 59)
).map(lambda d: d.replace(microsecond=0, tzinfo=UTC))


class Ticks:
    """A monotonic clock the test moves."""

    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def make(start: datetime | None = MOMENT, *, running: bool = True):
    ticks = Ticks()
    chip = FakeDS3231(start, running=running, monotonic=ticks)
    bus = FakeSMBus({0x68: chip})
    return chip, bus, DS3231(bus, retry_delay_s=0), ticks


# -- BCD and the register formats (properties) ---------------------------------------------


@given(st.integers(0, 99))
def test_bcd_round_trip(n: int) -> None:
    byte = bcd_encode(n)
    assert bcd_decode(byte) == n
    assert f"{byte:02X}" == f"{n:02d}"  # BCD reads in hexadecimal as the decimal number


@given(st.integers(0, 255))
def test_every_byte_decodes_to_its_encoding_or_is_refused(byte: int) -> None:
    try:
        n = bcd_decode(byte)
    except ValueError as exc:
        assert (byte >> 4) > 9 or (byte & 0xF) > 9
        assert "not binary-coded decimal" in str(exc)
    else:
        assert bcd_encode(n) == byte


@pytest.mark.parametrize("n", [-1, 100, 255])
def test_bcd_encode_refuses_what_does_not_fit(n: int) -> None:
    with pytest.raises(ValueError, match="BCD"):
        bcd_encode(n)


@given(moments)
def test_time_registers_round_trip(moment: datetime) -> None:
    regs = encode_time(moment)
    assert len(regs) == 7
    assert decode_time(regs) == moment
    assert bool(regs[5] & 0x80) == (moment.year >= 2100)  # the century bit
    assert regs[3] == moment.isoweekday()


@given(st.binary(min_size=7, max_size=7))
def test_any_seven_bytes_are_a_time_or_a_clock_error(regs: bytes) -> None:
    try:
        moment = decode_time(regs)
    except ClockError as exc:
        assert "register" in str(exc) or "no such day" in str(exc)
    else:
        assert datetime(2000, 1, 1, tzinfo=UTC) <= moment < datetime(2200, 1, 1, tzinfo=UTC)
        assert moment.tzinfo is UTC


def test_the_datasheet_reading_decodes() -> None:
    # 21:07:09 on Sunday 2026-12-06, 24-hour mode
    assert decode_time(bytes([0x09, 0x07, 0x21, 7, 0x06, 0x12, 0x26])) == datetime(
        2026, 12, 6, 21, 7, 9, tzinfo=UTC
    )
    # the same in 12-hour mode: 9 PM
    regs = bytes([0x09, 0x07, 0x40 | 0x20 | 0x09, 7, 0x06, 0x12, 0x26])
    assert decode_time(regs).hour == 21
    # 12 AM is midnight, 12 PM is noon
    assert decode_time(bytes([0, 0, 0x52, 1, 1, 1, 0x26])).hour == 0
    assert decode_time(bytes([0, 0, 0x72, 1, 1, 1, 0x26])).hour == 12
    # the century bit
    assert decode_time(bytes([0, 0, 0, 1, 1, 0x81, 0x05])).year == 2105


@pytest.mark.parametrize(
    ("regs", "says"),
    [
        (bytes([0x5A, 0, 0, 1, 1, 1, 0x26]), "register 0x00 (seconds) holds 0x5A, not BCD"),
        (bytes([0x60, 0, 0, 1, 1, 1, 0x26]), "(seconds) holds 60, outside 0-59"),
        (bytes([0x80, 0, 0, 1, 1, 1, 0x26]), "(seconds) holds 0x80: a bit the chip keeps at 0"),
        (bytes([0, 0, 0x24, 1, 1, 1, 0x26]), "(hours) holds 24, outside 0-23"),
        (bytes([0, 0, 0x40, 1, 1, 1, 0x26]), "(hours) holds 0, outside 1-12"),
        (bytes([0, 0, 0, 0, 1, 1, 0x26]), "(day of the week) holds 0, outside 1-7"),
        (bytes([0, 0, 0, 1, 0, 1, 0x26]), "(date) holds 0, outside 1-31"),
        (bytes([0, 0, 0, 1, 1, 0x13, 0x26]), "(month) holds 13, outside 1-12"),
        (bytes([0, 0, 0, 1, 0x31, 0x02, 0x26]), "2026-02-31, no such day"),
        (bytes([0xFF] * 7), "register 0x00 (seconds) holds 0xFF"),
        (bytes(6), "6 timekeeping registers read, 7 needed"),
    ],
)
def test_garbage_registers_say_which_and_what(regs: bytes, says: str) -> None:
    with pytest.raises(ClockError) as exc:
        decode_time(regs)
    assert says in str(exc.value)


def test_encode_refuses_naive_and_out_of_range_times() -> None:
    with pytest.raises(ValueError, match="time zone"):
        encode_time(datetime(2026, 1, 1))
    with pytest.raises(ValueError, match="2000-2199"):
        encode_time(datetime(1999, 12, 31, 23, 59, tzinfo=UTC))


@pytest.mark.parametrize(
    ("msb", "lsb", "c"), [(25, 0x40, 25.25), (0, 0xC0, 0.75), (0xFF, 0x00, -1.0), (0xE7, 0, -25)]
)
def test_temperature_registers(msb: int, lsb: int, c: float) -> None:
    assert decode_temperature(msb, lsb) == c


# -- the fake behaves like the chip -----------------------------------------------------------


def test_register_pointer_advances_wraps_and_a_read_may_stand_alone() -> None:
    chip, bus, _, _ = make()
    w, r = i2c_msg.write(0x68, [0x11]), i2c_msg.read(0x68, 4)
    bus.i2c_rdwr(w, r)  # 0x11, 0x12, then wraps to 0x00, 0x01
    got = list(r)
    assert [int(b) for b in got[2:]] == [0x42, 0x15]
    alone = i2c_msg.read(0x68, 1)
    bus.i2c_rdwr(alone)  # goes on from the pointer: 0x02, the hours
    assert int(next(iter(alone))) == 0x07
    assert chip.pointer == 3


def test_the_clock_counts_and_a_read_never_mixes_two_seconds() -> None:
    _, _, rtc, ticks = make()
    ticks.t += 3661.9
    assert rtc.now() == MOMENT + timedelta(seconds=3661)


def test_osf_is_set_at_first_power_and_only_cleared_by_the_bus() -> None:
    chip, _, rtc, _ = make(None, running=False)
    state = rtc.state()
    assert state.oscillator_stopped and not state.valid
    assert state.time == POWER_ON
    rtc.write_registers(REG_STATUS, bytes([0xFF]))  # the bus cannot set OSF...
    assert chip.oscillator_stopped  # ...and writing 1 leaves it set
    rtc.set(MOMENT)
    state = rtc.state()
    assert not state.oscillator_stopped and state.valid and state.time == MOMENT
    rtc.write_registers(REG_STATUS, bytes([OSF]))
    assert not chip.oscillator_stopped
    rtc.write_registers(REG_TEMP_MSB, bytes([99, 0]))  # read-only
    assert rtc.state().temperature_c == 25.0


def test_a_stopped_oscillator_makes_the_time_invalid_until_set() -> None:
    chip, _, rtc, _ = make()
    assert rtc.state().valid
    chip.stop()
    state = rtc.state()
    assert state.oscillator_stopped and not state.valid
    assert "oscillator stopped (OSF set)" in state.describe()
    rtc.set(MOMENT + timedelta(days=1))
    assert rtc.state().valid


def test_set_turns_the_oscillator_on_for_battery() -> None:
    chip, _, rtc, _ = make()
    rtc.write_registers(REG_CONTROL, bytes([0x80 | 0x1C]))  # EOSC: stop on battery
    rtc.set(MOMENT)
    assert chip.registers[REG_CONTROL] == 0x1C


@given(moments)
def test_driver_sets_and_reads_back_any_time(moment: datetime) -> None:
    _, _, rtc, _ = make(None, running=False)
    rtc.set(moment)
    assert rtc.now() == moment


@given(moments)
def test_twelve_hour_mode_reads_back_the_same_time(moment: datetime) -> None:
    chip, _, rtc, _ = make(moment)
    hour = moment.hour % 12 or 12
    rtc.write_registers(
        REG_HOURS, bytes([0x40 | (0x20 if moment.hour >= 12 else 0) | bcd_encode(hour)])
    )
    assert chip.twelve_hour
    assert rtc.now() == moment


def test_a_time_before_any_station_ran_is_not_valid() -> None:
    _, _, rtc, _ = make(NOT_BEFORE - timedelta(days=1))
    state = rtc.state()
    assert not state.valid and "before any station ran" in state.describe()


# -- what goes wrong on a real bus ----------------------------------------------------------


def test_no_chip_at_the_address_is_a_clear_error() -> None:
    rtc = DS3231(FakeSMBus({}), retry_delay_s=0)
    with pytest.raises(ClockError) as exc:
        rtc.state()
    message = str(exc.value)
    assert "real-time clock at I2C address 0x68" in message
    assert "failed 3 times (Remote I/O error)" in message
    assert "hardware.rtc.address" in message


def test_a_nack_is_retried() -> None:
    chip, _, rtc, _ = make()
    chip.inject("nack", 2)
    assert rtc.now() == MOMENT
    assert chip.transactions == 3


def test_garbage_from_the_bus_is_a_clock_error_naming_the_register() -> None:
    chip, _, rtc, _ = make()
    chip.inject("garbage")
    with pytest.raises(ClockError, match=r"register 0x00 \(seconds\) holds 0xFF"):
        rtc.now()
    chip.inject("garbage")
    state = rtc.state()  # the state says so instead of raising
    assert state.time is None and not state.valid
    assert "holds 0xFF" in (state.problem or "") and "registers hold no time" in state.describe()
    assert rtc.now() == MOMENT  # and the next read is fine


def test_garbage_written_to_the_chip_is_shown_back_as_the_chip_does() -> None:
    chip, _, rtc, _ = make()
    rtc.write_registers(REG_SECONDS, bytes([0x00, 0x00, 0x00, 0x01, 0x31, 0x02, 0x26]))
    assert chip.current() is None
    with pytest.raises(ClockError, match="2026-02-31, no such day"):
        rtc.now()


def test_the_fake_refuses_unknown_faults_and_the_driver_bad_ranges() -> None:
    chip, _, rtc, _ = make()
    with pytest.raises(SimulationError, match="unknown fault"):
        chip.inject("smoke")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="no 20 registers"):
        rtc.read_registers(0, 20)
    with pytest.raises(ValueError, match="no 2 registers from 0x12"):
        rtc.write_registers(0x12, b"\0\0")


def test_a_closed_bus_is_a_clock_error() -> None:
    _, bus, rtc, _ = make()
    bus.close()
    with pytest.raises(ClockError) as exc:
        rtc.now()
    assert "(Bad file descriptor)" in str(exc.value)  # as a closed /dev/i2c-N answers
