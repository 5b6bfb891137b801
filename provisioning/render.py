"""What a station should look like, as data: every file with its content, mode and owner.

Pure functions of the inventory (no SSH, no pyinfra): the runner compares this desired state
with the facts it reads from the station and yields only the commands still needed.
"""

from __future__ import annotations

import string
from dataclasses import dataclass
from importlib import resources
from pathlib import Path, PurePosixPath
from typing import Literal

from firmware.config import dump_toml
from provisioning.inventory import (
    CONFIG_PATH,
    CURRENT_LINK,
    DEFAULT_GROUPS,
    ETC_DIR,
    MQTT_DIR,
    OPT_DIR,
    RELEASES_DIR,
    STATE_DIR,
    TRUST_PATH,
    Inventory,
    Station,
)

UNIT_DIR = PurePosixPath("/etc/systemd/system")
KIOSK_UNIT = "sampling-kiosk.service"
AGENT_UNIT = "sampling-agent.service"
SERVICES = (AGENT_UNIT, KIOSK_UNIT)
# The daily retention purge: a oneshot service started only by its timer.
PURGE_SERVICE = "sampling-purge.service"
PURGE_TIMER = "sampling-purge.timer"
TIMERS = (PURGE_TIMER,)
# Every unit file a station gets, and the units the deploy enables (the purge service has no
# [Install] section: its timer starts it).
UNITS = (*SERVICES, PURGE_SERVICE, PURGE_TIMER)
ENABLED_UNITS = (*SERVICES, *TIMERS)
# Units systemd ships that a station must have enabled: time sync and "wait until synced",
# without which time-sync.target is reached before the clock is set.
SYSTEM_UNITS = ("systemd-timesyncd.service", "systemd-time-wait-sync.service")
WATCHDOG_DROPIN = PurePosixPath("/etc/systemd/system.conf.d/sampling-station-watchdog.conf")
TIMESYNC_DROPIN = PurePosixPath("/etc/systemd/timesyncd.conf.d/sampling-station.conf")
MODULES_FILE = PurePosixPath("/etc/modules-load.d/sampling-station.conf")
UDEV_DIR = PurePosixPath("/etc/udev/rules.d")
BOOT_CONFIGS = (PurePosixPath("/boot/firmware/config.txt"), PurePosixPath("/boot/config.txt"))
BLOCK_BEGIN = "# BEGIN sampling-station (managed by `station provision`; edits are replaced)"
BLOCK_END = "# END sampling-station"

# Used when the device platform ships no fragment of its own (firmware/boot/*.txt).
DEFAULT_BOOT_FRAGMENT = "dtparam=i2c_arm=on\ncamera_auto_detect=1\n"

Kind = Literal["config", "unit", "dropin", "secret", "data", "boot"]


@dataclass(frozen=True)
class FileSpec:
    """One file the station must have. ``content`` is rendered text; ``source`` a local file."""

    path: PurePosixPath
    mode: int
    owner: str  # user name on the station
    group: str
    kind: Kind
    content: bytes | None = None
    source: Path | None = None

    @property
    def secret(self) -> bool:
        return self.kind == "secret"


@dataclass(frozen=True)
class DirSpec:
    path: PurePosixPath
    mode: int
    owner: str
    group: str


@dataclass(frozen=True)
class Desired:
    """Everything a station gets, before the station's root prefix."""

    dirs: list[DirSpec]
    files: list[FileSpec]
    boot_fragment: str


def _template(name: str) -> string.Template:
    text = resources.files("provisioning").joinpath("units", name).read_text(encoding="utf-8")
    return string.Template(text)


def render_unit(name: str, station: Station, current: str | None = None) -> str:
    """A unit or drop-in from provisioning/units with this station's values."""
    return _template(name).substitute(
        service_user=station.service_user,
        state_dir=str(STATE_DIR),
        current=current or str(CURRENT_LINK),
        config_path=str(CONFIG_PATH),
        kiosk_watchdog_s=station.kiosk_watchdog_s,
        purge_at=station.purge_at,
        hardware_watchdog_s=station.hardware_watchdog_s,
        ntp=" ".join(station.ntp),
        fallback_ntp=" ".join(station.fallback_ntp),
    )


def platform_boot_files() -> tuple[str | None, dict[str, bytes]]:
    """The device platform's boot fragment and udev rules (firmware/boot), if it ships them."""
    try:
        boot = resources.files("firmware").joinpath("boot")
        if not boot.is_dir():
            return None, {}
        entries = sorted(boot.iterdir(), key=lambda p: p.name)
    except (ModuleNotFoundError, FileNotFoundError):
        return None, {}
    fragment = None
    rules: dict[str, bytes] = {}
    for entry in entries:
        if entry.name.endswith(".txt") and fragment is None:
            fragment = entry.read_text(encoding="utf-8")
        elif entry.name.endswith(".rules"):
            rules[entry.name] = entry.read_bytes()
    return fragment, rules


def platform_groups() -> list[str]:
    """The service user's groups from the device platform (firmware/boot/groups.conf)."""
    try:
        text = resources.files("firmware").joinpath("boot", "groups.conf").read_text("utf-8")
    except (ModuleNotFoundError, FileNotFoundError):
        return []
    return [g.strip() for g in text.splitlines() if g.strip() and not g.startswith("#")]


def service_groups(station: Station) -> list[str]:
    """The inventory's ``groups``, else the platform's plus ``render`` (the kiosk's GPU)."""
    if station.groups is not None:
        return list(station.groups)
    groups = platform_groups() or list(DEFAULT_GROUPS)
    return groups + [g for g in ("render",) if g not in groups]


def desired_state(inventory: Inventory, station: Station) -> Desired:
    user = station.service_user
    cfg = dump_toml(inventory.config_data[station.id]).encode()
    header = (
        f"# Station {station.township}/{station.id}: written by `station provision`. "
        "Change the inventory, not this file.\n"
    ).encode()
    dirs = [
        DirSpec(ETC_DIR, 0o750, "root", user),
        DirSpec(MQTT_DIR, 0o750, "root", user),
        DirSpec(STATE_DIR, 0o750, user, user),
        DirSpec(OPT_DIR, 0o755, "root", "root"),
        DirSpec(RELEASES_DIR, 0o755, "root", "root"),
    ]
    files = [
        FileSpec(CONFIG_PATH, 0o640, "root", user, "config", content=header + cfg),
        FileSpec(TRUST_PATH, 0o640, "root", user, "config", source=inventory.fleet.trust_file),
    ]
    for name, local in station.mqtt.files().items():
        public = name.endswith(".crt")
        files.append(
            FileSpec(MQTT_DIR / name, 0o644 if public else 0o640, "root", user,
                     "data" if public else "secret", source=local)
        )  # fmt: skip
    for unit in UNITS:
        files.append(
            FileSpec(UNIT_DIR / unit, 0o644, "root", "root", "unit",
                     content=render_unit(unit, station).encode())
        )  # fmt: skip
    files += [
        FileSpec(WATCHDOG_DROPIN, 0o644, "root", "root", "dropin",
                 content=render_unit("watchdog.conf", station).encode()),
        FileSpec(TIMESYNC_DROPIN, 0o644, "root", "root", "dropin",
                 content=render_unit("timesyncd.conf", station).encode()),
        FileSpec(MODULES_FILE, 0o644, "root", "root", "boot",
                 content=render_unit("modules.conf", station).encode()),
    ]  # fmt: skip
    fragment, rules = platform_boot_files()
    for name, body in rules.items():
        files.append(FileSpec(UDEV_DIR / name, 0o644, "root", "root", "boot", content=body))
    return Desired(dirs=dirs, files=files, boot_fragment=fragment or DEFAULT_BOOT_FRAGMENT)
