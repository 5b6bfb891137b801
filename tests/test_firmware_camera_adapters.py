"""The real camera adapters (picamera2, OpenCV) on fake libraries that behave like the real
ones (tests/support/fake_camera.py), with real QR images through the real decoders."""

from __future__ import annotations

import queue
import random
import threading
import time
from collections.abc import Iterator

import numpy as np
import pytest

from firmware.camera import OpenCVSource, Picamera2Source
from firmware.errors import CameraError
from firmware.qr import DecodeWorker, make_engine
from firmware.sim.render import render_frame
from tests.support.fake_camera import Cv2Error, PicameraRig, WebcamRig

ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:"
CODE = "HC1:" + "".join(random.Random(11).choice(ALPHABET) for _ in range(300))


def no_library(name: str) -> object:
    raise ModuleNotFoundError(f"No module named {name!r}", name=name)


@pytest.fixture
def rig() -> PicameraRig:
    return PicameraRig()


@pytest.fixture
def webcams() -> WebcamRig:
    return WebcamRig(devices=(0, 1))


@pytest.fixture
def picam(rig: PicameraRig) -> Iterator[Picamera2Source]:
    src = Picamera2Source(600, 450, 15, import_module=rig.import_module)
    yield src
    src.close()


def wait_until(cond, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.01)
    return cond()


# -- the fake picamera2 refuses what picamera2 refuses -------------------------------------


def test_fake_picamera2_refuses_what_the_library_refuses(rig: PicameraRig) -> None:
    Picamera2 = rig.module.Picamera2
    with pytest.raises(IndexError):
        Picamera2(1)  # one camera attached
    cam = Picamera2(0)
    with pytest.raises(RuntimeError, match="busy"):
        Picamera2(0)
    with pytest.raises(RuntimeError, match="has not been configured"):
        cam.start()
    with pytest.raises(RuntimeError, match="may not exceed main"):
        cam.configure(
            cam.create_preview_configuration(main={"size": (640, 480)}, lores={"size": (800, 600)})
        )
    with pytest.raises(RuntimeError, match="must be YUV"):
        cam.configure(cam.create_preview_configuration(lores={"format": "XRGB8888"}))
    with pytest.raises(RuntimeError, match="not advertised"):
        cam.configure(cam.create_preview_configuration(controls={"Disco": 1}))
    cam.configure(cam.create_video_configuration(lores={"size": (320, 240)}))
    # Not started: libcamera completes no request, so the capture times out.
    t0 = time.monotonic()
    with pytest.raises(TimeoutError):
        cam.capture_array("lores", wait=0.05)
    assert time.monotonic() - t0 >= 0.05
    cam.start()
    with pytest.raises(RuntimeError, match="already started"):
        cam.start()
    with pytest.raises(RuntimeError, match="must be stopped before configuring"):
        cam.configure(cam.create_preview_configuration())
    with pytest.raises(RuntimeError, match="not configured"):
        cam.capture_array("raw", wait=0.05)
    assert cam.capture_array("lores", wait=1.0).shape == (360, 320)
    cam.close()
    with pytest.raises(RuntimeError, match="closed"):
        cam.capture_array("lores", wait=0.05)
    Picamera2(0).close()  # released: it can be opened again
    assert rig.opened == 2
    assert rig.closed == 2


def test_fake_library_loaders_refuse_other_modules(rig: PicameraRig, webcams: WebcamRig) -> None:
    with pytest.raises(ModuleNotFoundError):
        rig.import_module("cv2")
    with pytest.raises(ModuleNotFoundError):
        webcams.import_module("picamera2")


# -- Picamera2Source -----------------------------------------------------------------------


@pytest.mark.parametrize("engine_name", ["zxing", "pyzbar"])
def test_scanned_frame_is_the_y_plane_cut_from_a_strided_yuv420_buffer(
    rig: PicameraRig, picam: Picamera2Source, engine_name: str
) -> None:
    scene = render_frame(CODE, 600, 450, {"rotate": 10}, seed=3)
    rig.show(scene)
    lores = rig.configs[-1]["lores"]
    assert lores["size"] == (600, 450)
    assert lores["stride"] == 640  # rows padded: the buffer is wider than the image
    frame = picam.read(1.0)
    assert frame.shape == (450, 600)
    assert frame.dtype == np.uint8
    assert frame.flags["C_CONTIGUOUS"]
    assert np.array_equal(frame, scene)  # no padding column, no chroma row
    assert make_engine(engine_name).decode(frame) == [CODE]
    assert rig.captures == ["lores"]


def test_preview_stream_is_kept_apart_from_the_scanning_stream(rig: PicameraRig) -> None:
    src = Picamera2Source(640, 480, 12, preview_size=(1280, 960), import_module=rig.import_module)
    try:
        (config,) = rig.configs
        assert config["main"] == {"format": "XRGB8888", "size": (1280, 960)}
        assert config["lores"]["size"] == (640, 480)
        assert config["lores"]["format"] == "YUV420"
        assert config["controls"] == {"FrameRate": 12.0}
        rig.show(render_frame(CODE, 640, 480))
        for _ in range(3):
            assert src.read(1.0).shape == (480, 640)
        assert rig.captures == ["lores"] * 3  # scanning never touches the main stream
        preview = src.preview(1.0)
        assert preview.shape == (960, 1280, 4)
        assert rig.captures == ["lores"] * 3 + ["main"]
        assert src.read(1.0).shape == (480, 640)
    finally:
        src.close()


def test_a_camera_that_stops_delivering_gives_camera_error_then_recovers(
    rig: PicameraRig, picam: Picamera2Source
) -> None:
    assert picam.read(1.0).shape == (450, 600)
    rig.stall()
    t0 = time.monotonic()
    with pytest.raises(CameraError, match=r"no frame from the camera within 0\.1 s"):
        picam.read(0.1)
    assert time.monotonic() - t0 >= 0.1  # waited the timeout, not longer than asked for
    rig.resume()
    assert picam.read(1.0).shape == (450, 600)


def test_a_failing_camera_gives_camera_error(rig: PicameraRig, picam: Picamera2Source) -> None:
    rig.fail("Camera frontend has timed out!")
    with pytest.raises(CameraError, match="the camera failed: Camera frontend has timed out!"):
        picam.read(0.5)
    with pytest.raises(CameraError, match="no preview frame"):
        picam.preview(0.5)


def test_a_capture_that_yields_nothing_gives_camera_error(
    rig: PicameraRig, picam: Picamera2Source
) -> None:
    rig.deliver_nothing()
    with pytest.raises(CameraError, match="no frame from the camera"):
        picam.read(0.5)


def test_a_lores_frame_of_another_size_is_refused_not_misread(rig: PicameraRig) -> None:
    rig.adjust_lores = (640, 448)  # libcamera settled on another size than asked
    src = Picamera2Source(640, 480, 15, import_module=rig.import_module)
    try:
        with pytest.raises(CameraError, match=r"shape \(672, 640\), not YUV420 of 640x480"):
            src.read(1.0)
    finally:
        src.close()


def test_close_releases_the_camera(rig: PicameraRig) -> None:
    src = Picamera2Source(640, 480, 15, import_module=rig.import_module)
    assert rig.in_use == {0}
    src.close()
    assert rig.in_use == set()
    assert rig.closed == 1
    with pytest.raises(CameraError, match="closed"):
        src.read(0.1)
    with pytest.raises(CameraError, match="closed"):
        src.preview(0.1)
    src.close()  # twice is harmless
    assert rig.closed == 1
    again = Picamera2Source(640, 480, 15, import_module=rig.import_module)
    assert again.read(1.0).shape == (480, 640)
    again.close()


def test_a_camera_that_cannot_start_is_closed_again(rig: PicameraRig) -> None:
    with pytest.raises(CameraError, match="could not be started: lores stream dimensions"):
        Picamera2Source(1920, 1080, 15, preview_size=(1280, 960), import_module=rig.import_module)
    assert rig.in_use == set()
    assert rig.opened == rig.closed == 1


def test_absent_busy_and_missing_cameras_are_clear_errors(rig: PicameraRig) -> None:
    with pytest.raises(CameraError, match=r"no camera 1 found .*ribbon cable"):
        Picamera2Source(camera_num=1, import_module=rig.import_module)
    holder = Picamera2Source(import_module=rig.import_module)
    try:
        with pytest.raises(CameraError, match=r"camera 0 could not be opened .*busy"):
            Picamera2Source(import_module=rig.import_module)
    finally:
        holder.close()
    with pytest.raises(CameraError, match="picamera2 is not installed"):
        Picamera2Source(import_module=no_library)


def test_decode_worker_on_the_pi_camera_reads_codes_and_reports_a_stall(
    rig: PicameraRig, picam: Picamera2Source
) -> None:
    payloads: queue.Queue[str] = queue.Queue()
    faults: list[CameraError] = []
    recovered = threading.Event()
    worker = DecodeWorker(
        picam,
        make_engine("zxing"),
        payloads,
        repeat_suppress_s=60.0,
        frame_timeout_s=0.1,
        on_fault=faults.append,
        on_recover=recovered.set,
    )
    rig.show(render_frame(CODE, 600, 450, {"blur": 0.8}, seed=5))
    worker.start()
    try:
        assert payloads.get(timeout=10) == CODE
        rig.stall()
        assert wait_until(lambda: len(faults) == 1)
        assert "no frame from the camera" in str(faults[0])
        rig.resume()
        assert recovered.wait(10)
    finally:
        worker.stop()
    assert len(faults) == 1
    assert payloads.empty()  # the same code held up is not delivered twice


# -- the fake cv2 refuses what OpenCV refuses ------------------------------------------------


def test_fake_cv2_refuses_what_opencv_refuses(webcams: WebcamRig) -> None:
    cv2 = webcams.module
    absent = cv2.VideoCapture(5)
    assert not absent.isOpened()
    assert absent.read() == (False, None)
    assert absent.set(cv2.CAP_PROP_FRAME_WIDTH, 640) is False
    cap = cv2.VideoCapture(0)
    assert cap.isOpened()
    assert not cv2.VideoCapture(0).isOpened()  # busy
    ok, frame = cap.read()
    assert ok
    assert frame.shape == (480, 640, 3)
    with pytest.raises(Cv2Error, match="number of channels"):
        cv2.cvtColor(frame[..., 0], cv2.COLOR_BGR2GRAY)
    with pytest.raises(Cv2Error, match="depth"):
        cv2.cvtColor(frame.astype(np.float64), cv2.COLOR_BGR2GRAY)
    assert cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY).shape == (480, 640)
    cap.release()
    assert cap.read() == (False, None)
    assert cv2.VideoCapture(0).isOpened()  # released: it can be opened again


# -- OpenCVSource --------------------------------------------------------------------------


@pytest.mark.parametrize("engine_name", ["zxing", "pyzbar"])
def test_webcam_frames_are_converted_to_gray_and_decode(
    webcams: WebcamRig, engine_name: str
) -> None:
    scene = render_frame(CODE, 640, 480, {"scale": 0.7}, seed=9)
    webcams.show(scene)
    src = OpenCVSource(1, 640, 480, 15, import_module=webcams.import_module)
    try:
        frame = src.read(1.0)
    finally:
        src.close()
    assert frame.shape == (480, 640)
    assert frame.dtype == np.uint8
    # The luma of the BGR picture (ITU-R BT.601, as OpenCV weighs it), not one of its channels.
    b, g, r = (webcams.bgr(640, 480)[..., i].astype(np.float64) for i in range(3))
    assert np.array_equal(frame, np.rint(0.114 * b + 0.587 * g + 0.299 * r).astype(np.uint8))
    assert np.abs(frame.astype(int) - scene.astype(int)).max() <= 6
    assert make_engine(engine_name).decode(frame) == [CODE]
    assert (webcams.CAP_PROP_FRAME_WIDTH, 640) in webcams.sets
    assert (webcams.CAP_PROP_FRAME_HEIGHT, 480) in webcams.sets
    assert (webcams.CAP_PROP_FPS, 15) in webcams.sets
    assert (webcams.CAP_PROP_READ_TIMEOUT_MSEC, 1000.0) in webcams.sets


def test_a_webcam_that_stops_delivering_gives_camera_error(webcams: WebcamRig) -> None:
    src = OpenCVSource(0, 320, 240, 15, import_module=webcams.import_module)
    try:
        assert src.read(1.0).shape == (240, 320)
        webcams.stall()
        t0 = time.monotonic()
        with pytest.raises(CameraError, match="no frame"):
            src.read(0.1)
        assert time.monotonic() - t0 >= 0.1  # the read timeout reached the driver
        webcams.resume()
        assert src.read(1.0).shape == (240, 320)
        webcams.unplug()
        with pytest.raises(CameraError, match="unplugged"):
            src.read(0.1)
    finally:
        src.close()


def test_closing_the_webcam_releases_it(webcams: WebcamRig) -> None:
    src = OpenCVSource(0, import_module=webcams.import_module)
    assert webcams.in_use == {0}
    src.close()
    assert webcams.in_use == set()
    assert webcams.releases == 1
    with pytest.raises(CameraError, match="closed"):
        src.read(0.1)
    OpenCVSource(0, import_module=webcams.import_module).close()
    assert webcams.releases == 2


def test_absent_busy_and_missing_webcams_are_clear_errors(webcams: WebcamRig) -> None:
    with pytest.raises(CameraError, match=r"cannot open webcam 4 \(/dev/video4\)"):
        OpenCVSource(4, import_module=webcams.import_module)
    holder = OpenCVSource(0, import_module=webcams.import_module)
    try:
        with pytest.raises(CameraError, match="cannot open webcam 0"):
            OpenCVSource(0, import_module=webcams.import_module)
    finally:
        holder.close()
    with pytest.raises(CameraError, match="opencv-python-headless"):
        OpenCVSource(0, import_module=no_library)
