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

The simulated camera that renders real QR codes is :class:`firmware.sim.camera.SimCamera`
(its renderer: :func:`firmware.sim.render.render_frame`).
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray

from firmware.errors import CameraError

log = logging.getLogger(__name__)

Frame = NDArray[np.uint8]
# How an adapter loads its device library (picamera2, cv2): importlib.import_module, or a
# test's loader that returns a fake library.
ImportModule = Callable[[str], Any]


class FrameSource(Protocol):
    """Where frames come from. ``read`` blocks for at most ``timeout`` seconds."""

    def read(self, timeout: float) -> Frame: ...

    def close(self) -> None: ...


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
