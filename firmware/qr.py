"""QR decoding: two engines behind one interface, and the decode worker thread.

Stable interface:

- :class:`QrEngine` -- ``name`` and ``decode(gray) -> list[str]``: every QR code's text in a
  grayscale ``uint8`` frame, ``[]`` when there is none. Engines never raise for a frame
  without a code.
- :class:`ZxingEngine` (zxing-cpp, the default: see tests/benchmarks/bench_decode.py) and
  :class:`PyzbarEngine` (ZBar, the original design's choice, kept working and tested).
- :func:`make_engine` -- by the name used in ``hardware.decoder.engine``.
- :func:`decode_image_file` -- decode a picture file (``station verify-code --image``).
- :class:`DecodeWorker` -- a thread that reads frames from a
  :class:`~firmware.camera.FrameSource`, decodes them, drops repeats of a payload seen within
  ``repeat_suppress_s`` (measured from the last time it was seen, so a code held in front of
  the camera is delivered once), and hands each new payload to a callback or a queue. It
  never blocks its caller. When the camera stops delivering frames it reports a fault once
  (``on_fault``) and keeps trying; when frames come back it reports the recovery
  (``on_recover``). Callbacks run on the worker's thread: a UI must hand the payload over to
  its own thread (Kivy: ``Clock.schedule_once``).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np
import zxingcpp
from numpy.typing import NDArray
from PIL import Image, UnidentifiedImageError

from firmware.camera import FrameSource
from firmware.errors import CameraError, DecoderError

log = logging.getLogger(__name__)

EngineName = Literal["zxing", "pyzbar"]
ENGINES: tuple[EngineName, ...] = ("zxing", "pyzbar")


class QrEngine(Protocol):
    name: str

    def decode(self, gray: NDArray[np.uint8]) -> list[str]: ...


def _check_frame(gray: NDArray[Any]) -> None:
    if gray.ndim != 2 or gray.dtype != np.uint8:
        raise DecoderError(
            f"a frame must be grayscale uint8 (height, width); got {gray.dtype} {gray.shape}"
        )


class ZxingEngine:
    """zxing-cpp, QR codes only, text as encoded (no escaping)."""

    name = "zxing"

    def __init__(self) -> None:
        self._zx: Any = zxingcpp
        self._formats = zxingcpp.BarcodeFormat.QRCode
        self._text_mode = zxingcpp.TextMode.Plain

    def decode(self, gray: NDArray[np.uint8]) -> list[str]:
        _check_frame(gray)
        found = self._zx.read_barcodes(
            np.ascontiguousarray(gray), formats=self._formats, text_mode=self._text_mode
        )
        return [str(b.text) for b in found if b.valid]


class PyzbarEngine:
    """ZBar through pyzbar (needs libzbar0), QR codes only."""

    name = "pyzbar"

    def __init__(self) -> None:
        try:
            from pyzbar import pyzbar  # noqa: PLC0415 (loads libzbar0 through ctypes)
        except ImportError as exc:
            raise DecoderError(f"pyzbar or libzbar0 is not installed: {exc}") from None
        self._decode: Any = pyzbar.decode
        self._symbols = [pyzbar.ZBarSymbol.QRCODE]

    def decode(self, gray: NDArray[np.uint8]) -> list[str]:
        _check_frame(gray)
        h, w = gray.shape
        found = self._decode((np.ascontiguousarray(gray).tobytes(), w, h), symbols=self._symbols)
        out: list[str] = []
        for sym in found:
            try:
                out.append(sym.data.decode("utf-8"))
            except UnicodeDecodeError:
                log.warning("pyzbar returned a code that is not UTF-8 text; ignored")
        return out


def make_engine(name: EngineName) -> QrEngine:
    """The engine called ``name`` in ``hardware.decoder.engine``."""
    if name == "zxing":
        return ZxingEngine()
    if name == "pyzbar":
        return PyzbarEngine()
    raise DecoderError(f"unknown QR engine {name!r} (known: {', '.join(ENGINES)})")


def decode_image_file(path: Path | str, engine: EngineName = "zxing") -> list[str]:
    """Every QR code's text in a picture file (PNG, JPEG, ...), or ``[]``."""
    try:
        with Image.open(path) as img:
            gray = np.asarray(img.convert("L"), dtype=np.uint8)
    except FileNotFoundError:
        raise DecoderError(f"{path}: no such file") from None
    except UnidentifiedImageError:
        raise DecoderError(f"{path}: not a picture this program can read") from None
    except OSError as exc:
        raise DecoderError(f"{path}: cannot read the picture: {exc}") from None
    return make_engine(engine).decode(gray)


PayloadSink = Callable[[str], None] | queue.Queue[str]


class DecodeWorker:
    """Frames in, new payloads out, on a thread of its own.

    ``start()`` starts the thread; ``stop(timeout)`` sets the stop event and joins, raising
    :class:`~firmware.errors.DecoderError` if the thread outlives the join.
    """

    def __init__(
        self,
        source: FrameSource,
        engine: QrEngine,
        sink: PayloadSink,
        *,
        repeat_suppress_s: float = 3.0,
        frame_timeout_s: float = 1.0,
        on_fault: Callable[[CameraError], None] | None = None,
        on_recover: Callable[[], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        name: str = "qr-decode",
    ) -> None:
        self.source = source
        self.engine = engine
        self._sink = sink
        self.repeat_suppress_s = repeat_suppress_s
        self.frame_timeout_s = frame_timeout_s
        self._on_fault = on_fault
        self._on_recover = on_recover
        self._clock = clock
        self._name = name
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._seen: dict[str, float] = {}
        self._seen_lock = threading.Lock()
        self.fault: CameraError | None = None
        self.frames = 0
        self.delivered = 0

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        if self.running:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 3.0) -> None:
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is None:
            return
        thread.join(timeout)
        if thread.is_alive():
            raise DecoderError(f"the decode thread did not stop within {timeout} s")

    def forget(self, payload: str | None = None) -> None:
        """Let ``payload`` (or every payload) through again at once, e.g. when the kiosk
        returns to its welcome screen and the same resident may try again."""
        with self._seen_lock:
            if payload is None:
                self._seen.clear()
            else:
                self._seen.pop(payload, None)

    def process(self, frame: NDArray[np.uint8]) -> list[str]:
        """Decode one frame and return (and deliver) the payloads that are new."""
        self.frames += 1
        now = self._clock()
        new: list[str] = []
        with self._seen_lock:
            for payload in self.engine.decode(frame):
                last = self._seen.get(payload)
                self._seen[payload] = now
                if last is not None and now - last < self.repeat_suppress_s:
                    continue
                if payload not in new:
                    new.append(payload)
            horizon = now - self.repeat_suppress_s
            for p in [p for p, t in self._seen.items() if t < horizon]:
                del self._seen[p]
        for payload in new:
            self._deliver(payload)
        return new

    def _deliver(self, payload: str) -> None:
        self.delivered += 1
        if isinstance(self._sink, queue.Queue):
            self._sink.put_nowait(payload)  # unbounded: never blocks, never drops
        else:
            self._sink(payload)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                frame = self.source.read(self.frame_timeout_s)
            except CameraError as exc:
                if self.fault is None:
                    self.fault = exc
                    log.error("camera fault: %s", exc)
                    if self._on_fault is not None:
                        self._on_fault(exc)
                # A camera that came loose may come back; try again, slowly.
                self._stop.wait(min(self.frame_timeout_s, 0.5))
                continue
            if self.fault is not None:
                log.warning("camera delivers frames again")
                self.fault = None
                if self._on_recover is not None:
                    self._on_recover()
            try:
                self.process(frame)
            except DecoderError as exc:
                log.error("frame skipped: %s", exc)
            except Exception:
                # A failing payload callback is the caller's bug; scanning must go on for
                # the next resident, so it is logged with its traceback and not re-raised.
                log.exception("delivering a payload failed")
