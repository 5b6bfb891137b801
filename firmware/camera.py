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
import multiprocessing as mp
import os
import signal
import threading
import time
from collections.abc import Callable, Mapping
from multiprocessing.connection import Connection
from multiprocessing.connection import wait as mp_wait
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


def _lens(sheet: NDArray[np.float32], side: int) -> NDArray[np.float32]:
    """The square ``sheet`` (one value per module) as ``side`` x ``side`` pixels see it: each
    pixel the average of 4 x 4 sub-pixels, each sub-pixel the module under its centre (a 4x
    nearest-neighbour enlargement box-filtered back down). Done by indexing, one direction
    at a time, so it needs neither a 4x image nor a BLAS call: OpenBLAS's threads keep
    spinning on every core for a while after a call, which took the CPU the screen's
    software rasteriser needed."""
    n = sheet.shape[0]
    sub = np.arange(side * 4, dtype=np.int64)
    # The module under sub-pixel k's centre: floor((k + 1/2) * n / (4 * side)), in integers.
    cell = ((2 * sub + 1) * n) // (8 * side)
    values = sheet.astype(np.float64)
    rows = values[cell[0::4]]
    for k in (1, 2, 3):
        rows += values[cell[k::4]]
    out = rows[:, cell[0::4]]
    for k in (1, 2, 3):
        out += rows[:, cell[k::4]]
    seen: NDArray[np.float32] = (out / 16.0).astype(np.float32)
    return seen


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
        modules = np.pad(np.asarray(qr.matrix, dtype=np.uint8), 4)  # 4: the quiet zone
        contrast = d.get("contrast", 1.0)
        mid = (_PAPER + _INK) / 2
        paper = mid + (_PAPER - mid) * contrast
        ink = mid - (mid - _INK) * contrast
        sheet = np.where(modules == 1, ink, paper).astype(np.float32)
        side = max(8, round(min(width, height) * DEFAULT_CODE_FRACTION * d.get("scale", 1.0)))
        # Like a lens: each pixel sees the average of the paper under it.
        img = Image.fromarray(_lens(sheet, side))
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


# How long ``show`` waits for the render helper to hand back one frame (a render takes some
# 20 ms) before it takes the helper for stuck, stops it and renders the frame itself.
RENDER_HELPER_TIMEOUT_S = 10.0
# How long ``close`` waits for the render helper to exit before it kills it.
HELPER_STOP_TIMEOUT_S = 2.0

# One render request: text, width, height, distortions, seed.
_Job = tuple[str, int, int, dict[str, float], int]


def _render_helper_main(conn: Connection) -> None:
    """The render helper process: renders each request it receives and sends the frame back
    (None when rendering failed: the camera then renders it itself and its caller sees the
    error). Stops at ``None`` or when the camera's end of the pipe closes."""
    # Ctrl-C in a terminal reaches the whole process group; the camera's owner decides when
    # the helper stops.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    conn.send(os.getpid())  # ready: everything rendering needs is imported
    while True:
        try:
            job: _Job | None = conn.recv()
        except EOFError:
            return
        if job is None:
            return
        try:
            frame: Frame | None = render_frame(*job)
        except Exception:  # the camera renders it again, and its caller gets the error
            frame = None
        conn.send(frame)


class _HelperFailed(Exception):
    """The render helper died, hung or could not be started (the reason is the message)."""


class _RenderHelper:
    """The child process that renders codes for one SimCamera, and its end of the pipe."""

    def __init__(self) -> None:
        # spawn, not fork: the kiosk's process has threads (Kivy, the workers), and a forked
        # child could inherit a lock one of them held.
        ctx = mp.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self._process = ctx.Process(
            target=_render_helper_main, args=(child,), name="sim-camera-render", daemon=True
        )
        self._lock = threading.Lock()  # one request on the pipe at a time
        self.pid: int | None = None  # once ready
        try:
            self._process.start()
        finally:
            child.close()

    def ready(self) -> bool:
        """Has the helper said it is ready? Never blocks."""
        if self.pid is not None:
            return True
        if not self._lock.acquire(blocking=False):
            return False
        try:
            if self.pid is None and self._conn.poll(0):
                self.pid = int(self._conn.recv())
        except (EOFError, OSError):
            return False
        finally:
            self._lock.release()
        return self.pid is not None

    def exited(self) -> bool:
        return not self._process.is_alive()

    def wait_ready(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while not self.ready():
            if not self._process.is_alive():
                return False
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            mp_wait([self._conn, self._process.sentinel], min(left, 0.1))
        return True

    def render(self, job: _Job, timeout: float) -> Frame | None:
        """The helper's frame for ``job``; None if rendering raised there."""
        with self._lock:
            try:
                self._conn.send(job)
                if not self._conn.poll(timeout):
                    raise _HelperFailed(f"no frame within {timeout:g} s")
                frame: Frame | None = self._conn.recv()
            except (EOFError, OSError) as exc:
                raise _HelperFailed(f"it exited ({type(exc).__name__})") from None
            return frame

    def stop(self, timeout: float = HELPER_STOP_TIMEOUT_S, *, ask: bool = True) -> None:
        """Ask the helper to exit (``ask``); if it has not within ``timeout``, or is still
        starting (it would only finish its imports first), or is not to be asked (it failed),
        kill it. A ``render`` waiting on it meanwhile sees the pipe close and fails."""
        asked = False
        if ask and self.pid is not None and self._lock.acquire(timeout=timeout):
            try:
                self._conn.send(None)
                asked = True
            except OSError:
                pass
            finally:
                self._lock.release()
        if asked:
            self._process.join(timeout)
        if self._process.is_alive():
            self._process.kill()
            self._process.join(timeout)
        if self._lock.acquire(timeout=timeout):
            try:
                self._conn.close()
            finally:
                self._lock.release()
        if not self._process.is_alive():
            self._process.close()


class SimCamera:
    """A camera that films whatever a drill holds up to it, at ``fps`` frames per second.

    Thread-safe: a drill calls ``show`` from its thread while the decode worker reads.
    Each shown code is rendered once (deterministically from ``seed`` and a counter), so a
    frame costs nothing to produce and the decoder sees a steady image, as with a real code
    held still.

    Rendering a code (QR encoding in Python, then Pillow and NumPy) takes some 20 ms of
    interpreter time, which in the kiosk's process would keep the UI thread waiting for the
    interpreter. So codes are rendered in a *render helper*: a child process (started with
    ``spawn``) that this camera starts in the background at its first ``read`` or ``show``
    and stops in ``close``. ``show`` hands the helper the text, the distortions and the seed,
    waits for the frame without holding the interpreter, and puts it in front of the camera:
    until then ``read`` returns what was there before, as a real camera does while a hand
    moves. A ``show`` before the helper is ready, or after it failed (it died, or gave no
    frame within ``render_timeout_s``; logged once, and the helper is not started again),
    renders in this process: the frame is the same either way, as :func:`render_frame` is
    pure. As with every ``spawn``-started process, the helper imports the program's main
    module again, so a program's own work belongs under ``if __name__ == "__main__"``.
    ``render_apart=False`` renders every code in this process and starts no helper.
    """

    def __init__(
        self,
        width: int = 640,
        height: int = 480,
        fps: float = 15.0,
        seed: int = 0,
        render_timeout_s: float = RENDER_HELPER_TIMEOUT_S,
        *,
        render_apart: bool = True,
    ) -> None:
        if fps <= 0:
            raise SimulationError("fps must be positive")
        if render_timeout_s <= 0:
            raise SimulationError("render_timeout_s must be positive")
        self.render_timeout_s = render_timeout_s
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
        # Bumped by every show and clear: a render that finishes after a later show or clear
        # does not put its frame in front of the camera.
        self._generation = 0
        self._stalled = False
        self._closed = False
        self._next = time.monotonic()
        self.frames_delivered = 0
        self._helper: _RenderHelper | None = None
        # render_apart=False: no helper, every code rendered in this process (as before
        # the helper existed; the kiosk benchmark compares the two).
        self._helper_failed = not render_apart
        self.renders_in_helper = 0
        self.renders_here = 0

    @property
    def showing(self) -> str | None:
        """The text of the code in front of the camera now (None: nothing)."""
        with self._lock:
            return self._text

    @property
    def helper_pid(self) -> int | None:
        """The render helper's process id while it is ready to render, else None."""
        with self._lock:
            helper = self._helper
        return helper.pid if helper is not None and helper.ready() else None

    def start_helper(self, wait: float = 0.0) -> int | None:
        """Start the render helper (once) and wait up to ``wait`` seconds for it to be
        ready; its process id, or None if it is not ready (or failed, or the camera is
        closed). ``read`` and ``show`` start it anyway; this lets a caller have it ready
        before the first code."""
        with self._lock:
            self._start_helper_locked()
            helper = self._helper
        if helper is not None and wait > 0:
            helper.wait_ready(wait)
        return self.helper_pid

    def _start_helper_locked(self) -> None:
        if self._helper is not None or self._helper_failed or self._closed:
            return
        try:
            self._helper = _RenderHelper()
        except OSError as exc:
            self._helper_failed = True
            log.warning(
                "the simulated camera's render helper could not be started (%s); codes are "
                "rendered in this process",
                exc,
            )

    def show(self, text: str, distort: Mapping[str, Any] | None = None) -> None:
        """Hold ``text`` (as a QR code) in front of the camera until ``clear()``."""
        d = check_distortion(distort)  # a wrong table is the caller's error, raised here
        with self._lock:
            self._shown += 1
            self._generation += 1
            generation = self._generation
            seed = self._seed * 100_003 + self._shown
            self._start_helper_locked()
            helper = self._helper
        frame: Frame | None = None
        if helper is not None and helper.ready():
            try:
                frame = helper.render(
                    (text, self.width, self.height, d, seed), self.render_timeout_s
                )
            except _HelperFailed as exc:
                self._helper_broke(helper, str(exc))
        elif helper is not None and helper.exited():
            # E.g. the program's main module failed when the helper imported it again.
            self._helper_broke(helper, "it exited before it was ready")
        rendered_here = frame is None
        if frame is None:
            frame = render_frame(text, self.width, self.height, d, seed=seed)
        with self._cond:
            if rendered_here:
                self.renders_here += 1
            else:
                self.renders_in_helper += 1
            if generation != self._generation:
                return  # a later show or clear came first
            self._frame = frame
            self._text = text
            self._cond.notify_all()

    def _helper_broke(self, helper: _RenderHelper, why: str) -> None:
        with self._lock:
            if self._helper is not helper:
                return  # closed meanwhile, or another show saw it fail first
            self._helper_failed = True
            self._helper = None
        log.warning(
            "the simulated camera's render helper failed (%s); codes are rendered in this "
            "process from now on",
            why,
        )
        helper.stop(ask=False)

    def clear(self) -> None:
        """Nothing in front of the camera: empty frames from now on."""
        with self._cond:
            self._generation += 1
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
            if self._helper is None:
                self._start_helper_locked()
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
        """Stop delivering frames and stop the render helper (within
        :data:`HELPER_STOP_TIMEOUT_S`; then it is killed)."""
        with self._cond:
            self._closed = True
            helper, self._helper = self._helper, None
            self._cond.notify_all()
        if helper is not None:
            helper.stop()


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
