"""`station kiosk`: the full-screen touch kiosk (``--windowed`` for a window on a desktop).

Kivy reads its settings from the environment when it is first imported, so this module
sets them (:func:`prepare_kivy`) and only then imports the app. ``--hash-pin`` turns a staff
PIN or badge code read from standard input into a line for ``kiosk.staff_pin_file``.
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys
import tempfile
from pathlib import Path

from firmware.config import DEFAULT_CONFIG_PATH, load_config
from kiosk_ui.core.staff_lock import hash_secret
from kiosk_ui.errors import KivyError

SCREEN_SIZE = (800, 480)
_PREPARED = "SAMPLING_STATION_KIVY"  # the official 7" Raspberry Pi touch display


def default_kivy_home() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "sampling-station" / "kivy"


def prepare_kivy(
    *, window: bool, fullscreen: bool = False, size: tuple[int, int] = SCREEN_SIZE
) -> None:
    """Configure Kivy through its environment; call before anything imports Kivy.

    Without ``window`` the kiosk draws into an offscreen SDL window (drills, screenshots,
    tests on machines without a display). Kivy's own settings file lives in a private
    directory, so the kiosk never reads a user's ``~/.kivy``.
    """
    env = os.environ
    if "kivy" in sys.modules:
        if env.get(_PREPARED) == ("window" if window else "offscreen"):
            return
        raise KivyError("Kivy was imported before the kiosk configured it")
    env[_PREPARED] = "window" if window else "offscreen"
    env.setdefault("KIVY_HOME", str(default_kivy_home()))
    try:
        Path(env["KIVY_HOME"]).mkdir(parents=True, exist_ok=True)
    except OSError:
        # A service user without a writable home: Kivy's few files go to /tmp instead.
        env["KIVY_HOME"] = tempfile.mkdtemp(prefix="station-kivy-")
    env["KIVY_NO_ARGS"] = "1"
    env.setdefault("KIVY_NO_CONSOLELOG", "1")
    env.setdefault("KIVY_NO_FILELOG", "1")
    env.setdefault("KIVY_WINDOW", "sdl2")
    env.setdefault("KIVY_LOG_MODE", "PYTHON")
    if not window:
        env["SDL_VIDEODRIVER"] = "offscreen"
    env["KCFG_GRAPHICS_WIDTH"] = str(size[0])
    env["KCFG_GRAPHICS_HEIGHT"] = str(size[1])
    env["KCFG_GRAPHICS_FULLSCREEN"] = "auto" if fullscreen else "0"
    env["KCFG_GRAPHICS_RESIZABLE"] = "0" if fullscreen else "1"
    env["KCFG_KIVY_EXIT_ON_ESCAPE"] = "0"
    env.setdefault("KCFG_KIVY_LOG_LEVEL", "warning")
    env["KCFG_INPUT_MOUSE"] = "mouse,disable_multitouch"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config", type=Path, default=DEFAULT_CONFIG_PATH, help="station configuration file"
    )
    parser.add_argument(
        "--windowed", action="store_true", help="a window instead of the full screen"
    )
    parser.add_argument(
        "--hash-pin",
        action="store_true",
        help="read a staff PIN or badge code and print its line for kiosk.staff_pin_file",
    )


def run(args: argparse.Namespace) -> int:
    if args.hash_pin:
        secret = (
            getpass.getpass("PIN or badge code: ")
            if sys.stdin.isatty()
            else sys.stdin.readline().strip()
        )
        if len(secret) < 4:
            print("station kiosk: a PIN has at least 4 characters", file=sys.stderr)
            return 2
        print(hash_secret(secret))
        return 0
    config = load_config(args.config)
    prepare_kivy(window=True, fullscreen=config.kiosk.fullscreen and not args.windowed)
    # Only now: Kivy configures itself from the environment on first import.
    from kiosk_ui.screens.running import run_kiosk  # noqa: PLC0415

    return run_kiosk(config)
