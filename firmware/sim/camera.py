"""The simulated camera: films whatever a drill holds up to it, as real pixels.

:class:`SimCamera` renders QR text with :func:`~firmware.sim.render.render_frame` (the
distortions of a drill, deterministically from a seed) and delivers the frames at the
configured rate, so the real decoder runs on real pixels. ``show(text, distort)``,
``clear()``, ``stall()`` / ``resume()`` (stop delivering frames, like a camera whose cable
came loose). Codes are rendered in a child process, the render helper (see the class).
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import signal
import threading
import time
from collections.abc import Mapping
from multiprocessing.connection import Connection
from multiprocessing.connection import wait as mp_wait
from typing import Any

from firmware.camera import Frame
from firmware.errors import CameraError, SimulationError
from firmware.sim.render import check_distortion, render_frame

log = logging.getLogger(__name__)

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
    try:
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
    except BrokenPipeError:
        return  # the camera closed while this helper started or rendered: nothing to say


class _HelperFailed(SimulationError):
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
