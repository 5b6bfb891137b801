"""Barcode scanners: USB scan guns that type like a keyboard.

Stable interface:

- :class:`BarcodeScanner` -- ``start(on_barcode)`` then whole barcodes arrive, one call
  each, as text; ``stop(timeout)``. Half barcodes are never delivered.
- :class:`KeyboardLineAssembler` -- pure: key presses with timestamps in, whole barcodes out.
  A barcode ends with Enter. Input broken off (no key for ``key_timeout_s``, so no Enter
  came), shorter than ``min_length`` or longer than ``max_length`` is a half barcode: dropped
  with a warning and counted in ``dropped``.
- :class:`EvdevScanner` -- reads the scan gun's input device with evdev (imported only
  inside), grabbing it so that scans never reach the kiosk's own keyboard input.
- :func:`keys_for` -- the key presses that type a text, as a scan gun does.

The simulated scan gun is :class:`firmware.sim.scanner.SimScanner`. ``on_barcode`` runs on
the scanner's thread (EvdevScanner) or the caller's (SimScanner): a UI hands the text over
to its own thread.
"""

from __future__ import annotations

import logging
import select
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from firmware.errors import ScannerError

log = logging.getLogger(__name__)

OnBarcode = Callable[[str], None]

_SHIFT = frozenset({"KEY_LEFTSHIFT", "KEY_RIGHTSHIFT"})
_ENTER = frozenset({"KEY_ENTER", "KEY_KPENTER"})
# key -> (plain, shifted), US layout, which is what scan guns emulate by default.
KEYMAP: dict[str, tuple[str, str]] = {
    **{f"KEY_{c}": (c.lower(), c) for c in "ABCDEFGHIJKLMNOPQRSTUVWXYZ"},
    **{f"KEY_{d}": (d, s) for d, s in zip("1234567890", "!@#$%^&*()", strict=True)},
    **{f"KEY_KP{d}": (d, d) for d in "0123456789"},
    "KEY_MINUS": ("-", "_"),
    "KEY_EQUAL": ("=", "+"),
    "KEY_LEFTBRACE": ("[", "{"),
    "KEY_RIGHTBRACE": ("]", "}"),
    "KEY_SEMICOLON": (";", ":"),
    "KEY_APOSTROPHE": ("'", '"'),
    "KEY_GRAVE": ("`", "~"),
    "KEY_BACKSLASH": ("\\", "|"),
    "KEY_COMMA": (",", "<"),
    "KEY_DOT": (".", ">"),
    "KEY_SLASH": ("/", "?"),
    "KEY_SPACE": (" ", " "),
    "KEY_KPMINUS": ("-", "-"),
    "KEY_KPPLUS": ("+", "+"),
    "KEY_KPDOT": (".", "."),
    "KEY_KPSLASH": ("/", "/"),
    "KEY_KPASTERISK": ("*", "*"),
}
# char -> (key, shift): how a scan gun types a character (SimScanner uses it).
CHARMAP: dict[str, tuple[str, bool]] = {}
for _key, (_plain, _shifted) in KEYMAP.items():
    if not _key.startswith("KEY_KP"):
        CHARMAP.setdefault(_plain, (_key, False))
        CHARMAP.setdefault(_shifted, (_key, True))


class BarcodeScanner(Protocol):
    def start(self, on_barcode: OnBarcode) -> None: ...

    def stop(self, timeout: float = 2.0) -> None: ...


class KeyboardLineAssembler:
    """Key events to barcodes. ``press``/``release`` take evdev key names (``"KEY_T"``)."""

    def __init__(
        self, min_length: int = 6, max_length: int = 128, key_timeout_s: float = 0.5
    ) -> None:
        self.min_length = min_length
        self.max_length = max_length
        self.key_timeout_s = key_timeout_s
        self._buf: list[str] = []
        self._last = 0.0
        self._shift: set[str] = set()
        self.dropped: list[str] = []

    @property
    def pending(self) -> str:
        return "".join(self._buf)

    def _drop(self, why: str) -> None:
        text = "".join(self._buf)
        self._buf.clear()
        self.dropped.append(text)
        log.warning("half barcode %r dropped: %s", text, why)

    def expire(self, now: float) -> None:
        """Drop input broken off before ``now - key_timeout_s``."""
        if self._buf and now - self._last > self.key_timeout_s:
            self._drop(f"no Enter within {self.key_timeout_s} s of the last key")

    def press(self, key: str, now: float) -> str | None:
        """A key went down; returns a whole barcode when this was its Enter."""
        self.expire(now)
        if key in _SHIFT:
            self._shift.add(key)
            return None
        if key in _ENTER:
            if not self._buf:
                return None
            text = "".join(self._buf)
            if len(text) < self.min_length:
                self._drop(f"shorter than {self.min_length} characters")
                return None
            self._buf.clear()
            return text
        chars = KEYMAP.get(key)
        if chars is None:
            if self._buf:
                self._drop(f"unexpected key {key}")
            return None
        self._buf.append(chars[1] if self._shift else chars[0])
        self._last = now
        if len(self._buf) > self.max_length:
            self._drop(f"longer than {self.max_length} characters without Enter")
        return None

    def release(self, key: str) -> None:
        self._shift.discard(key)


def keys_for(text: str) -> list[tuple[str, bool]]:
    """The key presses that type ``text`` (key name, shift), raising ScannerError for a
    character a scan gun cannot type."""
    out: list[tuple[str, bool]] = []
    for ch in text:
        if ch not in CHARMAP:
            raise ScannerError(f"a scan gun cannot type {ch!r}")
        out.append(CHARMAP[ch])
    return out


def find_scanner_device(
    by_id: Path = Path("/dev/input/by-id"), named: Path = Path("/dev/input/barcode-scanner")
) -> Path:
    """The input device of a scan gun, for ``hardware.scanner.device = "auto"``: the name
    the station's udev rule gives it, else a keyboard in ``by_id`` named like a scanner."""
    if named.exists():
        return named
    words = ("barcode", "scanner", "scan", "honeywell", "zebra", "symbol", "datalogic")
    try:
        candidates = sorted(p for p in by_id.iterdir() if p.name.endswith("-event-kbd"))
    except OSError:
        candidates = []
    for p in candidates:
        if any(w in p.name.lower() for w in words):
            return p
    raise ScannerError(
        f"no barcode scanner found in {by_id} (is it plugged in?); "
        "set hardware.scanner.device to its /dev/input/by-id/...-event-kbd path"
    )


class EvdevScanner:
    """A keyboard-wedge scan gun read through evdev, on a thread of its own."""

    def __init__(
        self,
        device: str = "auto",
        min_length: int = 6,
        key_timeout_s: float = 0.5,
        on_fault: Callable[[ScannerError], None] | None = None,
    ) -> None:
        try:
            import evdev  # noqa: PLC0415 (Pi only)
        except ImportError:
            raise ScannerError(
                "evdev is not installed (pip install 'sampling-station[pi]')"
            ) from None
        self._evdev: Any = evdev
        self.path = find_scanner_device() if device == "auto" else Path(device)
        self.assembler = KeyboardLineAssembler(min_length, key_timeout_s=key_timeout_s)
        self._on_fault = on_fault
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._dev: Any = self._open()

    def _open(self) -> Any:
        try:
            dev = self._evdev.InputDevice(str(self.path))
            dev.grab()
        except OSError as exc:
            raise ScannerError(
                f"cannot open the scanner {self.path}: {exc.strerror or exc} (is the user "
                "in the 'input' group? see firmware/boot/99-sampling-station.rules)"
            ) from None
        return dev

    def start(self, on_barcode: OnBarcode) -> None:
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._run, args=(on_barcode,), name="scanner", daemon=True
        )
        self._thread.start()

    def stop(self, timeout: float = 2.0) -> None:
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout)
            if thread.is_alive():
                raise ScannerError(f"the scanner thread did not stop within {timeout} s")
        if self._dev is not None:
            try:
                self._dev.ungrab()
            except OSError:
                log.debug("ungrab failed; the scanner is gone")
            self._dev.close()
            self._dev = None

    def _run(self, on_barcode: OnBarcode) -> None:
        ecodes = self._evdev.ecodes
        while not self._stop.is_set():
            if self._dev is None:
                try:
                    self._dev = self._open()
                    log.warning("scanner %s is back", self.path)
                except ScannerError:
                    self._stop.wait(1.0)
                    continue
            try:
                ready, _, _ = select.select([self._dev.fd], [], [], 0.1)
                self.assembler.expire(time.monotonic())
                if not ready:
                    continue
                for event in self._dev.read():
                    if event.type != ecodes.EV_KEY:
                        continue
                    name = ecodes.KEY.get(event.code)
                    if isinstance(name, list):
                        name = name[0]
                    if not isinstance(name, str):
                        continue
                    if event.value == 1:  # key down (2 is autorepeat, 0 key up)
                        text = self.assembler.press(name, time.monotonic())
                        if text is not None:
                            on_barcode(text)
                    elif event.value == 0:
                        self.assembler.release(name)
            except OSError as exc:
                err = ScannerError(f"the scanner {self.path} stopped: {exc.strerror or exc}")
                log.error("%s", err)
                if self._on_fault is not None:
                    self._on_fault(err)
                try:
                    self._dev.close()
                except OSError:
                    log.debug("closing a vanished scanner failed")
                self._dev = None
