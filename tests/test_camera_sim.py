"""The simulated camera's render helper: codes are rendered in a child process, the frames
are the renderer's own, and a helper that dies or hangs costs a log line, never a code."""

from __future__ import annotations

import logging
import math
import multiprocessing
import os
import signal
import subprocess
import sys
import threading
import time
from fractions import Fraction
from pathlib import Path

import numpy as np
import psutil
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from firmware.errors import SimulationError
from firmware.qr import make_engine
from firmware.sim.camera import SimCamera, _render_helper_main
from firmware.sim.render import _lens, render_frame

W, H = 320, 240
SEED = 7
DISTORT = {"rotate": 15.0, "noise": 3.0, "scale": 0.9}


def seed_of(n: int) -> int:
    """The seed of the ``n``-th code shown to a camera made with ``SEED``."""
    return SEED * 100_003 + n


def ready_camera() -> tuple[SimCamera, int]:
    cam = SimCamera(W, H, fps=100, seed=SEED)
    pid = cam.start_helper(wait=60)
    assert pid is not None, "the render helper did not start within 60 s"
    return cam, pid


def gone(pid: int, timeout: float = 10.0) -> bool:
    """The process ``pid`` has exited (and is not a zombie of ours)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        time.sleep(0.02)
    return False


@pytest.mark.timeout(90)
def test_codes_are_rendered_in_a_helper_process_that_close_stops() -> None:
    cam, pid = ready_camera()
    try:
        assert pid != os.getpid()
        assert psutil.Process(pid).ppid() == os.getpid()
        cam.show("HC1:APART", DISTORT)
        assert (cam.renders_in_helper, cam.renders_here) == (1, 0)
        assert cam.showing == "HC1:APART"
        frame = cam.read(1.0)
        assert np.array_equal(frame, render_frame("HC1:APART", W, H, DISTORT, seed=seed_of(1)))
        assert make_engine("zxing").decode(frame) == ["HC1:APART"]
        # Ctrl-C in a terminal reaches the helper too; the camera's owner stops it, not that.
        os.kill(pid, signal.SIGINT)
        time.sleep(0.2)
        cam.show("HC1:STILL")
        assert (cam.renders_in_helper, cam.renders_here) == (2, 0)
        assert make_engine("zxing").decode(cam.read(1.0)) == ["HC1:STILL"]
    finally:
        cam.close()
    assert gone(pid)
    assert cam.helper_pid is None
    # Closed: a show still changes nothing for the worse, and no new helper is started.
    assert cam.start_helper(wait=0.5) is None
    cam.show("HC1:LATE")
    assert cam.renders_here == 1
    assert cam.helper_pid is None


@pytest.mark.timeout(90)
def test_a_code_shown_before_the_helper_is_ready_is_rendered_here_the_same() -> None:
    cam = SimCamera(W, H, fps=100, seed=SEED)
    try:
        cam.show("HC1:EARLY", DISTORT)  # the helper has only just been started
        assert (cam.renders_in_helper, cam.renders_here) == (0, 1)
        early = cam.read(1.0)
        assert np.array_equal(early, render_frame("HC1:EARLY", W, H, DISTORT, seed=seed_of(1)))
        assert cam.start_helper(wait=60) is not None
        cam.show("HC1:EARLY", DISTORT)  # held up again: the next seed, rendered apart
        assert (cam.renders_in_helper, cam.renders_here) == (1, 1)
        again = cam.read(1.0)
        assert np.array_equal(again, render_frame("HC1:EARLY", W, H, DISTORT, seed=seed_of(2)))
        assert not np.array_equal(again, early)  # the noise of a new moment
    finally:
        cam.close()


@pytest.mark.timeout(90)
def test_a_helper_that_dies_is_logged_and_the_code_is_still_shown(
    caplog: pytest.LogCaptureFixture,
) -> None:
    cam, pid = ready_camera()
    try:
        os.kill(pid, signal.SIGKILL)
        assert gone(pid)
        with caplog.at_level(logging.WARNING, logger="firmware.camera"):
            cam.show("HC1:AFTER", DISTORT)
        assert "render helper failed" in caplog.text
        assert (cam.renders_in_helper, cam.renders_here) == (0, 1)
        frame = cam.read(1.0)
        assert np.array_equal(frame, render_frame("HC1:AFTER", W, H, DISTORT, seed=seed_of(1)))
        assert cam.helper_pid is None
        assert cam.start_helper(wait=0.5) is None  # not started again behind the log's back
        cam.show("HC1:NEXT")
        assert cam.renders_here == 2
        assert make_engine("zxing").decode(cam.read(1.0)) == ["HC1:NEXT"]
    finally:
        cam.close()


@pytest.mark.timeout(90)
def test_a_helper_that_hangs_is_stopped_after_the_timeout_and_the_code_rendered_here(
    caplog: pytest.LogCaptureFixture,
) -> None:
    cam = SimCamera(W, H, fps=100, seed=SEED, render_timeout_s=0.5)
    pid = cam.start_helper(wait=60)
    assert pid is not None
    try:
        os.kill(pid, signal.SIGSTOP)
        start = time.monotonic()
        with caplog.at_level(logging.WARNING, logger="firmware.camera"):
            cam.show("HC1:HUNG")
        took = time.monotonic() - start
        assert 0.5 <= took < 20
        assert "no frame within 0.5 s" in caplog.text
        assert (cam.renders_in_helper, cam.renders_here) == (0, 1)
        assert cam.showing == "HC1:HUNG"
        assert make_engine("zxing").decode(cam.read(1.0)) == ["HC1:HUNG"]
        assert gone(pid)  # stopped for good, not left behind stopped
    finally:
        cam.close()


def test_a_helper_whose_camera_is_gone_ends_quietly() -> None:
    # A camera closed while its helper was still starting: the helper's "ready" meets a
    # closed pipe. It must end without a traceback on the kiosk's stderr.
    ours, theirs = multiprocessing.Pipe()
    ours.close()
    before = signal.getsignal(signal.SIGINT)
    try:
        _render_helper_main(theirs)  # raised BrokenPipeError before
    finally:
        signal.signal(signal.SIGINT, before)
        theirs.close()


def test_a_camera_told_to_render_here_starts_no_helper() -> None:
    before = {p.pid for p in psutil.Process().children()}
    cam = SimCamera(W, H, fps=100, seed=SEED, render_apart=False)
    try:
        cam.read(1.0)
        cam.show("HC1:HERE", DISTORT)
        assert (cam.renders_in_helper, cam.renders_here) == (0, 1)
        assert cam.start_helper(wait=0.5) is None
        assert {p.pid for p in psutil.Process().children()} <= before
        frame = cam.read(1.0)
        assert np.array_equal(frame, render_frame("HC1:HERE", W, H, DISTORT, seed=seed_of(1)))
    finally:
        cam.close()


UNGUARDED = """
import logging
from firmware.sim.camera import SimCamera

logging.basicConfig(level=logging.WARNING)
cam = SimCamera(160, 120, seed=3)  # no `if __name__ == "__main__"`: the helper runs this too
print("ready:", cam.start_helper(wait=60))
cam.show("HC1:UNGUARDED")
print("rendered here:", cam.renders_here, "showing:", cam.showing)
cam.close()
"""


@pytest.mark.timeout(120)
def test_a_helper_that_cannot_start_is_logged_and_codes_are_rendered_here(
    tmp_path: Path,
) -> None:
    script = tmp_path / "unguarded.py"
    script.write_text(UNGUARDED)
    root = Path(__file__).resolve().parents[1]
    out = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        timeout=100,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(root)},
        check=False,
    )
    assert out.returncode == 0, out.stderr
    assert "ready: None" in out.stdout
    assert "rendered here: 1 showing: HC1:UNGUARDED" in out.stdout
    assert "render helper failed (it exited before it was ready)" in out.stderr


def test_a_wrong_distortion_is_refused_by_show_and_nothing_changes() -> None:
    cam = SimCamera(W, H, fps=100, seed=SEED)
    try:
        empty = cam.read(1.0)
        with pytest.raises(SimulationError, match="distort: unknown key 'tilt'"):
            cam.show("HC1:TILTED", {"tilt": 3})
        with pytest.raises(SimulationError, match=r"distort\.scale: must be 0\.05-3\.0"):
            cam.show("HC1:HUGE", {"scale": 9})
        assert cam.showing is None
        assert (cam.renders_in_helper, cam.renders_here) == (0, 0)
        assert np.array_equal(cam.read(1.0), empty)
    finally:
        cam.close()


@pytest.mark.timeout(90)
def test_shows_from_several_threads_each_leave_a_whole_frame_of_one_code() -> None:
    cam, _ = ready_camera()
    texts = [f"HC1:T{t}N{n}" for t in range(4) for n in range(3)]
    errors: list[BaseException] = []

    def shower(mine: list[str]) -> None:
        try:
            for text in mine:
                cam.show(text)
        except BaseException as exc:  # a failure in a thread must fail the test
            errors.append(exc)

    threads = [threading.Thread(target=shower, args=(texts[t * 3 : t * 3 + 3],)) for t in range(4)]
    try:
        for th in threads:
            th.start()
        for th in threads:
            th.join(30)
        assert not any(th.is_alive() for th in threads)
        assert errors == []
        assert cam.renders_in_helper + cam.renders_here == len(texts)
        showing = cam.showing
        assert showing in texts
        # The frame in front of the camera is the code its text says, not another's.
        assert make_engine("zxing").decode(cam.read(1.0)) == [showing]
    finally:
        cam.close()


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(min_value=29, max_value=185),  # QR versions 1-40 with the quiet zone
    side=st.integers(min_value=8, max_value=1200),
    seed=st.integers(min_value=0, max_value=2**32 - 1),
)
def test_the_lens_averages_a_4x_enlargement_of_the_sheet(n: int, side: int, seed: int) -> None:
    """The renderer's lens equals what it stands for: enlarge the sheet to 4x the pixels,
    each sub-pixel taking the module under its centre, then average each 4x4 block."""
    sheet = np.random.default_rng(seed).choice([25.0, 235.0], size=(n, n)).astype(np.float32)
    # Exact: a sub-pixel centre exactly on a module's edge belongs to the module after it.
    under = [math.floor((k + Fraction(1, 2)) * n / (side * 4)) for k in range(side * 4)]
    big = sheet.astype(np.float64)[np.ix_(under, under)]
    expected = big.reshape(side, 4, side, 4).mean(axis=(1, 3))
    seen = _lens(sheet, side)
    assert seen.shape == (side, side)
    assert seen.dtype == np.float32
    assert np.allclose(seen, expected, atol=1e-4)
