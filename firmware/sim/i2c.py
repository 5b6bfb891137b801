"""A fake I2C bus: an smbus2.SMBus stand-in that carries fake chips by address.

Like the Linux I2C driver, :class:`FakeSMBus` runs each ``i2c_rdwr`` as one combined
transaction (repeated start) and NACKs (``OSError`` errno 121, "Remote I/O error") a
transfer to an address where no device answers. The chips on it (``FakeMLX90614`` in
``firmware.sim.thermometer``, ``FakeDS3231`` in ``firmware.sim.rtc``) implement
:class:`FakeI2CDevice`.
"""

from __future__ import annotations

import errno
import threading
from typing import Any, Protocol

from smbus2 import i2c_msg

from firmware.errors import SimulationError
from firmware.thermometer import msg_bytes

I2C_M_RD = 0x0001


def nack() -> OSError:
    """What a transfer that no device acknowledges raises."""
    return OSError(errno.EREMOTEIO, "Remote I/O error")


class FakeI2CDevice(Protocol):
    def transfer(self, address: int, write: bytes, read_len: int) -> bytes:
        """One transaction: ``write`` then (after a repeated start) ``read_len`` bytes.
        Raise OSError(EREMOTEIO) to NACK."""
        ...


class FakeSMBus:
    """An smbus2.SMBus stand-in: devices by address, I2C_RDWR semantics, NACKs."""

    def __init__(self, devices: dict[int, FakeI2CDevice] | None = None) -> None:
        self.devices: dict[int, FakeI2CDevice] = dict(devices or {})
        self.transactions = 0
        self.closed = False
        self._lock = threading.Lock()

    def attach(self, address: int, device: FakeI2CDevice) -> None:
        self.devices[address] = device

    def i2c_rdwr(self, *i2c_msgs: Any) -> None:
        with self._lock:
            if self.closed:
                raise OSError(errno.EBADF, "Bad file descriptor")
            self.transactions += 1
            msgs = list(i2c_msgs)
            if not msgs:
                raise OSError(errno.EINVAL, "Invalid argument")
            address = int(msgs[0].addr)
            if any(int(m.addr) != address for m in msgs):
                raise SimulationError("the fake bus supports one device per transaction")
            device = self.devices.get(address)
            if device is None:
                raise nack()
            write = b""
            read_msg = None
            for m in msgs:
                if int(m.flags) & I2C_M_RD:
                    if read_msg is not None:
                        raise SimulationError("one read per transaction on the fake bus")
                    read_msg = m
                else:
                    if read_msg is not None:
                        raise SimulationError("a write after a read in one transaction")
                    write += bytes(m.buf[i][0] for i in range(int(m.len)))
            n = int(read_msg.len) if read_msg is not None else 0
            data = device.transfer(address, write, n)
            if read_msg is not None:
                for i, b in enumerate(data[:n]):
                    read_msg.buf[i] = bytes([b])

    def read_i2c_block_data(self, i2c_addr: int, register: int, length: int) -> list[int]:
        w, r = i2c_msg.write(i2c_addr, [register]), i2c_msg.read(i2c_addr, length)
        self.i2c_rdwr(w, r)
        return msg_bytes(r)

    def close(self) -> None:
        self.closed = True
