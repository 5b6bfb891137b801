"""Camera sources: grayscale frames for the QR decoder.

Stable interface (the kiosk and the drills code against it):

- :class:`FrameSource` -- ``read(timeout) -> np.ndarray`` returns one grayscale ``uint8``
  frame of shape ``(height, width)`` or raises :class:`~firmware.errors.CameraError` when no
  frame arrives within ``timeout`` seconds or the camera failed; ``close()`` releases it.
- :class:`Picamera2Source` -- the Raspberry Pi camera. It runs two streams: a small YUV420
  ``lores`` stream whose luminance plane is what we scan (no colour conversion needed) and a
  separate ``main`` stream for a preview, so the preview size never slows the decoder.
  picamera2 comes from apt (python3-picamera2) and is imported only inside this adapter.
  ``import_module`` (default :func:`importlib.import_module`) is how the adapter loads it,
  so tests can hand it a fake library that behaves like picamera2.
- :class:`OpenCVSource` -- a USB webcam through OpenCV. OpenCV is optional (not a dependency
  of the project); without it, opening this source raises a CameraError saying so. It loads
  ``cv2`` through ``import_module`` as well.
- :class:`SimCamera` -- renders QR text with segno into frames with the distortions of a
  drill (``rotate`` degrees, ``blur`` sigma in pixels, ``scale`` against the default size,
  ``noise`` standard deviation in grey levels, and ``contrast`` 0-1), deterministically from a
  seed. At scale 1 the code (with its quiet zone) spans 80% of the frame's shorter side; a
  code rotated or scaled beyond the frame is cropped, as one held too close would be. Frames
  come at the configured rate, so the real decoder runs on real pixels.
  ``show(text, distort)``, ``clear()``, ``stall()`` / ``resume()`` (stop delivering frames,
  like a camera whose cable came loose).
- :func:`render_frame` -- the renderer itself, pure; the decode benchmark uses it.
"""

from __future__ import annotations

import importlib
import logging
import math
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import numpy as np
import segno
from numpy.typing import NDArray
from PIL import Image, ImageFilter

from firmware.errors import CameraError, SimulationError

log = logging.getLogger(__name__)

Frame = NDArray[np.uint8]
# How an adapter loads its device library (picamera2, cv2): importlib.import_module, or a
# test's loader that returns a fake library.
ImportModule = Callable[[str], Any]

DISTORTIONS = ("rotate", "blur", "scale", "noise", "contrast")
# The code's side at scale 1.0, as a fraction of the frame's shorter side: about how large a
# phone screen held at arm's length appears to the kiosk camera.
DEFAULT_CODE_FRACTION = 0.8
_PAPER = 235
_INK = 25
_BACKGROUND = 150


class FrameSource(Protocol):
    """Where frames come from. ``read`` blocks for at most ``timeout`` seconds."""

    def read(self, timeout: float) -> Frame: ...

    def close(self) -> None: ...


def check_distortion(distort: Mapping[str, Any] | None) -> dict[str, float]:
    """Validate a drill's ``distort`` table; raise SimulationError naming a wrong key."""
    out: dict[str, float] = {}
    for key, value in (distort or {}).items():
        if key not in DISTORTIONS:
            raise SimulationError(f"distort: unknown key {key!r} (known: {', '.join(DISTORTIONS)})")
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise SimulationError(f"distort.{key}: must be a number (got {value!r})")
        v = float(value)
        if not math.isfinite(v):
            raise SimulationError(f"distort.{key}: must be finite (got {value!r})")
        if key == "scale" and not 0.05 <= v <= 3.0:
            raise SimulationError(f"distort.scale: must be 0.05-3.0 (got {v})")
        if key in ("blur", "noise") and not 0 <= v <= 100:
            raise SimulationError(f"distort.{key}: must be 0-100 (got {v})")
        if key == "contrast" and not 0.05 <= v <= 1.0:
            raise SimulationError(f"distort.contrast: must be 0.05-1.0 (got {v})")
        out[key] = v
    return out


def render_frame(
    text: str | None,
    width: int = 640,
    height: int = 480,
    distort: Mapping[str, Any] | None = None,
    seed: int = 0,
) -> Frame:
    """One grayscale frame: ``text`` as a QR code on a sheet of paper, distorted; or, with
    ``text`` None, an empty scene (background with some texture, as a tent looks)."""
    d = check_distortion(distort)
    rng = np.random.default_rng(seed)
    # A little low-frequency texture, so an empty frame is not a trivially flat image.
    coarse = rng.normal(0.0, 12.0, size=(height // 40 + 2, width // 40 + 2)).astype(np.float32)
    texture = np.asarray(
        Image.fromarray(coarse).resize((width, height), Image.Resampling.BILINEAR),
        dtype=np.float32,
    )
    canvas = np.full((height, width), float(_BACKGROUND), dtype=np.float32) + texture

    if text is not None:
        qr = segno.make_qr(text, error="m")
        modules = np.array([list(row) for row in qr.matrix], dtype=np.uint8)
        modules = np.pad(modules, 4)  # the quiet zone: white paper around the code
        contrast = d.get("contrast", 1.0)
        mid = (_PAPER + _INK) / 2
        paper = mid + (_PAPER - mid) * contrast
        ink = mid - (mid - _INK) * contrast
        sheet = np.where(modules == 1, ink, paper).astype(np.float32)
        side = max(8, round(min(width, height) * DEFAULT_CODE_FRACTION * d.get("scale", 1.0)))
        # Like a lens: each pixel sees the average of the paper under it.
        big = Image.fromarray(sheet).resize((side * 4, side * 4), Image.Resampling.NEAREST)
        img = big.resize((side, side), Image.Resampling.BOX)
        angle = d.get("rotate", 0.0)
        if angle:
            # Paint outside the rotated sheet with a marker value, then let the scene show.
            img = img.rotate(angle, resample=Image.Resampling.BILINEAR, expand=True, fillcolor=-1.0)
        patch = np.asarray(img, dtype=np.float32)
        ph, pw = patch.shape
        top, left = (height - ph) // 2, (width - pw) // 2
        # Crop what would fall outside the frame (a code held too close).
        y0, x0 = max(0, -top), max(0, -left)
        y1, x1 = min(ph, height - top), min(pw, width - left)
        region = canvas[top + y0 : top + y1, left + x0 : left + x1]
        piece = patch[y0:y1, x0:x1]
        region[:] = np.where(piece >= 0, piece, region)

    blur = d.get("blur", 0.0)
    if blur > 0:
        as8 = Image.fromarray(np.clip(np.rint(canvas), 0, 255).astype(np.uint8))
        canvas = np.asarray(as8.filter(ImageFilter.GaussianBlur(blur)), dtype=np.float32)
    noise = d.get("noise", 0.0)
    if noise > 0:
        canvas = canvas + rng.normal(0.0, noise, size=canvas.shape).astype(np.float32)
    frame: Frame = np.clip(np.rint(canvas), 0, 255).astype(np.uint8)
    return frame


class SimCamera:
    """A camera that films whatever a drill holds up to it, at ``fps`` frames per second.

    Thread-safe: a drill calls ``show`` from its thread while the decode worker reads.
    Each shown code is rendered once (deterministically from ``seed`` and a counter), so a
    frame costs nothing to produce and the decoder sees a steady image, as with a real code
    held still.
    """

    def __init__(
        self, width: int = 640, height: int = 480, fps: float = 15.0, seed: int = 0
    ) -> None:
        if fps <= 0:
            raise SimulationError("fps must be positive")
        self.width = width
        self.height = height
        self.period = 1.0 / fps
        self._seed = seed
        self._shown = 0
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._empty = render_frame(None, width, height, seed=seed)
        self._frame = self._empty
        self._text: str | None = None
        self._stalled = False
        self._closed = False
        self._next = time.monotonic()
        self.frames_delivered = 0

    @property
    def showing(self) -> str | None:
        with self._lock:
            return self._text

    def show(self, text: str, distort: Mapping[str, Any] | None = None) -> None:
        """Hold ``text`` (as a QR code) in front of the camera until ``clear()``."""
        with self._lock:
            self._shown += 1
            seed = self._seed * 100_003 + self._shown
        frame = render_frame(text, self.width, self.height, distort, seed=seed)
        with self._cond:
            self._frame = frame
            self._text = text
            self._cond.notify_all()

    def clear(self) -> None:
        """Nothing in front of the camera: empty frames from now on."""
        with self._cond:
            self._frame = self._empty
            self._text = None

    def stall(self) -> None:
        """Stop delivering frames: ``read`` times out with a CameraError until ``resume``."""
        with self._cond:
            self._stalled = True

    def resume(self) -> None:
        with self._cond:
            self._stalled = False
            self._cond.notify_all()

    def read(self, timeout: float) -> Frame:
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                if self._closed:
                    raise CameraError("the simulated camera is closed")
                now = time.monotonic()
                if not self._stalled and now >= self._next:
                    self._next = max(self._next + self.period, now)
                    self.frames_delivered += 1
                    return self._frame
                if now >= deadline:
                    raise CameraError(f"no frame from the camera within {timeout:.1f} s")
                wait = deadline - now if self._stalled else min(deadline, self._next) - now
                self._cond.wait(max(wait, 0.0))

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()


class Picamera2Source:
    """The Raspberry Pi camera (libcamera) through picamera2.

    The decoder reads the luminance (Y) plane of the YUV420 ``lores`` stream of
    ``width`` x ``height``; the ``main`` stream (``preview_size``, RGB) is kept for a preview
    via :meth:`preview` and is never converted for scanning.
    """

    def __init__(
        self,
        width: int = 640,
        height: int = 480,
        fps: int = 15,
        preview_size: tuple[int, int] = (1280, 960),
        camera_num: int = 0,
        *,
        import_module: ImportModule = importlib.import_module,
    ) -> None:
        try:
            picamera2 = import_module("picamera2")  # from apt, Pi only
        except ImportError as exc:
            raise CameraError(
                "picamera2 is not installed (apt install python3-picamera2; the release's "
                f"virtual environment must see system site packages): {exc}"
            ) from None
        self.width, self.height = width, height
        try:
            self._cam = picamera2.Picamera2(camera_num)
        except IndexError as exc:
            raise CameraError(
                f"no camera {camera_num} found (is the ribbon cable seated, and "
                f"camera_auto_detect=1 in /boot/firmware/config.txt?): {exc}"
            ) from None
        except RuntimeError as exc:
            raise CameraError(
                f"camera {camera_num} could not be opened (does another process hold it?): {exc}"
            ) from None
        try:
            conf = self._cam.create_preview_configuration(
                main={"size": preview_size, "format": "XRGB8888"},
                lores={"size": (width, height), "format": "YUV420"},
                controls={"FrameRate": float(fps)},
                buffer_count=4,
            )
            self._cam.configure(conf)
            self._cam.start()
        except RuntimeError as exc:
            self._cam.close()
            raise CameraError(f"the camera could not be started: {exc}") from None
        self._closed = False

    def read(self, timeout: float) -> Frame:
        if self._closed:
            raise CameraError("the camera is closed")
        try:
            yuv = self._cam.capture_array("lores", wait=timeout)
        except TimeoutError:
            raise CameraError(f"no frame from the camera within {timeout:.1f} s") from None
        except RuntimeError as exc:
            raise CameraError(f"the camera failed: {exc}") from None
        if yuv is None:
            raise CameraError(f"no frame from the camera within {timeout:.1f} s")
        # YUV420 arrives as (height * 3 / 2, stride): the first `height` rows are Y, each
        # padded to the stride; the U and V planes follow.
        shape: tuple[int, ...] = tuple(getattr(yuv, "shape", ()))
        if len(shape) != 2 or shape[0] != self.height * 3 // 2 or shape[1] < self.width:
            raise CameraError(
                f"the camera delivered a lores frame of shape {shape}, not YUV420 of "
                f"{self.width}x{self.height} (rows {self.height * 3 // 2}, stride >= {self.width})"
            )
        return np.ascontiguousarray(yuv[: self.height, : self.width], dtype=np.uint8)

    def preview(self, timeout: float = 1.0) -> NDArray[np.uint8]:
        """One RGB(X) frame of the main stream, for showing the camera's view."""
        if self._closed:
            raise CameraError("the camera is closed")
        try:
            return np.asarray(self._cam.capture_array("main", wait=timeout), dtype=np.uint8)
        except (TimeoutError, RuntimeError) as exc:
            raise CameraError(f"no preview frame: {exc}") from None

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self._cam.stop()
        finally:
            self._cam.close()


class OpenCVSource:
    """A USB webcam (V4L2) through OpenCV, which is optional: install
    ``opencv-python-headless`` to use it."""

    def __init__(
        self,
        device: int = 0,
        width: int = 640,
        height: int = 480,
        fps: int = 15,
        *,
        import_module: ImportModule = importlib.import_module,
    ) -> None:
        try:
            cv2 = import_module("cv2")  # optional
        except ImportError:
            raise CameraError(
                "hardware.camera.source = 'opencv' needs OpenCV, which is optional: "
                "pip install opencv-python-headless (or use source = 'picamera2')"
            ) from None
        self._cv2: Any = cv2
        self._cap: Any = cv2.VideoCapture(device)
        if not self._cap.isOpened():
            self._cap.release()
            raise CameraError(f"cannot open webcam {device} (/dev/video{device})")
        self._closed = False
        self._cap.set(cv2.CAP_PROP_FRAME_WIDTH, width)
        self._cap.set(cv2.CAP_PROP_FRAME_HEIGHT, height)
        self._cap.set(cv2.CAP_PROP_FPS, fps)
        self._timeout_prop = getattr(cv2, "CAP_PROP_READ_TIMEOUT_MSEC", None)

    def read(self, timeout: float) -> Frame:
        if self._closed:
            raise CameraError("the webcam is closed")
        if self._timeout_prop is not None:
            self._cap.set(self._timeout_prop, timeout * 1000)
        ok, frame = self._cap.read()
        if not ok or frame is None:
            raise CameraError("the webcam delivered no frame (unplugged?)")
        if frame.ndim == 3:
            frame = self._cv2.cvtColor(frame, self._cv2.COLOR_BGR2GRAY)
        return np.ascontiguousarray(frame, dtype=np.uint8)

    def close(self) -> None:
        self._closed = True
        self._cap.release()
