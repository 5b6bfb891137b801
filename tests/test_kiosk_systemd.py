"""`station kiosk` under systemd: READY=1, WATCHDOG=1 and STOPPING=1 on a real notify socket.

The unit is ``Type=notify`` with ``WatchdogSec``. These tests bind the datagram socket
systemd would, point ``NOTIFY_SOCKET`` at it, set ``WATCHDOG_USEC`` to one second (a ping
every half second) and read what the kiosk (a real offscreen Kivy window) sends.

The second test runs the kiosk in a child process (``python -m tests.test_kiosk_systemd
CONFIG``) that blocks its UI thread, then stalls its core thread, and sends a marker line
to the same socket from the blocked thread just before and just after each; datagrams on
one socket keep their order, so the markers say exactly which pings came while a thread
was stuck.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.drills import drill_config

ROOT = Path(__file__).resolve().parents[1]
WATCHDOG_USEC = 1_000_000  # pings every 0.5 s
CORE_STALL_S = 1.0  # the child's bound on one call of the core thread
UI_BLOCK_S = 3.0
CORE_BLOCK_S = 6.0
CALM_S = 2.0
PING = "WATCHDOG=1"


# -- the child process ------------------------------------------------------------------------


def child_main(config_path: Path) -> int:
    """The kiosk with simulated devices, its UI thread blocked and then its core stalled."""
    from kiosk_ui.kiosk_cli import prepare_kivy  # noqa: PLC0415

    prepare_kivy(window=False)
    from firmware.config import load_config  # noqa: PLC0415
    from firmware.hardware import build_hardware  # noqa: PLC0415
    from firmware.systemd import Notifier  # noqa: PLC0415
    from kiosk_ui.screens.running import Running, serve  # noqa: PLC0415

    config = load_config(config_path)
    running = Running(config, build_hardware(config), core_stall_s=CORE_STALL_S)
    marker = Notifier()
    ready = threading.Event()
    running.app.on_ready.append(ready.set)
    failed: list[BaseException] = []

    def mark(name: str) -> None:
        first = running.app.first_frame_at
        marker.notify(f"X_PHASE={name}\nX_FIRST_FRAME={first}\nX_AT={time.monotonic()}")

    def blocked(name: str, seconds: float) -> None:
        mark(f"{name}_start")
        time.sleep(seconds)
        mark(f"{name}_end")

    def drive() -> None:
        try:
            if not ready.wait(60):
                raise TimeoutError("the kiosk never became ready")
            mark("ready_seen")
            time.sleep(CALM_S)
            running.screens.call(lambda: blocked("ui", UI_BLOCK_S))
            time.sleep(CALM_S)
            running.core.call(lambda: blocked("core", CORE_BLOCK_S), timeout=CORE_BLOCK_S + 10)
            time.sleep(CALM_S)
            mark("done")
        except BaseException as exc:
            failed.append(exc)
            mark(f"failed {exc!r}")

    driver = threading.Thread(target=drive, name="systemd-test", daemon=True)
    driver.start()
    code = serve(running)  # until the test's SIGTERM
    driver.join(10)
    return 1 if failed else code


# -- the tests --------------------------------------------------------------------------------


class NotifySocket:
    """The datagram socket systemd listens on, each message with its arrival time."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.messages: list[tuple[float, str]] = []

    def wait_for(self, line: str, timeout: float, proc: subprocess.Popen[bytes]) -> None:
        """Read messages until one holds ``line``; fail if the kiosk exits first."""
        deadline = time.monotonic() + timeout
        while not any(line in m for _, m in self.messages):
            left = deadline - time.monotonic()
            assert left > 0, f"no {line!r} within {timeout} s: {self.texts()[-8:]}"
            assert proc.poll() is None, f"the kiosk exited ({proc.returncode}) before {line!r}"
            self.sock.settimeout(min(left, 0.5))
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            self.messages.append((time.monotonic(), data.decode()))

    def collect(self, seconds: float) -> None:
        """Read whatever arrives during ``seconds``."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                return
            self.messages.append((time.monotonic(), data.decode()))

    def texts(self) -> list[str]:
        return [m for _, m in self.messages]

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def notify() -> Iterator[NotifySocket]:
    # A short path: AF_UNIX addresses hold at most 107 bytes.
    directory = Path(tempfile.mkdtemp(prefix="notify-"))
    sock = NotifySocket(directory / "s")
    try:
        yield sock
    finally:
        sock.close()
        shutil.rmtree(directory, ignore_errors=True)


def _env(tmp_path: Path, notify: NotifySocket) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    env.pop("WATCHDOG_PID", None)
    env.update(
        SDL_VIDEODRIVER="offscreen",
        KIVY_HOME=str(tmp_path / "kivy"),
        XDG_CACHE_HOME=str(tmp_path / "cache"),
        NOTIFY_SOCKET=str(notify.path),
        WATCHDOG_USEC=str(WATCHDOG_USEC),
    )
    return env


def _start(tmp_path: Path, notify: NotifySocket, log: Path, *args: str) -> subprocess.Popen[bytes]:
    """A kiosk child process (``python -m ARGS``) under the test's notify socket."""
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", *args],
            cwd=ROOT,
            env=_env(tmp_path, notify),
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def _stop(proc: subprocess.Popen[bytes], notify: NotifySocket, log: Path) -> int:
    proc.send_signal(signal.SIGTERM)
    code = proc.wait(20)
    notify.collect(0.5)  # what it sent before it exited is in the socket's queue
    assert "STOPPING=1" in notify.texts(), log.read_text()[-3000:]
    return code


def _phase(text: str) -> str | None:
    for line in text.splitlines():
        if line.startswith("X_PHASE="):
            return line.removeprefix("X_PHASE=")
    return None


def _between(texts: list[str], start: str, end: str) -> list[str]:
    phases = [_phase(m) for m in texts]
    i, j = phases.index(start), phases.index(end)
    return texts[i + 1 : j]


# The loop's thread is made to die on purpose: its unhandled exception is the point.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_no_ping_while_the_core_thread_is_not_running_or_has_died(
    notify: NotifySocket,
) -> None:
    from firmware.systemd import Notifier  # noqa: PLC0415
    from kiosk_ui.workers import LoopThread, Watchdog  # noqa: PLC0415

    core = LoopThread()
    dog = Watchdog(Notifier(str(notify.path)), core, stall_s=5.0)
    assert not dog.ping()  # not started yet
    core.start()
    try:
        assert core.call(lambda: 42) == 42
        assert dog.ping()

        def die() -> None:
            raise SystemExit("the loop's thread ends")

        core.post(die)
        deadline = time.monotonic() + 5
        while dog.healthy() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert not dog.ping() and dog.withheld
    finally:
        core.stop()
    notify.collect(0.2)
    assert notify.texts() == [PING]


@pytest.mark.kivy
@pytest.mark.timeout(120)
def test_station_kiosk_says_ready_pings_the_watchdog_and_says_stopping(
    tmp_path: Path, notify: NotifySocket
) -> None:
    config = drill_config(tmp_path / "station", "mqtt://127.0.0.1:9")
    log = tmp_path / "kiosk.log"
    proc = _start(
        tmp_path, notify, log, "kiosk_ui.cli", "kiosk", "--config", str(config), "--windowed"
    )
    try:
        notify.wait_for("READY=1", 60, proc)
        ready_at = notify.messages[-1][0]
        notify.collect(3.0)  # about two pings a second meanwhile
        assert proc.poll() is None, log.read_text()[-3000:]
        code = _stop(proc, notify, log)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
    texts = notify.texts()
    ready = texts.index(next(m for m in texts if m.startswith("READY=1")))
    assert "STATUS=kiosk " in texts[ready] and "showing idle" in texts[ready]
    assert PING not in texts[:ready], "a watchdog ping before the kiosk was ready"
    pings = [at for at, m in notify.messages if m == PING and at >= ready_at]
    assert len(pings) >= 4, (texts, log.read_text()[-2000:])
    assert texts[-1] == "STOPPING=1"
    assert code == 0, log.read_text()[-3000:]


@pytest.mark.kivy
@pytest.mark.timeout(150)
def test_watchdog_pings_stop_while_the_ui_or_the_core_thread_is_stuck(
    tmp_path: Path, notify: NotifySocket
) -> None:
    config = drill_config(tmp_path / "station", "mqtt://127.0.0.1:9")
    log = tmp_path / "kiosk.log"
    proc = _start(tmp_path, notify, log, "tests.test_kiosk_systemd", str(config))
    try:
        notify.wait_for("X_PHASE=done", 90, proc)
        code = _stop(proc, notify, log)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
    assert code == 0, log.read_text()[-3000:]
    texts = notify.texts()
    assert not any((_phase(m) or "").startswith("failed") for m in texts), texts
    # READY=1 came after the window had drawn its first frame.
    ready_at, ready_text = next((at, m) for at, m in notify.messages if m.startswith("READY=1"))
    seen = next(m for m in texts if _phase(m) == "ready_seen")
    first_frame = float(seen.split("X_FIRST_FRAME=")[1].split("\n")[0])
    assert first_frame < ready_at
    assert PING not in texts[: texts.index(ready_text)]
    # Calm: pings every half second.
    assert _between(texts, "ready_seen", "ui_start").count(PING) >= 2
    # The UI thread blocked for 3 s: not one ping until it runs again, then they resume.
    assert _between(texts, "ui_start", "ui_end").count(PING) == 0
    assert _between(texts, "ui_end", "core_start").count(PING) >= 2
    # The core thread stuck in one call for 6 s while the UI runs: pings go on for the
    # first second (the bound), then stop (12 would have come), and resume after it.
    assert _between(texts, "core_start", "core_end").count(PING) <= 5
    assert _between(texts, "core_end", "done").count(PING) >= 2, (texts, log.read_text()[-2000:])
    assert texts[-1] == "STOPPING=1"


if __name__ == "__main__":
    raise SystemExit(child_main(Path(sys.argv[1])))
