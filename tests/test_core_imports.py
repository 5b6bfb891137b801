"""The station core runs without the heavy libraries: loading it loads none of them.

``kiosk_ui.core`` names ``firmware.lights.State`` for type checking only; this proves at
run time, in a fresh interpreter, that the core brings in no Kivy, paho, gpiozero, smbus2 or
numpy (numpy costs a third of a second and some 24 MB at start).
"""

from __future__ import annotations

import subprocess
import sys

HEAVY = ("kivy", "paho", "gpiozero", "smbus2", "numpy")
CORE = (
    "kiosk_ui.core.station",
    "kiosk_ui.core.flow",
    "kiosk_ui.core.staff_lock",
    "kiosk_ui.core.messages",
    "kiosk_ui.errors",
    "edge_agent.events",
)


def test_the_core_loads_no_heavy_library() -> None:
    program = (
        "import importlib, sys\n"
        f"for name in {CORE!r}: importlib.import_module(name)\n"
        f"print(sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r}))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, check=True, timeout=120
    )
    assert out.stdout.strip() == "[]", out.stdout
