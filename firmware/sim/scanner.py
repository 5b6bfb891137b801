"""The simulated scan gun: ``feed(text)`` types ``text`` and Enter through the same
:class:`~firmware.scanner.KeyboardLineAssembler` as a real one; ``feed(text, enter=False)``
leaves a half barcode behind."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from firmware.scanner import KeyboardLineAssembler, OnBarcode, keys_for


class SimScanner:
    """A scan gun for drills and tests: ``feed(text)`` scans ``text``."""

    def __init__(
        self,
        min_length: int = 6,
        key_timeout_s: float = 0.5,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.assembler = KeyboardLineAssembler(min_length, key_timeout_s=key_timeout_s)
        self._clock = clock
        self._on: OnBarcode | None = None
        self._lock = threading.Lock()
        self.delivered: list[str] = []

    def start(self, on_barcode: OnBarcode) -> None:
        self._on = on_barcode

    def stop(self, timeout: float = 2.0) -> None:
        self._on = None

    def feed(self, text: str, *, enter: bool = True) -> str | None:
        """Type ``text`` (and Enter); returns the barcode delivered, if any."""
        keys = keys_for(text)
        got: str | None = None
        with self._lock:
            asm = self.assembler
            for key, shift in keys:
                now = self._clock()
                if shift:
                    asm.press("KEY_LEFTSHIFT", now)
                asm.press(key, now)
                if shift:
                    asm.release("KEY_LEFTSHIFT")
            if enter:
                got = asm.press("KEY_ENTER", self._clock())
        if got is not None:
            self.delivered.append(got)
            if self._on is not None:
                self._on(got)
        return got
