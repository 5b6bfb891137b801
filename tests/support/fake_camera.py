"""Fake camera libraries that behave like picamera2 and OpenCV as the station uses them.

A *rig* is the hardware side: what is in front of the camera (a grayscale scene) and how the
camera misbehaves (stalls, fails, comes unplugged). ``rig.import_module`` is the loader the
adapters take (``Picamera2Source(..., import_module=rig.import_module)``): it returns a fake
``picamera2`` or ``cv2`` module and refuses every other name, as a Python without the library
would.

The fakes refuse what the real libraries refuse (messages as the libraries word them where
they have one):

picamera2 -- ``Picamera2(n)`` for a camera that is not attached (IndexError) or that another
instance holds (RuntimeError); ``configure`` while started; a lores stream larger than main
or not YUV; an unknown pixel format or control; ``start`` before ``configure`` or twice;
``capture_array`` of a stream that is not configured, or on a closed camera. A capture on a
camera that is not started never completes, as with libcamera: with ``wait`` it raises
TimeoutError after waiting, without ``wait`` the fake raises rather than hang the test.

cv2 -- ``VideoCapture(n)`` of a device that is absent or held by another capture is not
opened; ``read`` of an unopened, released or unplugged capture returns ``(False, None)``;
``set`` on an unopened capture returns False; ``cvtColor(BGR2GRAY)`` of anything but a
3-channel uint8 image raises ``cv2.error``.

The lores YUV420 frame is laid out as picamera2 hands it over: an array of
``(height * 3 // 2, stride)`` bytes, the Y plane in the first ``height`` rows with each row
padded to the stride (aligned to ``stride_align`` bytes), then the U and V planes.
"""

from __future__ import annotations

import threading
import types
from typing import Any

import numpy as np
from numpy.typing import NDArray
from PIL import Image

Gray = NDArray[np.uint8]

_FORMATS = {"XRGB8888", "XBGR8888", "RGB888", "BGR888", "YUV420", "YVU420"}
_YUV = {"YUV420", "YVU420"}
_CONTROLS = {"FrameRate", "FrameDurationLimits", "AeEnable", "AwbEnable", "AfMode"}
# Padding bytes at the end of each Y row and the chroma planes: values a decoder would see if
# the adapter failed to cut them off.
_PAD = 0
_CHROMA = 128


def _resized(scene: Gray, width: int, height: int) -> Gray:
    if scene.shape == (height, width):
        return scene.copy()
    img = Image.fromarray(scene).resize((width, height), Image.Resampling.BILINEAR)
    return np.asarray(img, dtype=np.uint8)


class _Rig:
    """What is in front of the camera, and how it misbehaves (shared by both fakes)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._scene: Gray = np.full((480, 640), 128, dtype=np.uint8)
        self._resumed = threading.Event()
        self._resumed.set()
        self.failure: str | None = None

    def show(self, scene: Gray) -> None:
        """Put ``scene`` (grayscale) in front of the camera; it fills the field of view."""
        if scene.dtype != np.uint8 or scene.ndim != 2:
            raise ValueError("a scene is a 2-D uint8 grayscale image")
        with self._lock:
            self._scene = scene.copy()

    def scene(self, width: int, height: int) -> Gray:
        with self._lock:
            return _resized(self._scene, width, height)

    def stall(self) -> None:
        """Stop delivering frames (a loose ribbon cable) until ``resume``."""
        self._resumed.clear()

    def resume(self) -> None:
        self._resumed.set()

    def wait_for_frame(self, timeout: float) -> bool:
        return self._resumed.wait(timeout)


# -- picamera2 ----------------------------------------------------------------------------


class PicameraRig(_Rig):
    """The Pi camera(s) behind a fake ``picamera2`` module.

    ``cameras`` attached cameras; ``stride_align`` the row alignment of the YUV420 buffers;
    ``fail(message)`` makes every capture raise RuntimeError(message) (libcamera reporting an
    error), ``deliver_nothing()`` makes captures yield None; ``adjust_lores`` is the lores size
    libcamera settles on whatever was asked (None: as asked). ``captures`` lists the stream
    of every completed capture, in order; ``opened`` / ``closed`` count camera instances.
    """

    def __init__(self, cameras: int = 1, stride_align: int = 64) -> None:
        super().__init__()
        self.cameras = cameras
        self.stride_align = stride_align
        self.in_use: set[int] = set()
        self.captures: list[str] = []
        self.configs: list[dict[str, Any]] = []
        self.opened = 0
        self.closed = 0
        self.nothing = False
        self.adjust_lores: tuple[int, int] | None = None
        self.module = types.ModuleType("picamera2")
        self.module.__dict__["Picamera2"] = type("Picamera2", (FakePicamera2,), {"rig": self})

    def import_module(self, name: str) -> Any:
        if name == "picamera2":
            return self.module
        raise ModuleNotFoundError(f"No module named {name!r}", name=name)

    def fail(self, message: str = "Camera frontend has timed out!") -> None:
        self.failure = message

    def deliver_nothing(self) -> None:
        self.nothing = True

    def stride(self, width: int) -> int:
        a = self.stride_align
        return (width + a - 1) // a * a


class FakePicamera2:
    """Picamera2's lifecycle and array captures, on a :class:`PicameraRig`."""

    rig: PicameraRig

    def __init__(self, camera_num: int = 0) -> None:
        rig = self.rig
        if not 0 <= camera_num < rig.cameras:
            raise IndexError("list index out of range")
        with rig._lock:
            if camera_num in rig.in_use:
                raise RuntimeError("Failed to acquire camera: Device or resource busy")
            rig.in_use.add(camera_num)
            rig.opened += 1
        self.camera_num = camera_num
        self.camera_config: dict[str, Any] | None = None
        self.started = False
        self.is_open = True

    def _configuration(
        self,
        use_case: str,
        default_main: tuple[int, int],
        main: dict[str, Any] | None,
        lores: dict[str, Any] | None,
        controls: dict[str, Any] | None,
        buffer_count: int,
    ) -> dict[str, Any]:
        m = {"format": "XBGR8888", "size": default_main, **(main or {})}
        lo = None if lores is None else {"format": "YUV420", "size": m["size"], **lores}
        return {
            "use_case": use_case,
            "main": m,
            "lores": lo,
            "raw": None,
            "controls": dict(controls or {}),
            "buffer_count": buffer_count,
        }

    def create_preview_configuration(
        self,
        main: dict[str, Any] | None = None,
        lores: dict[str, Any] | None = None,
        controls: dict[str, Any] | None = None,
        buffer_count: int = 4,
        **_: Any,
    ) -> dict[str, Any]:
        return self._configuration("preview", (640, 480), main, lores, controls, buffer_count)

    def create_video_configuration(
        self,
        main: dict[str, Any] | None = None,
        lores: dict[str, Any] | None = None,
        controls: dict[str, Any] | None = None,
        buffer_count: int = 6,
        **_: Any,
    ) -> dict[str, Any]:
        return self._configuration("video", (1280, 720), main, lores, controls, buffer_count)

    def _check_open(self) -> None:
        if not self.is_open:
            raise RuntimeError("Camera is closed")

    def configure(self, camera_config: dict[str, Any]) -> None:
        self._check_open()
        if self.started:
            raise RuntimeError("Camera must be stopped before configuring")
        self.camera_config = None
        for name in ("main", "lores"):
            stream = camera_config.get(name)
            if stream is None:
                continue
            if stream["format"] not in _FORMATS:
                raise RuntimeError(f"Invalid format {stream['format']} for {name} stream")
            w, h = stream["size"]
            if not (isinstance(w, int) and isinstance(h, int) and w > 0 and h > 0):
                raise RuntimeError(f"Invalid size {stream['size']} for {name} stream")
        lores = camera_config.get("lores")
        if lores is not None:
            (mw, mh), (lw, lh) = camera_config["main"]["size"], lores["size"]
            if lw > mw or lh > mh:
                raise RuntimeError("lores stream dimensions may not exceed main stream")
            if lores["format"] not in _YUV:
                raise RuntimeError("lores stream must be YUV")
        for control in camera_config.get("controls", {}):
            if control not in _CONTROLS:
                raise RuntimeError(f"Control {control} is not advertised by libcamera")
        if int(camera_config.get("buffer_count", 1)) < 1:
            raise RuntimeError("buffer_count must be at least 1")
        config = {k: (dict(v) if isinstance(v, dict) else v) for k, v in camera_config.items()}
        if config.get("lores") is not None:
            if self.rig.adjust_lores is not None:
                config["lores"]["size"] = self.rig.adjust_lores
            lw = config["lores"]["size"][0]
            config["lores"]["stride"] = self.rig.stride(lw)
        self.camera_config = config
        self.rig.configs.append(config)

    def start(self) -> None:
        self._check_open()
        if self.camera_config is None:
            raise RuntimeError("Camera has not been configured")
        if self.started:
            raise RuntimeError("Camera already started")
        self.started = True

    def capture_array(self, name: str = "main", wait: float | None = None) -> Any:
        self._check_open()
        rig = self.rig
        if self.camera_config is None or self.camera_config.get(name) is None:
            raise RuntimeError(f"stream {name!r} is not configured")
        if not self.started:
            # libcamera completes no request on a stopped camera: the capture never returns.
            if wait is None:
                raise RuntimeError("capture_array on a camera that is not started never returns")
            threading.Event().wait(wait)
            raise TimeoutError
        if not rig.wait_for_frame(wait if wait is not None else 5.0):
            if wait is None:
                raise RuntimeError("the test stalled a camera and captured without a wait")
            raise TimeoutError
        if rig.failure is not None:
            raise RuntimeError(rig.failure)
        if rig.nothing:
            return None
        stream = self.camera_config[name]
        w, h = stream["size"]
        scene = rig.scene(w, h)
        if stream["format"] in _YUV:
            buf = np.full((h * 3 // 2, stream["stride"]), _PAD, dtype=np.uint8)
            buf[:h, :w] = scene
            buf[h:, :] = _CHROMA
            out: Any = buf
        else:
            out = np.empty((h, w, 4), dtype=np.uint8)
            out[..., :3] = scene[..., None]
            out[..., 3] = 255
        with rig._lock:
            rig.captures.append(name)
        return out

    def stop(self) -> None:
        self._check_open()
        self.started = False

    def close(self) -> None:
        if not self.is_open:
            return
        self.started = False
        self.is_open = False
        with self.rig._lock:
            self.rig.in_use.discard(self.camera_num)
            self.rig.closed += 1


# -- OpenCV -------------------------------------------------------------------------------


class Cv2Error(Exception):
    """``cv2.error``."""


class WebcamRig(_Rig):
    """USB webcams behind a fake ``cv2`` module: ``devices`` are the /dev/videoN present.

    Frames come in BGR, with a slight warm colour cast (as a tent light gives), so only a
    proper BGR-to-gray conversion gives back the scene. ``unplug()`` makes reads fail;
    ``stall()`` makes them wait for the read timeout and fail. ``sets`` records every
    property set; ``releases`` counts releases of opened captures.
    """

    CAP_PROP_FRAME_WIDTH = 3
    CAP_PROP_FRAME_HEIGHT = 4
    CAP_PROP_FPS = 5
    CAP_PROP_OPEN_TIMEOUT_MSEC = 53
    CAP_PROP_READ_TIMEOUT_MSEC = 54
    COLOR_BGR2GRAY = 6

    def __init__(self, devices: tuple[int, ...] = (0,)) -> None:
        super().__init__()
        self.devices = set(devices)
        self.in_use: set[int] = set()
        self.unplugged = False
        self.sets: list[tuple[int, float]] = []
        self.releases = 0
        self.frames = 0
        rig = self
        mod = types.ModuleType("cv2")
        for const in (
            "CAP_PROP_FRAME_WIDTH",
            "CAP_PROP_FRAME_HEIGHT",
            "CAP_PROP_FPS",
            "CAP_PROP_OPEN_TIMEOUT_MSEC",
            "CAP_PROP_READ_TIMEOUT_MSEC",
            "COLOR_BGR2GRAY",
        ):
            setattr(mod, const, getattr(self, const))
        mod.__dict__.update(
            error=Cv2Error,
            VideoCapture=type("VideoCapture", (FakeVideoCapture,), {"rig": rig}),
            cvtColor=cvt_color,
        )
        self.module = mod

    def import_module(self, name: str) -> Any:
        if name == "cv2":
            return self.module
        raise ModuleNotFoundError(f"No module named {name!r}", name=name)

    def unplug(self) -> None:
        self.unplugged = True

    def bgr(self, width: int, height: int) -> NDArray[np.uint8]:
        gray = self.scene(width, height).astype(np.float32)
        b = gray * 0.85
        g = gray
        r = np.minimum(gray * 1.1 + 8, 255)
        return np.rint(np.stack([b, g, r], axis=-1)).astype(np.uint8)


def cvt_color(src: Any, code: int) -> NDArray[np.uint8]:
    """``cv2.cvtColor`` for COLOR_BGR2GRAY (ITU-R BT.601 weights, as OpenCV)."""
    if code != WebcamRig.COLOR_BGR2GRAY:
        raise Cv2Error(f"unsupported colour conversion code {code}")
    if not isinstance(src, np.ndarray) or src.dtype != np.uint8:
        raise Cv2Error("Unsupported depth of input image")
    if src.ndim != 3 or src.shape[2] != 3:
        raise Cv2Error("Invalid number of channels in input image: 'VScn::contains(scn)'")
    b, g, r = (src[..., i].astype(np.float32) for i in range(3))
    return np.rint(0.114 * b + 0.587 * g + 0.299 * r).astype(np.uint8)


class FakeVideoCapture:
    """``cv2.VideoCapture(index)`` on a :class:`WebcamRig`."""

    rig: WebcamRig

    def __init__(self, index: int) -> None:
        rig = self.rig
        self.index = index
        self.width, self.height, self.fps = 640, 480, 30.0
        self.read_timeout_ms = 10_000.0  # the V4L2 backend's default
        with rig._lock:
            self._opened = index in rig.devices and index not in rig.in_use
            if self._opened:
                rig.in_use.add(index)

    def isOpened(self) -> bool:  # OpenCV's name
        return self._opened

    def set(self, prop: int, value: float) -> bool:
        if not self._opened:
            return False
        self.rig.sets.append((prop, value))
        if prop == WebcamRig.CAP_PROP_FRAME_WIDTH:
            self.width = int(value)
        elif prop == WebcamRig.CAP_PROP_FRAME_HEIGHT:
            self.height = int(value)
        elif prop == WebcamRig.CAP_PROP_FPS:
            self.fps = float(value)
        elif prop == WebcamRig.CAP_PROP_READ_TIMEOUT_MSEC:
            self.read_timeout_ms = float(value)
        else:
            return False
        return True

    def read(self) -> tuple[bool, NDArray[np.uint8] | None]:
        rig = self.rig
        if not self._opened or rig.unplugged:
            return False, None
        if not rig.wait_for_frame(self.read_timeout_ms / 1000):
            return False, None
        with rig._lock:
            rig.frames += 1
        return True, rig.bgr(self.width, self.height)

    def release(self) -> None:
        if not self._opened:
            return
        self._opened = False
        with self.rig._lock:
            self.rig.in_use.discard(self.index)
            self.rig.releases += 1
