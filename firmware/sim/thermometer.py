"""Simulated devices that behave like the real ones, for drills and tests.

The simulated thermometer is the real :class:`~firmware.thermometer.MLX90614` driver talking
to :class:`FakeSMBus`, a bus with a :class:`FakeMLX90614` on it that answers from the sensor's
registers with real PEC bytes. Like the device and the Linux I2C driver, the fake:

- NACKs (``OSError`` errno 121, "Remote I/O error") a transfer to an address where no device
  answers, a command that is not one of the sensor's registers, and a write to its RAM;
- needs the command and the read in one combined transaction (repeated start): a read on
  its own is NACKed;
- clocks out LSB, MSB, PEC, and 0xFF after that if the master reads on.

Faults are injected with :meth:`FakeMLX90614.inject`: ``"nack"``, ``"bad_pec"``,
``"error_flag"`` (bit 15 of the object word) and ``"garbage"`` (an object word of 0, which
would be -273.15 C).

:class:`SimThermometer` is a :class:`~firmware.thermometer.Thermometer` over that fake whose
``queue([37.6, 36.9])`` makes the next measurements report 37.6 C, then 36.9 C (after the
calibration offset, as the check-in rules see them): for each, a resident steps in front of
the sensor and leaves when the measurement is done.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Iterable
from typing import ClassVar, Literal

from firmware.errors import SimulationError
from firmware.sim.i2c import FakeSMBus, nack
from firmware.thermometer import (
    DEFAULT_ADDRESS,
    EEPROM,
    ERROR_FLAG,
    MLX90614,
    REG_AMBIENT,
    REG_FLAGS,
    REG_OBJECT1,
    REG_OBJECT2,
    REG_RAW_IR1,
    Reading,
    Thermometer,
    celsius_to_word,
    crc8,
)

log = logging.getLogger(__name__)

Fault = Literal["nack", "bad_pec", "error_flag", "garbage"]
FAULTS: tuple[Fault, ...] = ("nack", "bad_pec", "error_flag", "garbage")


# Commands read that a FakeMLX90614 keeps for tests (a day-long drill stays small).
READS_KEPT = 10_000


class FakeMLX90614:
    """The sensor's registers, its PEC and its faults."""

    EEPROM_DEFAULTS: ClassVar[dict[int, int]] = {
        0x20: 0x9993,  # To max
        0x21: 0x62E3,  # To min
        0x22: 0x0201,  # PWM control
        0x23: 0xF71C,  # Ta range
        0x24: 0xFFFF,  # emissivity 1.0
        0x25: 0x9FB4,  # configuration register 1
        0x2E: 0xBE00 | DEFAULT_ADDRESS,  # SMBus address
        0x3C: 0x1234,
        0x3D: 0x5678,
        0x3E: 0x9ABC,
        0x3F: 0xDEF0,
    }

    def __init__(self, ambient_c: float = 22.0, object_c: float | None = None) -> None:
        self.ambient_c = ambient_c
        self.object_c = ambient_c if object_c is None else object_c
        self.eeprom = dict(self.EEPROM_DEFAULTS)
        self._faults: deque[Fault] = deque()
        self._lock = threading.Lock()
        # Commands read, in order: the latest READS_KEPT (a day-long drill stays small).
        self.reads: deque[int] = deque(maxlen=READS_KEPT)

    def inject(self, fault: Fault, times: int = 1) -> None:
        """The next ``times`` reads of a temperature register go wrong this way."""
        if fault not in FAULTS:
            raise SimulationError(f"unknown fault {fault!r} (known: {', '.join(FAULTS)})")
        with self._lock:
            self._faults.extend([fault] * times)

    def _word(self, command: int) -> int:
        if command == REG_AMBIENT:
            return celsius_to_word(self.ambient_c)
        if command in (REG_OBJECT1, REG_OBJECT2):
            return celsius_to_word(self.object_c)
        if command in (REG_RAW_IR1, REG_RAW_IR1 + 1):
            return max(0, min(0x7FFF, round((self.object_c - self.ambient_c) * 40))) & 0xFFFF
        if command == REG_FLAGS:
            return 0x0000
        if EEPROM <= command <= 0x3F and command in self.eeprom:
            return self.eeprom[command]
        raise nack()

    def transfer(self, address: int, write: bytes, read_len: int) -> bytes:
        if not write:
            raise nack()  # the sensor needs a command first
        command = write[0]
        if read_len == 0:
            if command <= 0x1F:
                raise nack()  # RAM is read-only
            if EEPROM <= command <= 0x3F and len(write) == 4 and command in self.eeprom:
                lsb, msb, pec = write[1], write[2], write[3]
                if crc8([address << 1, command, lsb, msb]) != pec:
                    raise nack()  # the sensor refuses a write with a bad PEC
                self.eeprom[command] = lsb | (msb << 8)
                return b""
            raise nack()
        with self._lock:
            word = self._word(command)
            self.reads.append(command)
            fault = None
            if command in (REG_AMBIENT, REG_OBJECT1, REG_OBJECT2) and self._faults:
                fault = self._faults.popleft()
        if fault == "nack":
            raise nack()
        if fault == "error_flag" and command != REG_AMBIENT:
            word |= ERROR_FLAG
        if fault == "garbage":
            word = 0x0000
        lsb, msb = word & 0xFF, word >> 8
        pec = crc8([address << 1, command, (address << 1) | 1, lsb, msb])
        if fault == "bad_pec":
            pec ^= 0x5A
        return bytes([lsb, msb, pec] + [0xFF] * max(0, read_len - 3))[:read_len]


class SimThermometer(Thermometer):
    """The real driver and measurement over :class:`FakeMLX90614` on :class:`FakeSMBus`."""

    def __init__(
        self,
        *,
        address: int = DEFAULT_ADDRESS,
        calibration_offset_c: float = 0.0,
        presence_delta_c: float = 3.0,
        stable_window: int = 3,
        stable_spread_c: float = 0.3,
        retries: int = 3,
        ambient_c: float = 22.0,
        interval_s: float = 0.01,
    ) -> None:
        self.device = FakeMLX90614(ambient_c=ambient_c)
        self.bus = FakeSMBus({address: self.device})
        self.room_c = ambient_c
        super().__init__(
            MLX90614(self.bus, address, retries=retries, retry_delay_s=0.001),
            calibration_offset_c=calibration_offset_c,
            presence_delta_c=presence_delta_c,
            stable_window=stable_window,
            stable_spread_c=stable_spread_c,
            interval_s=interval_s,
        )
        self._queue: deque[float] = deque()
        self._qlock = threading.Lock()

    def queue(self, readings: Iterable[float]) -> None:
        """The next measurements report these temperatures, in order."""
        values = [float(v) for v in readings]
        for v in values:
            if not 0.0 <= v <= 100.0:
                raise SimulationError(f"a simulated temperature of {v} C is not a body's")
        with self._qlock:
            self._queue.extend(values)

    @property
    def queued(self) -> list[float]:
        with self._qlock:
            return list(self._queue)

    def clear_queue(self) -> None:
        with self._qlock:
            self._queue.clear()

    def present(self, celsius: float) -> None:
        """Someone whose skin reads ``celsius`` (after the offset) stands in front."""
        sensor_c = celsius - self.calibration_offset_c
        # Keep the presence gate meaningful: the room is cooler than the person.
        self.device.ambient_c = min(self.room_c, sensor_c - self.presence_delta_c - 1.0)
        self.device.object_c = sensor_c

    def leave(self) -> None:
        self.device.ambient_c = self.room_c
        self.device.object_c = self.room_c

    def measure(self, timeout: float = 5.0) -> Reading:
        with self._qlock:
            nxt = self._queue.popleft() if self._queue else None
        if nxt is None:
            return super().measure(timeout)
        self.present(nxt)
        try:
            return super().measure(timeout)
        finally:
            self.leave()
