"""The fleet inventory: one TOML file naming every station, validated before anything connects.

``[fleet]`` holds what every station shares (the pinned host keys, the release, the issuer
trust file) and ``[fleet.defaults]``, merged under each ``[[station]]`` entry. Each station's
``config`` table becomes its ``/etc/sampling-station/station.toml``; it is validated here with
the same model the station itself loads (``firmware.config``), so a typo is found on the
technician's laptop, not on the device. Relative paths are relative to the inventory file.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
from pathlib import Path, PurePosixPath
from typing import Annotated, Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from firmware.config import StationConfig, describe_error, parse_config, read_toml
from firmware.errors import ConfigError
from provisioning.errors import InventoryError

Ident = Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
UnixName = Annotated[str, Field(pattern=r"^[a-z_][a-z0-9_-]{0,31}$")]
PackageName = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9+.-]+$")]

# Where things live on a station (before the station's `root` prefix).
ETC_DIR = PurePosixPath("/etc/sampling-station")
CONFIG_PATH = ETC_DIR / "station.toml"
TRUST_PATH = ETC_DIR / "issuers.jwks.json"
MQTT_DIR = ETC_DIR / "mqtt"
STATE_DIR = PurePosixPath("/var/lib/sampling-station")
OPT_DIR = PurePosixPath("/opt/sampling-station")
RELEASES_DIR = OPT_DIR / "releases"
CURRENT_LINK = OPT_DIR / "current"

DEFAULT_PACKAGES = [
    "python3-venv",
    "python3-pip",
    "python3-picamera2",
    "python3-lgpio",
    "libzbar0",
    "fonts-noto-cjk",
    "mosquitto-clients",
    "i2c-tools",
    "systemd-timesyncd",
]
DEFAULT_GROUPS = ["video", "render", "input", "i2c", "gpio"]

# Keys of the station configuration that provisioning sets itself, from the inventory.
_MANAGED = {
    ("station", "id"): "set `id` in the [[station]] entry",
    ("station", "township"): "set `township` in the [[station]] entry",
    ("health_code", "trusted_keys"): "set `trust_file` in [fleet]",
    ("broker", "ca_file"): "set `mqtt.ca_file` in the [[station]] entry",
    ("broker", "cert_file"): "set `mqtt.cert_file` in the [[station]] entry",
    ("broker", "key_file"): "set `mqtt.key_file` in the [[station]] entry",
    ("broker", "username"): "set `mqtt.username` in the [[station]] entry",
    ("broker", "password_file"): "set `mqtt.password_file` in the [[station]] entry",
}


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class MqttCredentials(_Model):
    """Where the station's MQTT secrets are on the technician's machine (never printed)."""

    username: str | None = None
    password_file: Path | None = None
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None

    @model_validator(mode="after")
    def _pairs(self) -> Self:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file go together")
        if (self.username is None) != (self.password_file is None):
            raise ValueError("username and password_file go together")
        return self

    def files(self) -> dict[str, Path]:
        """Local files by their name on the station."""
        names = {
            "ca.crt": self.ca_file,
            "client.crt": self.cert_file,
            "client.key": self.key_file,
            "password": self.password_file,
        }
        return {k: v for k, v in names.items() if v is not None}


class Release(_Model):
    """The release to deploy: a wheel (or sdist) of this project."""

    artifact: Path
    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,80}$")] | None = None
    python: str = "/usr/bin/python3"
    pip_options: list[str] = []
    keep: int = Field(3, ge=2, le=20)

    def release_name(self) -> str:
        """``<version>-<first 12 hex of the artifact's sha256>`` unless ``name`` is given."""
        if self.name:
            return self.name
        m = re.match(r"^[A-Za-z0-9_.]+?-(\d[^-]*?)(?:-py|\.tar\.gz$|\.zip$)", self.artifact.name)
        version = m.group(1) if m else "release"
        return f"{version}-{sha256_file(self.artifact)[:12]}"


class Station(_Model):
    """One ``[[station]]`` entry after ``[fleet.defaults]`` was merged under it."""

    id: Ident
    township: Ident
    address: str = Field(min_length=1, max_length=253)
    port: int = Field(22, ge=1, le=65535)
    user: UnixName = "pi"
    key: Path | None = None
    sudo: bool | None = None
    root: Path | None = None
    mode: Literal["live", "image"] | None = None
    packages: list[PackageName] = DEFAULT_PACKAGES
    service_user: UnixName = "sampling"
    groups: list[UnixName] | None = None  # default: the device platform's list
    ntp: list[str] = []
    fallback_ntp: list[str] = ["0.debian.pool.ntp.org", "1.debian.pool.ntp.org"]
    hardware_watchdog_s: int = Field(15, ge=0, le=600)
    kiosk_watchdog_s: int = Field(30, ge=5, le=600)
    # Local time of the daily retention purge (`station db purge`), HH:MM.
    purge_at: Annotated[str, Field(pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$")] = "03:00"
    connect_timeout_s: int = Field(10, ge=1, le=300)
    reboot_delay_s: float = Field(10.0, ge=0, le=600)
    reboot_timeout_s: float = Field(300.0, ge=1, le=3600)
    health_settle_s: float = Field(5.0, ge=0, le=600)
    selftest_timeout_s: float = Field(120.0, ge=1, le=3600)
    mqtt: MqttCredentials = MqttCredentials()
    config: dict[str, Any] = {}

    @property
    def effective_mode(self) -> Literal["live", "image"]:
        """A station with a ``root`` is an SD-card image unless it says ``mode = "live"``."""
        if self.mode is not None:
            return self.mode
        return "image" if self.root is not None and str(self.root) != "/" else "live"

    @property
    def local(self) -> bool:
        """``address = "@local"``: this machine itself (an SD card mounted here)."""
        return self.address == "@local"

    @property
    def use_sudo(self) -> bool:
        if self.sudo is not None:
            return self.sudo
        return False if self.local else self.user != "root"

    @property
    def prefix(self) -> str:
        """The station's filesystem root as a prefix for absolute paths ('' for '/')."""
        return "" if self.root is None else str(self.root).rstrip("/")


class Fleet(_Model):
    known_hosts: Path
    trust_file: Path
    release: Release
    defaults: dict[str, Any] = {}


class Inventory(_Model):
    path: Path
    fleet: Fleet
    stations: list[Station]
    configs: dict[str, StationConfig]
    config_data: dict[str, dict[str, Any]]

    def select(self, limit: list[str] | None) -> list[Station]:
        if not limit:
            return list(self.stations)
        known = {s.id for s in self.stations}
        unknown = [i for i in limit if i not in known]
        if unknown:
            raise InventoryError(
                str(self.path), [f"--limit {i}: no such station in the inventory" for i in unknown]
            )
        return [s for s in self.stations if s.id in limit]


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def _describe(err: dict[str, Any], where: str) -> str:
    return describe_error(err, where, "docs/provisioning.md")


def _resolve(path: Path, base: Path) -> Path:
    path = path.expanduser()
    return path if path.is_absolute() else base / path


def _resolve_paths(station: Station, base: Path) -> Station:
    mqtt = station.mqtt.model_copy(
        update={
            k: _resolve(v, base)
            for k, v in station.mqtt.model_dump().items()
            if isinstance(v, Path)
        }
    )
    update: dict[str, Any] = {"mqtt": mqtt}
    if station.key is not None:
        update["key"] = _resolve(station.key, base)
    if station.root is not None:
        update["root"] = _resolve(station.root, base)
    return station.model_copy(update=update)


def station_config_data(station: Station) -> dict[str, Any]:
    """The station.toml content (as a table) for ``station``, with the managed keys set."""
    data = _merge({}, station.config)
    data["station"] = {"id": station.id, "township": station.township, **data.get("station", {})}
    data["health_code"] = {**data.get("health_code", {}), "trusted_keys": str(TRUST_PATH)}
    broker = dict(data.get("broker", {}))
    files = station.mqtt.files()
    for key, name in (
        ("ca_file", "ca.crt"),
        ("cert_file", "client.crt"),
        ("key_file", "client.key"),
        ("password_file", "password"),
    ):
        if name in files:
            broker[key] = str(MQTT_DIR / name)
    if station.mqtt.username is not None:
        broker["username"] = station.mqtt.username
    data["broker"] = broker
    return data


def _check_station(station: Station, raw_config: dict[str, Any]) -> list[str]:
    where = f"station {station.id}: "
    problems: list[str] = []
    for (section, key), hint in _MANAGED.items():
        table = raw_config.get(section)
        if isinstance(table, dict) and key in table:
            problems.append(f"{where}config.{section}.{key}: provisioning sets this key; {hint}")
    if station.root is not None and not station.root.is_dir():
        problems.append(f"{where}root: {station.root} is not a directory")
    if station.key is None and not station.local:
        problems.append(f"{where}key: required key is missing (the SSH private key)")
    elif station.key is not None and not station.key.is_file():
        problems.append(f"{where}key: cannot read the SSH key {station.key}")
    for name, path in station.mqtt.model_dump().items():
        if isinstance(path, Path) and not path.is_file():
            problems.append(f"{where}mqtt.{name}: cannot read {path}")
    return problems


def parse_inventory(data: dict[str, Any], base: Path, origin: str) -> Inventory:
    """Validate an already-parsed inventory; relative paths resolve against ``base``."""
    problems: list[str] = []
    unknown = sorted(set(data) - {"fleet", "station"})
    problems += [f"{k}: unknown top-level key (expected [fleet] and [[station]])" for k in unknown]
    fleet = _parse_fleet(data.get("fleet", {}), base, problems)
    raw_stations = data.get("station", [])
    if not isinstance(raw_stations, list) or not raw_stations:
        problems.append("station: the inventory lists no [[station]] entries")
        raw_stations = []
    defaults = fleet.defaults if fleet is not None else {}
    stations: list[Station] = []
    configs: dict[str, StationConfig] = {}
    config_data: dict[str, dict[str, Any]] = {}
    seen: set[str] = set()
    for index, raw in enumerate(raw_stations):
        parsed = _parse_station(
            raw, index, defaults=defaults, base=base, seen=seen, problems=problems
        )
        if parsed is not None:
            station, cfg, table = parsed
            stations.append(station)
            configs[station.id] = cfg
            config_data[station.id] = table
    if problems or fleet is None:
        raise InventoryError(origin, problems or ["the inventory has no [fleet] section"])
    return Inventory(
        path=Path(origin), fleet=fleet, stations=stations, configs=configs, config_data=config_data
    )


def _parse_fleet(raw: Any, base: Path, problems: list[str]) -> Fleet | None:
    """``[fleet]`` with its paths resolved; None (and ``problems`` say why) when invalid."""
    try:
        fleet = Fleet.model_validate(raw)
    except ValidationError as exc:
        problems += [_describe(dict(e), "fleet.") for e in exc.errors()]
        return None
    fleet = fleet.model_copy(
        update={
            "known_hosts": _resolve(fleet.known_hosts, base),
            "trust_file": _resolve(fleet.trust_file, base),
            "release": fleet.release.model_copy(
                update={"artifact": _resolve(fleet.release.artifact, base)}
            ),
        }
    )
    if not fleet.known_hosts.is_file():
        problems.append(
            f"fleet.known_hosts: cannot read {fleet.known_hosts} (host keys are pinned: "
            "collect them with ssh-keyscan on a trusted network, see docs/provisioning.md)"
        )
    if not fleet.release.artifact.is_file():
        problems.append(f"fleet.release.artifact: cannot read {fleet.release.artifact}")
    try:
        json.loads(fleet.trust_file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        problems.append(f"fleet.trust_file: {fleet.trust_file} is not a readable JSON file")
    return fleet


def _parse_station(
    raw: Any,
    index: int,
    *,
    defaults: dict[str, Any],
    base: Path,
    seen: set[str],
    problems: list[str],
) -> tuple[Station, StationConfig, dict[str, Any]] | None:
    """One ``[[station]]`` over the fleet's defaults, with its station.toml validated; None
    (and ``problems`` say why) when invalid."""
    label = raw.get("id", f"#{index + 1}") if isinstance(raw, dict) else f"#{index + 1}"
    where = f"station {label}: "
    if not isinstance(raw, dict):
        problems.append(f"{where}each [[station]] must be a table")
        return None
    merged = _merge(defaults, raw)
    try:
        station = _resolve_paths(Station.model_validate(merged), base)
    except ValidationError as exc:
        problems += [_describe(dict(e), where) for e in exc.errors()]
        return None
    if station.id in seen:
        problems.append(f"{where}id: another station has the same id")
        return None
    seen.add(station.id)
    own = _check_station(station, merged.get("config", {}))
    problems += own
    if own:
        return None
    table = station_config_data(station)
    try:
        cfg = parse_config(table, Path(str(ETC_DIR)), f"station {station.id}")
    except ConfigError as exc:
        problems += [f"{where}config.{p}" for p in exc.problems]
        return None
    return station, cfg, table


def load_inventory(path: Path | str) -> Inventory:
    """Read and validate an inventory file, or raise InventoryError naming station and key."""
    path = Path(path)
    return parse_inventory(read_toml(path, InventoryError), path.resolve().parent, str(path))
