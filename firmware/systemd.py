"""Telling systemd how a service is doing (sd_notify), without libsystemd.

The kiosk's unit is ``Type=notify`` with ``WatchdogSec``: the kiosk says ``READY=1`` once its
window is up and ``WATCHDOG=1`` from its UI loop, so a hung screen is restarted by systemd.
Outside systemd (``NOTIFY_SOCKET`` unset: a drill, a test, a developer's terminal) every
call is a no-op.
"""

from __future__ import annotations

import logging
import os
import socket

log = logging.getLogger(__name__)


class Notifier:
    def __init__(self, address: str | None = None) -> None:
        self._address = address if address is not None else os.environ.get("NOTIFY_SOCKET")

    @property
    def enabled(self) -> bool:
        return bool(self._address)

    def watchdog_interval_s(self) -> float | None:
        """Half the unit's WatchdogSec, the interval systemd recommends; None when off."""
        usec = os.environ.get("WATCHDOG_USEC")
        pid = os.environ.get("WATCHDOG_PID")
        if not usec or (pid and pid != str(os.getpid())):
            return None
        try:
            return int(usec) / 2_000_000
        except ValueError:
            return None

    def notify(self, state: str) -> bool:
        """Send one state line; False when not under systemd or the socket is gone."""
        if not self._address:
            return False
        addr = self._address
        if addr.startswith("@"):  # abstract socket namespace
            addr = "\0" + addr[1:]
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
                s.connect(addr)
                s.sendall(state.encode())
        except OSError as exc:
            log.warning("cannot notify systemd (%s): %s", state.split("=", maxsplit=1)[0], exc)
            return False
        return True

    def ready(self, status: str = "") -> bool:
        return self.notify("READY=1" + (f"\nSTATUS={status}" if status else ""))

    def watchdog(self) -> bool:
        return self.notify("WATCHDOG=1")

    def stopping(self) -> bool:
        return self.notify("STOPPING=1")
