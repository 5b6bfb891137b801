"""The DS3231 real-time clock on I2C: driver, BCD, and whether its time can be believed.

A Raspberry Pi has no clock that runs while it is off; a DS3231 on the I2C bus with a coin
cell does. Its timekeeping registers hold binary-coded decimal (two decimal digits per byte,
tens in the high nibble)::

    0x00 seconds  0-59           0x04 date   1-31
    0x01 minutes  0-59           0x05 month  1-12, bit 7 the century bit
    0x02 hours    0-23, or 1-12 with bit 6 (12-hour mode) and bit 5 (PM)
    0x03 day of the week 1-7     0x06 year   00-99
    0x0E control: bit 7 EOSC (set: the oscillator stops when on battery)
    0x0F status:  bit 7 OSF, the oscillator-stop flag
    0x11, 0x12 temperature: a signed whole degree, then quarters in bits 7-6

The station keeps the clock in UTC; the year is 2000 + the year register, plus 100 when the
century bit is set (the chip sets it when the year rolls from 99 to 00), as Linux's driver
reads it. OSF is set when the chip first gets power and whenever its oscillator stopped
(a flat or missing coin cell): the time it holds then is not to be believed until someone
sets it (:meth:`DS3231.set`, which clears OSF).

Stable interface:

- :class:`DS3231` ``(bus, address=0x68)`` -- ``now()``, ``state()``, ``set(moment)`` over an
  smbus2-like bus (anything with ``i2c_rdwr``). Every read is one combined transaction
  (register pointer, repeated start, read), in which the chip reads from a buffer it froze at
  the start, so the seven time registers always belong to one second. It uses only
  I2C_RDWR, which also works while Linux's ``rtc-ds1307`` driver is bound to the chip (the
  ``i2c-rtc,ds3231`` overlay): the kernel refuses only I2C_SLAVE to a bound address.
- :func:`bcd_encode`, :func:`bcd_decode`, :func:`encode_time`, :func:`decode_time` -- the
  register formats, pure.
- :class:`RtcState` -- what a read found: the time (or why there is none), OSF, the
  temperature, and ``valid``.

A register that holds what the chip never holds (a nibble above 9, the 31st of February, a
bit the chip keeps at zero) is garbage from the bus or a different chip at the address:
:class:`~firmware.errors.ClockError` names the register and its value.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from smbus2 import i2c_msg

from firmware.errors import ClockError
from firmware.thermometer import I2CBus, msg_bytes

log = logging.getLogger(__name__)

DEFAULT_ADDRESS = 0x68
REG_SECONDS = 0x00
REG_MINUTES = 0x01
REG_HOURS = 0x02
REG_WEEKDAY = 0x03
REG_DATE = 0x04
REG_MONTH = 0x05
REG_YEAR = 0x06
REG_CONTROL = 0x0E
REG_STATUS = 0x0F
REG_AGING = 0x10
REG_TEMP_MSB = 0x11
REG_TEMP_LSB = 0x12
REGISTER_COUNT = 0x13  # the register pointer wraps from 0x12 to 0x00

CENTURY = 0x80  # month register
HOUR_12 = 0x40  # hours register: 12-hour mode
PM = 0x20  # hours register in 12-hour mode
EOSC = 0x80  # control register: oscillator off on battery
OSF = 0x80  # status register: the oscillator stopped
EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
LATEST = datetime(2199, 12, 31, 23, 59, 59, tzinfo=UTC)
# No station ran before this: a clock showing an earlier time lost it.
NOT_BEFORE = datetime(2025, 1, 1, tzinfo=UTC)
_NAMES = {
    REG_SECONDS: "seconds",
    REG_MINUTES: "minutes",
    REG_HOURS: "hours",
    REG_WEEKDAY: "day of the week",
    REG_DATE: "date",
    REG_MONTH: "month",
    REG_YEAR: "year",
}


def bcd_encode(value: int) -> int:
    """0-99 as one BCD byte: 59 -> 0x59."""
    if not 0 <= value <= 99:
        raise ValueError(f"{value} does not fit in one BCD byte (0-99)")
    return (value // 10) << 4 | value % 10


def bcd_decode(byte: int) -> int:
    """One BCD byte as a number: 0x59 -> 59; ValueError for a nibble above 9."""
    if not 0 <= byte <= 0xFF:
        raise ValueError(f"{byte} is not a byte")
    tens, units = byte >> 4, byte & 0x0F
    if tens > 9 or units > 9:
        raise ValueError(f"0x{byte:02X} is not binary-coded decimal")
    return tens * 10 + units


def encode_time(moment: datetime) -> bytes:
    """The seven timekeeping registers (0x00-0x06) for ``moment``, 24-hour mode, UTC."""
    if moment.tzinfo is None:
        raise ValueError("a time without a time zone cannot be set on the clock")
    t = moment.astimezone(UTC)
    if not EARLIEST <= t <= LATEST.replace(microsecond=999_999):
        raise ValueError(f"{t.isoformat()} is outside what the DS3231 holds (2000-2199)")
    century = CENTURY if t.year >= 2100 else 0
    return bytes(
        [
            bcd_encode(t.second),
            bcd_encode(t.minute),
            bcd_encode(t.hour),
            t.isoweekday(),  # 1 = Monday ... 7 = Sunday
            bcd_encode(t.day),
            century | bcd_encode(t.month),
            bcd_encode(t.year % 100),
        ]
    )


def _field(byte: int, reg: int, mask: int, low: int, high: int) -> int:
    """The BCD number in ``byte & mask`` of register ``reg``, checked."""
    name = _NAMES[reg]
    if byte & ~mask & 0xFF:
        raise ClockError(
            f"register 0x{reg:02X} ({name}) holds 0x{byte:02X}: a bit the chip keeps at 0 is set"
        )
    try:
        value = bcd_decode(byte & mask)
    except ValueError:
        raise ClockError(f"register 0x{reg:02X} ({name}) holds 0x{byte:02X}, not BCD") from None
    if not low <= value <= high:
        raise ClockError(f"register 0x{reg:02X} ({name}) holds {value}, outside {low}-{high}")
    return value


def _hour(byte: int) -> int:
    if not byte & HOUR_12:
        return _field(byte, REG_HOURS, 0x3F, 0, 23)
    twelve = _field(byte & ~(HOUR_12 | PM) & 0xFF, REG_HOURS, 0x1F, 1, 12)
    return twelve % 12 + (12 if byte & PM else 0)


def decode_time(regs: bytes) -> datetime:
    """The time in the seven timekeeping registers (UTC); ClockError for garbage."""
    if len(regs) < 7:
        raise ClockError(f"{len(regs)} timekeeping registers read, 7 needed")
    second = _field(regs[REG_SECONDS], REG_SECONDS, 0x7F, 0, 59)
    minute = _field(regs[REG_MINUTES], REG_MINUTES, 0x7F, 0, 59)
    hour = _hour(regs[REG_HOURS])
    _field(regs[REG_WEEKDAY], REG_WEEKDAY, 0x07, 1, 7)
    day = _field(regs[REG_DATE], REG_DATE, 0x3F, 1, 31)
    century = regs[REG_MONTH] & CENTURY
    month = _field(regs[REG_MONTH] & ~CENTURY, REG_MONTH, 0x1F, 1, 12)
    year = 2000 + (100 if century else 0) + _field(regs[REG_YEAR], REG_YEAR, 0xFF, 0, 99)
    try:
        return datetime(year, month, day, hour, minute, second, tzinfo=UTC)
    except ValueError:
        raise ClockError(f"the registers hold {year}-{month:02d}-{day:02d}, no such day") from None


def decode_temperature(msb: int, lsb: int) -> float:
    """The chip's temperature sensor: a signed whole degree, quarters in bits 7-6."""
    whole = msb - 256 if msb & 0x80 else msb
    return whole + (lsb >> 6) * 0.25


@dataclass(frozen=True)
class RtcState:
    """One reading of the whole register file."""

    time: datetime | None  # None when the registers hold no time (``problem`` says why)
    oscillator_stopped: bool  # OSF: the clock lost its time at some point
    temperature_c: float
    problem: str | None = None

    @property
    def valid(self) -> bool:
        """The clock's time can be believed: it ran all along and shows a possible time."""
        return self.time is not None and not self.oscillator_stopped and self.time >= NOT_BEFORE

    def describe(self) -> str:
        """One line for a technician."""
        if self.time is None:
            return f"registers hold no time ({self.problem})"
        shown = self.time.strftime("%Y-%m-%d %H:%M:%S UTC")
        if self.oscillator_stopped:
            return (
                f"oscillator stopped (OSF set): shows {shown}, not to be believed; check the "
                "coin cell, then set the clock from a synchronised time"
            )
        if self.time < NOT_BEFORE:
            return f"shows {shown}, before any station ran: set the clock"
        return f"valid: {shown}, chip at {self.temperature_c:.2f} C"


class DS3231:
    """Register access to one DS3231 at ``address`` on ``bus``."""

    def __init__(
        self,
        bus: I2CBus,
        address: int = DEFAULT_ADDRESS,
        *,
        retries: int = 2,
        retry_delay_s: float = 0.005,
    ) -> None:
        self.bus = bus
        self.address = address
        self.retries = retries
        self.retry_delay_s = retry_delay_s

    def _transfer(self, what: str, *msgs: object) -> None:
        problems: list[str] = []
        for attempt in range(1, self.retries + 2):
            try:
                self.bus.i2c_rdwr(*msgs)
                return
            except OSError as exc:
                problems.append(exc.strerror or str(exc))
            if attempt <= self.retries:
                time.sleep(self.retry_delay_s * attempt)
        raise ClockError(
            f"real-time clock at I2C address 0x{self.address:02X}: {what} failed "
            f"{len(problems)} times ({problems[-1]}); check that a DS3231 is fitted and its "
            "wiring (SDA, SCL, 3.3 V, GND), and hardware.rtc.address"
        )

    def read_registers(self, start: int, count: int) -> bytes:
        """``count`` registers from ``start`` in one combined transaction."""
        if not 0 <= start < REGISTER_COUNT or not 1 <= count <= REGISTER_COUNT:
            raise ValueError(f"no {count} registers from 0x{start:02X} on a DS3231")
        write = i2c_msg.write(self.address, [start])
        read = i2c_msg.read(self.address, count)
        self._transfer(f"reading {count} registers from 0x{start:02X}", write, read)
        return bytes(msg_bytes(read))

    def write_registers(self, start: int, data: bytes) -> None:
        if not 0 <= start < REGISTER_COUNT or start + len(data) > REGISTER_COUNT:
            raise ValueError(f"no {len(data)} registers from 0x{start:02X} on a DS3231")
        msg = i2c_msg.write(self.address, [start, *data])
        self._transfer(f"writing {len(data)} registers at 0x{start:02X}", msg)

    def now(self) -> datetime:
        """The clock's time (UTC), whether or not its oscillator ever stopped."""
        return decode_time(self.read_registers(REG_SECONDS, 7))

    def state(self) -> RtcState:
        """Every register in one transaction: the time, OSF and the temperature."""
        regs = self.read_registers(REG_SECONDS, REGISTER_COUNT)
        stopped = bool(regs[REG_STATUS] & OSF)
        temperature = decode_temperature(regs[REG_TEMP_MSB], regs[REG_TEMP_LSB])
        try:
            moment: datetime | None = decode_time(regs)
            problem = None
        except ClockError as exc:
            moment, problem = None, str(exc)
        return RtcState(moment, stopped, temperature, problem)

    def set(self, moment: datetime) -> None:
        """Set the clock to ``moment`` (whole seconds) and clear the oscillator-stop flag,
        so the time counts as believable again; the oscillator is kept running on battery."""
        self.write_registers(REG_SECONDS, encode_time(moment))
        control, status = self.read_registers(REG_CONTROL, 2)
        if control & EOSC:
            self.write_registers(REG_CONTROL, bytes([control & ~EOSC & 0xFF]))
        self.write_registers(REG_STATUS, bytes([status & ~OSF & 0xFF]))
        log.info("real-time clock set to %s", moment.astimezone(UTC).isoformat())
