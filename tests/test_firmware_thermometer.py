"""The MLX90614 driver and measurement, over the fake SMBus device that speaks its registers."""

from __future__ import annotations

import errno
import threading

import pytest
from hypothesis import given
from hypothesis import strategies as st
from smbus2 import i2c_msg

from firmware.errors import SensorError, SimulationError
from firmware.sim.i2c import FakeSMBus
from firmware.sim.thermometer import FakeMLX90614, SimThermometer
from firmware.thermometer import (
    MLX90614,
    REG_AMBIENT,
    REG_OBJECT1,
    Thermometer,
    celsius_to_word,
    crc8,
    msg_bytes,
    pec_for_read,
    word_to_celsius,
)


def make(ambient: float = 22.0, obj: float | None = None, retries: int = 3):
    dev = FakeMLX90614(ambient_c=ambient, object_c=obj)
    bus = FakeSMBus({0x5A: dev})
    return dev, bus, MLX90614(bus, 0x5A, retries=retries, retry_delay_s=0)


def test_pec_matches_the_datasheet_example() -> None:
    # MLX90614 datasheet, SMBus read word example: SA 0x5A, command 0x07, data 0x3AD2.
    assert crc8([0xB4, 0x07, 0xB5, 0xD2, 0x3A]) == 0x30
    assert pec_for_read(0x5A, 0x07, 0xD2, 0x3A) == 0x30


@given(st.binary(min_size=1, max_size=16))
def test_crc8_of_data_followed_by_its_crc_is_zero(data: bytes) -> None:
    assert crc8(data + bytes([crc8(data)])) == 0


@given(st.floats(min_value=-70, max_value=382))
def test_temperature_word_round_trip_within_one_step(c: float) -> None:
    assert abs(word_to_celsius(celsius_to_word(c)) - c) <= 0.011


# -- the fake rejects what the device rejects ------------------------------------------------


def test_fake_bus_nacks_an_address_where_nothing_answers() -> None:
    _, bus, _ = make()
    w, r = i2c_msg.write(0x5B, [REG_AMBIENT]), i2c_msg.read(0x5B, 3)
    with pytest.raises(OSError) as exc:
        bus.i2c_rdwr(w, r)
    assert exc.value.errno == errno.EREMOTEIO


@pytest.mark.parametrize("command", [0x00, 0x09, 0x1F, 0x2F, 0x40, 0x80, 0xEF])
def test_fake_sensor_nacks_a_register_it_does_not_have(command: int) -> None:
    _, bus, _ = make()
    with pytest.raises(OSError) as exc:
        bus.read_i2c_block_data(0x5A, command, 3)
    assert exc.value.errno == errno.EREMOTEIO


def test_fake_sensor_nacks_a_read_without_command_and_a_write_to_ram() -> None:
    _, bus, _ = make()
    with pytest.raises(OSError):
        bus.i2c_rdwr(i2c_msg.read(0x5A, 3))
    with pytest.raises(OSError):
        bus.i2c_rdwr(i2c_msg.write(0x5A, [REG_OBJECT1, 0x00, 0x00, 0x00]))


def test_fake_sensor_writes_eeprom_only_with_a_good_pec() -> None:
    dev, bus, _ = make()
    lsb, msb = 0x34, 0x12
    bad = crc8([0xB4, 0x24, lsb, msb]) ^ 1
    with pytest.raises(OSError):
        bus.i2c_rdwr(i2c_msg.write(0x5A, [0x24, lsb, msb, bad]))
    assert dev.eeprom[0x24] == 0xFFFF
    good = crc8([0xB4, 0x24, lsb, msb])
    bus.i2c_rdwr(i2c_msg.write(0x5A, [0x24, lsb, msb, good]))
    assert dev.eeprom[0x24] == 0x1234


def test_fake_sensor_answers_lsb_msb_pec_then_ff() -> None:
    _, bus, _ = make(ambient=25.0)
    data = bus.read_i2c_block_data(0x5A, REG_AMBIENT, 5)
    word = celsius_to_word(25.0)
    assert data[:2] == [word & 0xFF, word >> 8]
    assert data[2] == pec_for_read(0x5A, REG_AMBIENT, data[0], data[1])
    assert data[3:] == [0xFF, 0xFF]


def test_fake_refuses_an_unknown_fault_and_a_closed_bus_fails() -> None:
    dev, bus, drv = make()
    with pytest.raises(SimulationError):
        dev.inject("smoke")  # type: ignore[arg-type]
    bus.close()
    with pytest.raises(SensorError):
        drv.read_word(REG_AMBIENT)


# -- the driver --------------------------------------------------------------------------


def test_driver_reads_ambient_and_object_through_a_repeated_start_transaction() -> None:
    dev, bus, drv = make(ambient=23.5, obj=36.7)
    a, ar = drv.ambient()
    o, orr = drv.object()
    assert a == pytest.approx(23.5, abs=0.01)
    assert o == pytest.approx(36.7, abs=0.01)
    assert (ar.tries, orr.tries) == (1, 1)
    assert list(dev.reads) == [REG_AMBIENT, REG_OBJECT1]
    assert bus.transactions == 2


def test_driver_retries_a_nack_and_a_bad_pec_then_succeeds() -> None:
    dev, _, drv = make(obj=36.0)
    dev.inject("nack")
    dev.inject("bad_pec")
    o, r = drv.object()
    assert o == pytest.approx(36.0, abs=0.01)
    assert r.tries == 3


def test_driver_gives_up_on_persistent_bad_pec_with_a_clear_error() -> None:
    dev, _, drv = make()
    dev.inject("bad_pec", 4)
    with pytest.raises(SensorError, match=r"0x5A.*register 0x07 failed 4 times.*bad PEC"):
        drv.object()


def test_driver_gives_up_on_persistent_nack_and_names_the_wiring() -> None:
    dev, _, drv = make(retries=1)
    dev.inject("nack", 2)
    with pytest.raises(SensorError, match=r"Remote I/O error.*wiring"):
        drv.ambient()


def test_error_flag_is_retried_and_then_reported() -> None:
    dev, _, drv = make(obj=30.0, retries=2)
    dev.inject("error_flag")
    assert drv.object()[0] == pytest.approx(30.0, abs=0.01)
    dev.inject("error_flag", 3)
    with pytest.raises(SensorError, match="error flag 3 times"):
        drv.object()


def test_garbage_outside_what_the_sensor_measures_is_an_error() -> None:
    dev, _, drv = make()
    dev.inject("garbage")
    with pytest.raises(SensorError, match="outside what it can measure"):
        drv.object()
    dev.inject("garbage")
    with pytest.raises(SensorError, match=r"ambient .* outside"):
        drv.ambient()


def test_wrong_address_in_config_is_a_clear_sensor_error() -> None:
    dev = FakeMLX90614()
    drv = MLX90614(FakeSMBus({0x5A: dev}), 0x5B, retries=0, retry_delay_s=0)
    with pytest.raises(SensorError, match="0x5B"):
        drv.ambient()


def test_read_message_bytes_of_smbus2_messages() -> None:
    msg = i2c_msg.read(0x5A, 3)
    FakeSMBus({0x5A: FakeMLX90614()}).i2c_rdwr(i2c_msg.write(0x5A, [REG_AMBIENT]), msg)
    assert len(msg_bytes(msg)) == 3


# -- the measurement ---------------------------------------------------------------------


def thermometer(dev: FakeMLX90614, **kw: float) -> Thermometer:
    drv = MLX90614(FakeSMBus({0x5A: dev}), retries=2, retry_delay_s=0)
    return Thermometer(drv, interval_s=0.001, **kw)  # type: ignore[arg-type]


def test_measure_waits_for_presence_and_a_stable_window_and_keeps_raw_words() -> None:
    dev = FakeMLX90614(ambient_c=24.0, object_c=36.55)
    t = thermometer(dev, calibration_offset_c=0.4)
    r = t.measure(1.0)
    assert r.value_c == 37.0  # 36.55 + 0.4, to 0.1 C
    assert r.object_c == pytest.approx(36.55, abs=0.01)
    assert r.raw_object == (celsius_to_word(36.55),) * 3
    assert r.raw_ambient == celsius_to_word(24.0)
    assert r.offset_c == 0.4
    assert r.tries == 6
    assert t.history == [r]


def test_no_one_in_front_of_the_sensor_times_out_with_a_clear_error() -> None:
    dev = FakeMLX90614(ambient_c=24.0, object_c=25.0)
    with pytest.raises(SensorError, match="no one in front of the thermometer"):
        thermometer(dev).measure(0.05)


def test_unstable_readings_never_make_a_measurement() -> None:
    dev = FakeMLX90614(ambient_c=22.0, object_c=35.0)
    t = thermometer(dev, stable_spread_c=0.1)
    values = iter([35.0, 36.0] * 1000)
    original = dev._word

    def wobbling(command: int) -> int:
        if command == REG_OBJECT1:
            dev.object_c = next(values)
        return original(command)

    dev._word = wobbling  # type: ignore[method-assign]
    with pytest.raises(SensorError, match="no stable temperature"):
        t.measure(0.05)


def test_a_measurement_can_be_cancelled_from_another_thread() -> None:
    dev = FakeMLX90614(ambient_c=22.0, object_c=22.0)
    t = Thermometer(MLX90614(FakeSMBus({0x5A: dev})), interval_s=0.05)
    timer = threading.Timer(0.05, t.cancel)
    timer.start()
    with pytest.raises(SensorError, match="cancelled"):
        t.measure(10.0)
    timer.join()
    dev.object_c = 36.0  # the next resident is measured as usual
    assert t.measure(2.0).value_c == 36.0


def test_the_shutdown_event_stops_a_measurement() -> None:
    dev = FakeMLX90614(ambient_c=22.0, object_c=22.0)
    stop = threading.Event()
    stop.set()
    t = Thermometer(MLX90614(FakeSMBus({0x5A: dev})), interval_s=0.01, stop=stop)
    with pytest.raises(SensorError, match="cancelled"):
        t.measure(10.0)


def test_sim_thermometer_reports_queued_temperatures_in_order() -> None:
    t = SimThermometer(calibration_offset_c=0.3)
    t.queue([37.6, 36.9])
    assert t.queued == [37.6, 36.9]
    assert [t.measure(1.0).value_c for _ in range(2)] == [37.6, 36.9]
    assert t.queued == []
    # Between residents nobody stands there: the next measurement waits and times out.
    with pytest.raises(SensorError, match="no one in front"):
        t.measure(0.05)


@given(st.floats(min_value=30.0, max_value=44.0).map(lambda v: round(v, 1)))
def test_sim_thermometer_reports_exactly_the_queued_tenth(value: float) -> None:
    t = SimThermometer(interval_s=0.0)
    t.queue([value])
    assert t.measure(1.0).value_c == value


def test_sim_thermometer_injections_reach_the_driver() -> None:
    t = SimThermometer(retries=1)
    t.device.inject("bad_pec", 2)
    t.queue([36.5])
    with pytest.raises(SensorError, match="bad PEC"):
        t.measure(1.0)
    # The station goes on: the next resident is measured normally.
    t.queue([36.5])
    assert t.measure(1.0).value_c == 36.5


def test_sim_thermometer_refuses_a_temperature_no_body_has() -> None:
    with pytest.raises(SimulationError):
        SimThermometer().queue([-300.0])
