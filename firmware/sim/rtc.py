"""A simulated DS3231 that speaks its registers, for drills, the self-test and tests.

:class:`FakeDS3231` sits on :class:`~firmware.sim.i2c.FakeSMBus` as the chip sits on the Pi's
bus, and the real :class:`~firmware.rtc.DS3231` driver talks to it. Like the chip, it:

- keeps a register pointer: a write's first byte sets it, further bytes are written from
  there; a read (after a repeated start, or on its own) goes on from the pointer; the
  pointer advances with every byte and wraps from 0x12 to 0x00;
- freezes its time at the start of each transaction, so a multi-byte read never mixes two
  seconds, and counts whole seconds from when the seconds register was last written;
- answers in the 12-hour format after the hours register was written with bit 6 set;
- sets the oscillator-stop flag when first powered (``running=False``, the default, as a
  chip fresh from the reel) and on :meth:`stop`; the flag (and the alarm flags) can only be
  cleared by writing 0, never set by the bus; the temperature registers are read-only.

Faults for tests: :meth:`inject` ``("nack")`` NACKs the next transactions, ``("garbage")``
makes the next reads return 0xFF bytes, as a bus with a floating data line does.
"""

from __future__ import annotations

import errno
import threading
import time
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Literal

from firmware.errors import ClockError, SimulationError
from firmware.rtc import (
    HOUR_12,
    OSF,
    PM,
    REG_HOURS,
    REG_SECONDS,
    REG_STATUS,
    REG_TEMP_LSB,
    REG_TEMP_MSB,
    REG_YEAR,
    REGISTER_COUNT,
    bcd_encode,
    decode_time,
    encode_time,
)

Fault = Literal["nack", "garbage"]
FAULTS: tuple[Fault, ...] = ("nack", "garbage")
POWER_ON = datetime(2000, 1, 1, tzinfo=UTC)  # what the chip counts from after a cold start
_WRITABLE_STATUS = 0x08  # EN32kHz; OSF, A2F and A1F are only cleared, BSY is read-only
_CLEARABLE_STATUS = OSF | 0x03
_LAST = datetime(2199, 12, 31, 23, 59, 59, tzinfo=UTC)


class FakeDS3231:
    """The chip's registers, its running clock, its oscillator-stop flag and its faults."""

    def __init__(
        self,
        start: datetime | None = None,
        *,
        running: bool = False,
        temperature_c: float = 25.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self.registers = bytearray(REGISTER_COUNT)
        self.registers[0x0E] = 0x1C  # control after power-on: INTCN, RS2, RS1
        self.registers[REG_STATUS] = 0x08 | (0 if running else OSF)  # EN32kHz (+ OSF)
        self.pointer = 0
        self.twelve_hour = False
        self._set_time(start or POWER_ON)
        self.temperature_c = temperature_c
        self._faults: deque[Fault] = deque()
        self.transactions = 0

    # -- the chip's clock ----------------------------------------------------------------

    def _set_time(self, moment: datetime) -> None:
        self._base: datetime | None = moment.astimezone(UTC).replace(microsecond=0)
        self._base_at = self._monotonic()
        self._frozen: bytes | None = None  # registers that hold no time, as written

    def current(self) -> datetime | None:
        """The time the chip counts now (None while its registers hold no time)."""
        if self._base is None:
            return None
        elapsed = int(self._monotonic() - self._base_at)
        return self._base + timedelta(seconds=elapsed)

    def stop(self, at: datetime = POWER_ON) -> None:
        """The oscillator stopped (coin cell flat while the Pi was off): OSF is set and the
        chip starts again from ``at``."""
        with self._lock:
            self.registers[REG_STATUS] |= OSF
            self._set_time(at)

    def inject(self, fault: Fault, times: int = 1) -> None:
        if fault not in FAULTS:
            raise SimulationError(f"unknown fault {fault!r} (known: {', '.join(FAULTS)})")
        with self._lock:
            self._faults.extend([fault] * times)

    @property
    def oscillator_stopped(self) -> bool:
        return bool(self.registers[REG_STATUS] & OSF)

    # -- the bus -------------------------------------------------------------------------

    def _snapshot(self) -> bytearray:
        """The register file as the chip's buffer holds it at a START."""
        regs = bytearray(self.registers)
        now = self.current()
        if now is None:
            assert self._frozen is not None
            regs[: len(self._frozen)] = self._frozen
        else:
            regs[REG_SECONDS : REG_YEAR + 1] = encode_time(min(now, _LAST))
            if self.twelve_hour:
                regs[REG_HOURS] = _twelve_hour(now.hour)
        whole = int(self.temperature_c // 1)
        regs[REG_TEMP_MSB] = whole & 0xFF
        regs[REG_TEMP_LSB] = int((self.temperature_c - whole) * 4) << 6
        return regs

    def transfer(self, address: int, write: bytes, read_len: int) -> bytes:
        with self._lock:
            self.transactions += 1
            fault = self._faults.popleft() if self._faults else None
            if fault == "nack":
                raise OSError(errno.EREMOTEIO, "Remote I/O error")
            regs = self._snapshot()
            if write:
                self.pointer = write[0] % REGISTER_COUNT
                if len(write) > 1:
                    self._write(regs, write[1:])
            out = bytearray()
            for _ in range(read_len):
                out.append(regs[self.pointer])
                self.pointer = (self.pointer + 1) % REGISTER_COUNT
            if fault == "garbage" and read_len:
                return bytes([0xFF] * read_len)
            return bytes(out)

    def _write(self, regs: bytearray, data: bytes) -> None:
        touched_time = False
        for byte in data:
            reg = self.pointer
            if reg <= REG_YEAR:
                regs[reg] = byte
                touched_time = True
                if reg == REG_HOURS:
                    self.twelve_hour = bool(byte & HOUR_12)
            elif reg == REG_STATUS:
                old = self.registers[REG_STATUS]
                kept = old & ~_CLEARABLE_STATUS | old & byte & _CLEARABLE_STATUS
                self.registers[reg] = kept & ~_WRITABLE_STATUS | byte & _WRITABLE_STATUS
            elif reg not in (REG_TEMP_MSB, REG_TEMP_LSB):
                self.registers[reg] = byte
            self.pointer = (reg + 1) % REGISTER_COUNT
        if touched_time:
            timekeeping = bytes(regs[REG_SECONDS : REG_YEAR + 1])
            try:
                self._set_time(decode_time(timekeeping))
            except ClockError:  # the chip stores whatever it is sent, and shows it back
                self._base = None
                self._frozen = timekeeping


def _twelve_hour(hour: int) -> int:
    twelve = hour % 12 or 12
    return HOUR_12 | (PM if hour >= 12 else 0) | bcd_encode(twelve)
