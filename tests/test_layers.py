"""The rooms of the project and what each may import, checked on every module's source.

docs/architecture.md draws the same table; a test below keeps the two in step. Imports are
read with ``ast`` from every line of a module, lazy ones inside functions included, so a rule
cannot be dodged by importing late.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("firmware", "kiosk_ui", "edge_agent", "provisioning", "hardware_tests")


@dataclass(frozen=True)
class Room:
    """A package or a part of one, the rooms of ours it may import and the libraries it may not."""

    name: str  # a module prefix: "kiosk_ui.core" holds kiosk_ui/core/*
    ours: tuple[str, ...]  # prefixes of our modules it may import (its own room always)
    doc: str  # the rule in words, as docs/architecture.md states it


ROOMS = (
    Room("firmware", (), "nothing of ours (`firmware/sim/`, the simulated devices, is part of it)"),
    Room("edge_agent", ("firmware",), "`firmware` (configuration and the exception tree)"),
    Room(
        "edge_agent.gateway",
        ("edge_agent.db", "edge_agent.errors", "edge_agent.link", "firmware"),
        "the agent's `db`, `errors` and `link`, and `firmware`; never the kiosk",
    ),
    Room(
        "hardware_tests",
        ("firmware", "edge_agent.link", "edge_agent.session", "edge_agent.errors"),
        "`firmware`, and the agent's own MQTT link (`edge_agent.link`, `.session`) for the broker",
    ),
    Room(
        "provisioning",
        ("firmware.config", "firmware.errors"),
        "`firmware.config` and `firmware.errors` only; pyinfra runs in a process of its own",
    ),
    Room(
        "kiosk_ui.core",
        (
            "kiosk_ui.errors",
            "firmware",
            *(f"edge_agent.{m}" for m in ("outbox", "db", "errors", "events", "recall_list")),
        ),
        "`kiosk_ui.errors`, `firmware`, the outbox side of `edge_agent`; no other part of "
        "the kiosk",
    ),
    Room(
        "kiosk_ui",
        (
            "kiosk_ui.core",
            "kiosk_ui.errors",
            "kiosk_ui.panel",
            "kiosk_ui.workers",
            "firmware",
            *(
                f"edge_agent.{m}"
                for m in ("outbox", "db", "damage", "errors", "events", "recall_list")
            ),
        ),
        "the root, workers, panel, speech and commands: `kiosk_ui.core`, `firmware`, the outbox "
        "side of `edge_agent`; never the screens or the drills",
    ),
    Room(
        "kiosk_ui.kiosk_cli",
        ("kiosk_ui", "firmware", "edge_agent.db", "edge_agent.damage", "edge_agent.errors"),
        "`station kiosk`: as the kiosk, and the screens it starts",
    ),
    Room(
        "kiosk_ui.screens",
        (
            "kiosk_ui.core",
            "kiosk_ui.errors",
            "kiosk_ui.kiosk",
            "kiosk_ui.workers",
            "kiosk_ui.panel",
            "kiosk_ui.speech",
            "firmware",
        ),
        "`kiosk_ui.core`, the kiosk's root, workers, panel and speech, `firmware`; never "
        "the drills",
    ),
    Room(
        "kiosk_ui.drills",
        ("kiosk_ui", "firmware", "edge_agent"),
        "anything (a drill runs the whole station, its agent and a gateway store)",
    ),
)

# Heavy or device libraries, and the only rooms that may import them.
LIBRARIES = {
    "kivy": ("kiosk_ui.screens",),
    "paho": ("edge_agent.link",),
    "gpiozero": ("firmware",),
    "smbus2": ("firmware",),
    "picamera2": ("firmware",),
    "cv2": ("firmware",),
    "evdev": ("firmware",),
    "pyzbar": ("firmware",),
    "zxingcpp": ("firmware",),
    "numpy": ("firmware", "kiosk_ui.screens"),
    "pyinfra": ("provisioning.executor",),
    "psycopg": ("edge_agent.gateway",),
    "psycopg_pool": ("edge_agent.gateway",),
}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            # `from kiosk_ui import core` names a module too
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def _within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def _modules() -> dict[str, set[str]]:
    return {
        _module_name(path): _imports(path)
        for package in PACKAGES
        for path in sorted((ROOT / package).rglob("*.py"))
    }


MODULES = _modules()


def _room_of(module: str) -> Room | None:
    best = None
    for room in ROOMS:
        if _within(module, room.name) and (best is None or len(room.name) > len(best.name)):
            best = room
    return best


def _ours(name: str) -> bool:
    return name.split(".", maxsplit=1)[0] in PACKAGES


def test_every_module_keeps_to_its_room() -> None:
    broken = []
    for module, imports in MODULES.items():
        room = _room_of(module)
        if room is None:
            continue
        allowed = (room.name, *room.ours)
        broken += [
            f"{module} imports {name}"
            for name in sorted(imports)
            if _ours(name)
            and not any(_within(name, prefix) for prefix in allowed)
            # `from kiosk_ui import core` is also read as the package itself
            and name not in PACKAGES
        ]
    assert broken == []


def test_heavy_libraries_stay_in_their_adapters() -> None:
    broken = [
        f"{module} imports {name}"
        for module, imports in MODULES.items()
        for name in sorted(imports)
        if (owners := LIBRARIES.get(name.split(".")[0])) is not None
        and not any(_within(module, owner) for owner in owners)
    ]
    assert broken == []


def test_no_package_imports_the_kiosk() -> None:
    broken = [
        f"{module} imports {name}"
        for module, imports in MODULES.items()
        if not _within(module, "kiosk_ui")
        for name in sorted(imports)
        if _within(name, "kiosk_ui")
    ]
    # The one exception is the `station` entry point itself, kiosk_ui.cli, which dispatches by
    # module name (a string), so it does not appear here either.
    assert broken == []


def test_the_rules_are_not_vacuous() -> None:
    """Each room has modules, and the import reader sees real imports (a guard on the guards)."""
    for room in ROOMS:
        assert any(_within(m, room.name) for m in MODULES), room.name
    assert "kivy.app" in MODULES["kiosk_ui.screens.app"] or any(
        _within(name, "kivy")
        for m, names in MODULES.items()
        if _within(m, "kiosk_ui.screens")
        for name in names
    )
    assert any(_within(name, "paho") for name in MODULES["edge_agent.link"])


def test_the_architecture_guide_states_each_rule() -> None:
    guide = (ROOT / "docs" / "architecture.md").read_text()
    for room in ROOMS:
        assert f"| `{room.name}` | {room.doc} |" in guide, room.name
    for room in (
        *PACKAGES,
        "kiosk_ui/core",
        "kiosk_ui/screens",
        "kiosk_ui/drills",
        "edge_agent/gateway",
    ):
        docstring = ast.get_docstring(ast.parse((ROOT / room / "__init__.py").read_text()))
        assert docstring is not None and "import" in docstring.lower(), f"{room}/__init__.py"


@pytest.mark.parametrize("command", [["agent", "--help"], ["gateway", "--help"]])
def test_agent_and_gateway_never_load_kivy_or_numpy(command: list[str]) -> None:
    probe = (
        "import sys\n"
        "from kiosk_ui.cli import main\n"
        "try:\n"
        f"    main({command!r})\n"
        "except SystemExit:\n"
        "    pass\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('kivy', 'numpy', 'kiosk_ui')"
        " and not m.startswith('kiosk_ui.cli') and m != 'kiosk_ui')\n"
        "print('LOADED', heavy)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        check=True,
    ).stdout
    assert "usage:" in out
    assert "LOADED []" in out
