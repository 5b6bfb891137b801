"""Camera frames through the real QR decoders, and the decode worker thread."""

from __future__ import annotations

import importlib.util
import queue
import random
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import segno

from firmware.camera import OpenCVSource
from firmware.errors import CameraError, DecoderError, SimulationError
from firmware.qr import DecodeWorker, PyzbarEngine, ZxingEngine, decode_image_file, make_engine
from firmware.sim.camera import SimCamera
from firmware.sim.render import check_distortion, render_frame

ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:"
# About the length of a signed resident code (HC1: + Base45 of a deflated COSE_Sign1).
CODE = "HC1:" + "".join(random.Random(7).choice(ALPHABET) for _ in range(300))
SCENARIO_EXAMPLE = {"rotate": 20, "blur": 1.0, "scale": 0.6}


@pytest.fixture(scope="module", params=["zxing", "pyzbar"])
def engine(request: pytest.FixtureRequest):
    return make_engine(request.param)


@pytest.mark.parametrize(
    "distort",
    [{}, SCENARIO_EXAMPLE, {"rotate": -35}, {"blur": 1.5}, {"noise": 15}, {"contrast": 0.35}],
)
def test_both_engines_read_rendered_codes(engine, distort) -> None:
    frame = render_frame(CODE, 640, 480, distort, seed=1)
    assert frame.shape == (480, 640)
    assert frame.dtype == np.uint8
    assert engine.decode(frame) == [CODE]


def test_engines_find_nothing_in_an_empty_frame(engine) -> None:
    assert engine.decode(render_frame(None, 1280, 720, seed=3)) == []


def test_engines_refuse_a_colour_frame(engine) -> None:
    with pytest.raises(DecoderError, match="grayscale uint8"):
        engine.decode(np.zeros((48, 64, 3), dtype=np.uint8))


def test_engine_names_and_an_unknown_engine() -> None:
    assert ZxingEngine().name == "zxing"
    assert PyzbarEngine().name == "pyzbar"
    with pytest.raises(DecoderError, match="unknown QR engine"):
        make_engine("quagga")  # type: ignore[arg-type]


def test_rendering_is_deterministic_by_seed_and_distortions_change_pixels() -> None:
    a = render_frame(CODE, 320, 240, {"noise": 10}, seed=5)
    b = render_frame(CODE, 320, 240, {"noise": 10}, seed=5)
    c = render_frame(CODE, 320, 240, {"noise": 10}, seed=6)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)
    assert not np.array_equal(
        render_frame(CODE, 320, 240), render_frame(CODE, 320, 240, {"rotate": 10})
    )


@pytest.mark.parametrize(
    ("distort", "message"),
    [
        ({"skew": 3}, "unknown key 'skew'"),
        ({"blur": "lots"}, "must be a number"),
        ({"scale": 0}, "scale: must be"),
        ({"noise": -1}, "noise: must be"),
        ({"rotate": float("nan")}, "finite"),
    ],
)
def test_bad_distortions_are_named(distort, message) -> None:
    with pytest.raises(SimulationError, match=message):
        check_distortion(distort)


def test_decode_image_file_reads_a_png_and_names_bad_files(tmp_path: Path) -> None:
    png = tmp_path / "code.png"
    segno.make_qr("HC1:FILE TEST").save(str(png), scale=6)
    assert decode_image_file(png) == ["HC1:FILE TEST"]
    assert decode_image_file(png, engine="pyzbar") == ["HC1:FILE TEST"]
    with pytest.raises(DecoderError, match="no such file"):
        decode_image_file(tmp_path / "missing.png")
    (tmp_path / "text.png").write_text("not a picture")
    with pytest.raises(DecoderError, match="not a picture"):
        decode_image_file(tmp_path / "text.png")


def test_sim_camera_paces_frames_and_shows_and_clears() -> None:
    cam = SimCamera(160, 120, fps=50, seed=1)
    empty = cam.read(1.0)
    cam.show("HC1:SHOWN", {"scale": 0.9})
    assert cam.showing == "HC1:SHOWN"
    shown = cam.read(1.0)
    assert make_engine("zxing").decode(shown) == ["HC1:SHOWN"]
    cam.clear()
    assert np.array_equal(cam.read(1.0), empty)
    start = time.monotonic()
    for _ in range(5):
        cam.read(1.0)
    assert cam.frames_delivered == 8
    assert time.monotonic() - start >= 4 * 0.02 * 0.9  # paced at 50 fps


def test_sim_camera_that_stops_delivering_raises_camera_error_then_resumes() -> None:
    cam = SimCamera(160, 120, fps=100)
    cam.stall()
    with pytest.raises(CameraError, match=r"no frame from the camera within 0\.1 s"):
        cam.read(0.1)
    cam.resume()
    assert cam.read(1.0).shape == (120, 160)
    cam.close()
    with pytest.raises(CameraError, match="closed"):
        cam.read(0.1)


@pytest.mark.skipif(
    importlib.util.find_spec("cv2") is not None, reason="OpenCV is installed on this machine"
)
def test_opencv_is_optional_with_a_clear_error() -> None:
    with pytest.raises(CameraError, match="opencv-python-headless"):
        OpenCVSource(0)


# -- the decode worker -------------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_repeats_within_the_suppression_time_are_dropped() -> None:
    clock = FakeClock()
    got: list[str] = []
    worker = DecodeWorker(
        SimCamera(), make_engine("zxing"), got.append, clock=clock, repeat_suppress_s=3.0
    )
    frame = render_frame("HC1:ONE", 320, 240)
    other = render_frame("HC1:TWO", 320, 240)
    assert worker.process(frame) == ["HC1:ONE"]
    for _ in range(10):  # held in front of the camera for 10 s: delivered once
        clock.t += 1.0
        assert worker.process(frame) == []
    assert worker.process(other) == ["HC1:TWO"]
    clock.t += 3.5  # gone for longer than the suppression time: the same code counts again
    assert worker.process(frame) == ["HC1:ONE"]
    worker.forget("HC1:ONE")
    assert worker.process(frame) == ["HC1:ONE"]
    worker.forget()
    assert worker.process(other) == ["HC1:TWO"]
    assert got == ["HC1:ONE", "HC1:TWO", "HC1:ONE", "HC1:ONE", "HC1:TWO"]
    assert worker.delivered == 5


def test_worker_thread_delivers_to_a_queue_and_stops_within_its_join() -> None:
    cam = SimCamera(320, 240, fps=30)
    q: queue.Queue[str] = queue.Queue()
    worker = DecodeWorker(cam, make_engine("zxing"), q, repeat_suppress_s=5.0)
    worker.start()
    try:
        cam.show("HC1:QUEUED")
        assert q.get(timeout=3.0) == "HC1:QUEUED"
        time.sleep(0.3)
        assert q.empty()  # held still: not delivered again
        assert worker.frames >= 3
    finally:
        worker.stop(2.0)
    assert not worker.running
    assert not any(t.name == "qr-decode" for t in threading.enumerate())


def test_a_camera_that_stops_delivering_is_reported_once_and_recovery_too() -> None:
    cam = SimCamera(320, 240, fps=30)
    faults: list[CameraError] = []
    recovered = threading.Event()
    got: queue.Queue[str] = queue.Queue()
    worker = DecodeWorker(
        cam,
        make_engine("pyzbar"),
        got,
        frame_timeout_s=0.1,
        on_fault=faults.append,
        on_recover=recovered.set,
    )
    worker.start()
    try:
        cam.stall()
        deadline = time.monotonic() + 3.0
        while not faults and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.4)  # several more timeouts: still one report
        assert len(faults) == 1
        assert "no frame" in str(faults[0])
        assert worker.fault is not None
        cam.show("HC1:AFTER")
        cam.resume()
        assert recovered.wait(3.0)
        assert got.get(timeout=3.0) == "HC1:AFTER"  # the station goes on
        assert worker.fault is None
    finally:
        worker.stop(2.0)


def test_a_frame_the_decoder_refuses_does_not_stop_the_worker() -> None:
    class Mixed:
        def __init__(self) -> None:
            self.n = 0

        def read(self, timeout: float) -> np.ndarray:
            self.n += 1
            time.sleep(0.01)
            if self.n % 2:
                return np.zeros((10, 10, 3), dtype=np.uint8)
            return render_frame("HC1:GOOD", 320, 240)

        def close(self) -> None:
            pass

    q: queue.Queue[str] = queue.Queue()
    worker = DecodeWorker(Mixed(), make_engine("zxing"), q)
    worker.start()
    try:
        assert q.get(timeout=3.0) == "HC1:GOOD"
    finally:
        worker.stop(2.0)


def test_a_failing_callback_is_logged_and_scanning_goes_on(caplog) -> None:
    cam = SimCamera(320, 240, fps=30)
    got: list[str] = []

    def sink(payload: str) -> None:
        got.append(payload)
        if payload == "HC1:FIRST":
            raise RuntimeError("the kiosk's handler broke")

    worker = DecodeWorker(cam, make_engine("zxing"), sink)
    worker.start()
    try:
        cam.show("HC1:FIRST")
        deadline = time.monotonic() + 3
        while not got and time.monotonic() < deadline:
            time.sleep(0.02)
        cam.show("HC1:SECOND")
        while len(got) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert got == ["HC1:FIRST", "HC1:SECOND"]
        assert worker.running
        assert "delivering a payload failed" in caplog.text
    finally:
        worker.stop(2.0)
