"""The MLX90614 infrared thermometer: driver, presence gate and stable measurement.

Stable interface:

- :class:`MLX90614` ``(bus, address=0x5A)`` -- the register-level driver over an
  smbus2-like bus (anything with ``i2c_rdwr``). Each read is one combined I2C transaction
  with a repeated start, as the sensor's SMBus "read word" requires::

      S  addr+W  command  Sr  addr+R  LSB  MSB  PEC  P

  The PEC byte is the SMBus CRC-8 (polynomial x^8 + x^2 + x + 1, 0x07, initial 0) over
  ``addr+W, command, addr+R, LSB, MSB``; a mismatch is a corrupted transfer. RAM 0x06 is the
  ambient temperature, 0x07 the object temperature; both count in 0.02 K. Bit 15 of the
  object word is the sensor's error flag. I2C errors (``OSError``: NACK, arbitration lost)
  and bad PEC bytes are retried ``retries`` times; then :class:`~firmware.errors.SensorError`
  says what failed and what to check.
- :class:`Thermometer` -- what the kiosk uses: ``measure(timeout) -> Reading``. It waits
  until someone is in front of the sensor (object at least ``presence_delta_c`` warmer than
  ambient), then until ``stable_window`` consecutive readings agree within
  ``stable_spread_c``; the result is their mean plus ``calibration_offset_c``, rounded to
  0.1 C as clinical thermometers show it. The raw register words are kept in the
  :class:`Reading` for audit. Readings outside what the sensor can measure are garbage
  (SensorError); whether a body temperature is plausible (34-42.5 C) is the check-in rule's
  decision, not the driver's.

The bus speed: the MLX90614 is an SMBus device, at most 100 kHz; firmware/boot/config.txt
sets the Pi's I2C to 50 kHz, which leaves margin for long cables to the sensor head.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from smbus2 import i2c_msg

from firmware.errors import SensorError

log = logging.getLogger(__name__)

DEFAULT_ADDRESS = 0x5A
REG_RAW_IR1 = 0x04
REG_AMBIENT = 0x06
REG_OBJECT1 = 0x07
REG_OBJECT2 = 0x08
EEPROM = 0x20
REG_FLAGS = 0xF0
ERROR_FLAG = 0x8000
KELVIN_STEP = 0.02
ABS_ZERO_C = -273.15
# What the sensor can measure at all (datasheet ranges); anything else is a broken transfer.
AMBIENT_RANGE_C = (-40.0, 125.0)
OBJECT_RANGE_C = (-70.0, 382.2)


class I2CBus(Protocol):
    """The part of smbus2.SMBus the driver uses."""

    def i2c_rdwr(self, *i2c_msgs: Any) -> None: ...


def msg_bytes(msg: Any) -> list[int]:
    """The bytes of an smbus2 i2c_msg after a transfer."""
    return [int(b) for b in msg]


def crc8(data: bytes | bytearray | list[int], crc: int = 0) -> int:
    """SMBus packet error code: CRC-8, polynomial 0x07, no reflection, initial value 0."""
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = ((crc << 1) ^ 0x07) & 0xFF if crc & 0x80 else (crc << 1) & 0xFF
    return crc


def pec_for_read(address: int, command: int, lsb: int, msb: int) -> int:
    return crc8([address << 1, command, (address << 1) | 1, lsb, msb])


def word_to_celsius(word: int) -> float:
    return (word & 0x7FFF) * KELVIN_STEP + ABS_ZERO_C


def celsius_to_word(celsius: float) -> int:
    return max(0, min(0x7FFF, round((celsius - ABS_ZERO_C) / KELVIN_STEP)))


@dataclass(frozen=True)
class WordRead:
    word: int
    tries: int


class MLX90614:
    """Register access to one MLX90614 at ``address`` on ``bus``."""

    def __init__(
        self,
        bus: I2CBus,
        address: int = DEFAULT_ADDRESS,
        *,
        retries: int = 3,
        retry_delay_s: float = 0.005,
    ) -> None:
        self.bus = bus
        self.address = address
        self.retries = retries
        self.retry_delay_s = retry_delay_s

    def read_word(self, command: int) -> WordRead:
        """One register, PEC verified, retried on I2C errors and bad PEC."""
        problems: list[str] = []
        for attempt in range(1, self.retries + 2):
            write = i2c_msg.write(self.address, [command])
            read = i2c_msg.read(self.address, 3)
            try:
                self.bus.i2c_rdwr(write, read)
            except OSError as exc:
                problems.append(f"I2C error: {exc.strerror or exc}")
            else:
                lsb, msb, pec = msg_bytes(read)
                expected = pec_for_read(self.address, command, lsb, msb)
                if pec == expected:
                    return WordRead(lsb | (msb << 8), attempt)
                problems.append(f"bad PEC 0x{pec:02X} (expected 0x{expected:02X})")
            if attempt <= self.retries:
                time.sleep(self.retry_delay_s * attempt)
        raise SensorError(
            f"thermometer at I2C address 0x{self.address:02X}: reading register "
            f"0x{command:02X} failed {len(problems)} times ({'; '.join(problems[-2:])}); "
            "check the sensor's wiring (SDA, SCL, 3.3 V, GND) and hardware.thermometer.address"
        )

    def ambient(self) -> tuple[float, WordRead]:
        r = self.read_word(REG_AMBIENT)
        if r.word & ERROR_FLAG:
            raise SensorError(f"thermometer: ambient register 0x{r.word:04X} has bit 15 set")
        c = word_to_celsius(r.word)
        if not AMBIENT_RANGE_C[0] <= c <= AMBIENT_RANGE_C[1]:
            raise SensorError(f"thermometer: ambient {c:.2f} C is outside what it can measure")
        return c, r

    def object(self) -> tuple[float, WordRead]:
        tries = 0
        for _ in range(self.retries + 1):
            r = self.read_word(REG_OBJECT1)
            tries += r.tries
            if not r.word & ERROR_FLAG:
                break
            log.warning("thermometer error flag set (object word 0x%04X)", r.word)
        else:
            raise SensorError(
                f"thermometer: the sensor set its error flag {self.retries + 1} times in a row "
                f"(object word 0x{r.word:04X}); it may be damaged or its supply too low"
            )
        r = WordRead(r.word, tries)
        c = word_to_celsius(r.word)
        if not OBJECT_RANGE_C[0] <= c <= OBJECT_RANGE_C[1]:
            raise SensorError(f"thermometer: object {c:.2f} C is outside what it can measure")
        return c, r


@dataclass(frozen=True)
class Reading:
    """One measurement, with what it was made of (kept for audit)."""

    value_c: float  # the temperature to decide on: mean object temperature + offset, 0.1 C
    object_c: float  # mean object temperature as the sensor reported it
    ambient_c: float
    offset_c: float
    raw_object: tuple[int, ...]  # the object words of the stable window
    raw_ambient: int
    tries: int  # I2C transactions made, retries included
    elapsed_s: float = 0.0


@dataclass
class _Window:
    values: list[float] = field(default_factory=list)
    words: list[int] = field(default_factory=list)


class Thermometer:
    """Presence gate, stability window and calibration around an :class:`MLX90614`."""

    def __init__(
        self,
        sensor: MLX90614,
        *,
        calibration_offset_c: float = 0.0,
        presence_delta_c: float = 3.0,
        stable_window: int = 3,
        stable_spread_c: float = 0.3,
        interval_s: float = 0.1,
        stop: threading.Event | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.sensor = sensor
        self.calibration_offset_c = calibration_offset_c
        self.presence_delta_c = presence_delta_c
        self.stable_window = stable_window
        self.stable_spread_c = stable_spread_c
        self.interval_s = interval_s
        self._stop = stop or threading.Event()  # the application is shutting down
        self._cancel = threading.Event()  # this measurement is no longer wanted
        self._clock = clock
        self.history: list[Reading] = []

    def ambient(self) -> float:
        return self.sensor.ambient()[0]

    def measure(self, timeout: float = 5.0) -> Reading:
        """Wait for a forehead or wrist and a stable reading; raise SensorError if none
        comes within ``timeout`` seconds or the sensor fails."""
        self._cancel.clear()
        start = self._clock()
        deadline = start + timeout
        window = _Window()
        tries = 0
        ambient_c, ambient_word = 0.0, 0
        present_seen = False
        while True:
            a, ar = self.sensor.ambient()
            o, orr = self.sensor.object()
            tries += ar.tries + orr.tries
            ambient_c, ambient_word = a, ar.word
            if o - a >= self.presence_delta_c:
                present_seen = True
                window.values.append(o)
                window.words.append(orr.word)
                del window.values[: -self.stable_window]
                del window.words[: -self.stable_window]
                if (
                    len(window.values) == self.stable_window
                    and max(window.values) - min(window.values) <= self.stable_spread_c
                ):
                    break
            else:
                window = _Window()
            if self._clock() >= deadline:
                if not present_seen:
                    raise SensorError(
                        f"no one in front of the thermometer within {timeout:.1f} s "
                        f"(object {o:.1f} C, ambient {a:.1f} C)"
                    )
                raise SensorError(
                    f"no stable temperature within {timeout:.1f} s "
                    f"(last readings {', '.join(f'{v:.2f}' for v in window.values) or 'none'} C)"
                )
            if self._cancel.wait(self.interval_s) or self._stop.is_set():
                raise SensorError("the measurement was cancelled")
        mean = sum(window.values) / len(window.values)
        reading = Reading(
            value_c=round(mean + self.calibration_offset_c, 1),
            object_c=round(mean, 2),
            ambient_c=round(ambient_c, 2),
            offset_c=self.calibration_offset_c,
            raw_object=tuple(window.words),
            raw_ambient=ambient_word,
            tries=tries,
            elapsed_s=round(self._clock() - start, 3),
        )
        self.history.append(reading)
        del self.history[:-100]
        log.info("temperature %.1f C (raw %s)", reading.value_c, reading.raw_object)
        return reading

    def cancel(self) -> None:
        """Make a ``measure`` running on another thread give up at once (the resident
        walked away); the next ``measure`` starts afresh."""
        self._cancel.set()
