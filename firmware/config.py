"""The station configuration: one TOML file, typed, validated before anything starts.

Every key is documented in docs/configuration.md with its default; a test checks that the
document and these models agree. Unknown keys are errors, so a typo never silently becomes a
default. Relative paths are resolved against the directory of the file itself.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, Self

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from firmware.errors import ConfigError

DEFAULT_CONFIG_PATH = Path("/etc/sampling-station/station.toml")

Ident = Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


class StationSection(_Section):
    id: Ident
    township: Ident
    role: Literal["checkin", "sampling", "combined"] = "combined"


class HealthCodeSection(_Section):
    trusted_keys: Path
    leeway_s: int = Field(60, ge=0, le=3600)


class SamplingSection(_Section):
    pool_size: int = Field(10, ge=1, le=20)
    fever_threshold_c: float = Field(37.3, ge=35.0, le=40.0)
    resample_window_h: float = Field(12, ge=0, le=24 * 14)
    plausible_min_c: float = Field(34.0, ge=20.0, le=40.0)
    plausible_max_c: float = Field(42.5, ge=38.0, le=50.0)
    max_tries: int = Field(3, ge=1, le=10)
    tube_pattern: str = "^TB[0-9A-Z]{6,30}$"
    box_pattern: str = "^BX[0-9A-Z]{4,30}$"

    @field_validator("tube_pattern", "box_pattern")
    @classmethod
    def _pattern(cls, v: str) -> str:
        try:
            re.compile(v)
        except re.error as exc:
            raise ValueError(f"not a regular expression: {exc}") from None
        return v

    def with_overrides(self, overrides: Mapping[str, Any]) -> dict[str, Any]:
        """This section's values with the gateway's overrides on top, not yet validated.

        ``overrides`` are keyed ``sampling.<key>`` (the ``settings_override`` table); keys of
        other sections or unknown keys are left out. ``SamplingSection.model_validate`` of the
        result checks the whole as it checks the file.
        """
        values = self.model_dump()
        for key, value in overrides.items():
            section, _, name = key.partition(".")
            if section == "sampling" and name in values:
                values[name] = value
        return values

    @model_validator(mode="after")
    def _range(self) -> Self:
        if not self.plausible_min_c < self.fever_threshold_c < self.plausible_max_c:
            raise ValueError(
                "fever_threshold_c must lie between plausible_min_c and plausible_max_c"
            )
        return self


class BrokerSection(_Section):
    url: str
    allow_plaintext: bool = False
    end_to_end_ack: bool = False
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    username: str | None = None
    password_file: Path | None = None
    keepalive_s: int = Field(30, ge=5, le=600)
    inflight_window: int = Field(20, ge=1, le=1000)
    reconnect_min_s: float = Field(0.5, gt=0, le=60)
    reconnect_max_s: float = Field(30.0, gt=0, le=3600)
    ack_timeout_s: float = Field(30.0, gt=0, le=3600)
    ack_window: int = Field(1000, ge=1, le=100_000)
    telemetry_interval_s: float = Field(60.0, gt=0, le=3600)

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        if not re.fullmatch(r"mqtts?://[^/:\s]+(:\d{1,5})?/?", v):
            raise ValueError("must look like mqtts://host:port or mqtt://host:port")
        return v

    @model_validator(mode="after")
    def _tls(self) -> Self:
        if self.url.startswith("mqtt://") and not self.allow_plaintext:
            raise ValueError(
                "mqtt:// sends sample records in clear text; use mqtts:// "
                "or set allow_plaintext = true (drills and development only)"
            )
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file go together")
        if self.reconnect_min_s > self.reconnect_max_s:
            raise ValueError("reconnect_min_s must not exceed reconnect_max_s")
        return self

    @property
    def tls(self) -> bool:
        return self.url.startswith("mqtts://")

    @property
    def host(self) -> str:
        return self.url.split("://", 1)[1].rstrip("/").rsplit(":", 1)[0]

    @property
    def port(self) -> int:
        rest = self.url.split("://", 1)[1].rstrip("/")
        if ":" in rest:
            return int(rest.rsplit(":", 1)[1])
        return 8883 if self.tls else 1883


class StorageSection(_Section):
    path: Path = Path("/var/lib/sampling-station/station.db")
    retention_days: float = Field(14, ge=0, le=365)
    min_free_mb: int = Field(64, ge=0)


class CameraSection(_Section):
    source: Literal["picamera2", "opencv"] = "picamera2"
    device: int = Field(0, ge=0)
    width: int = Field(640, ge=160, le=4096)
    height: int = Field(480, ge=120, le=4096)
    fps: int = Field(15, ge=1, le=60)


class DecoderSection(_Section):
    engine: Literal["zxing", "pyzbar"] = "zxing"
    repeat_suppress_s: float = Field(3.0, ge=0, le=60)


class ThermometerSection(_Section):
    bus: int = Field(1, ge=0)
    address: int = Field(0x5A, ge=0x03, le=0x77)
    calibration_offset_c: float = Field(0.0, ge=-5.0, le=5.0)
    presence_delta_c: float = Field(3.0, ge=0.0, le=20.0)
    stable_window: int = Field(3, ge=1, le=20)
    stable_spread_c: float = Field(0.3, gt=0.0, le=5.0)
    retries: int = Field(3, ge=0, le=10)


class RtcSection(_Section):
    """A DS3231 real-time clock on I2C, when the station has one."""

    fitted: bool = False
    bus: int = Field(1, ge=0)
    address: int = Field(0x68, ge=0x03, le=0x77)


I2C_PINS = (2, 3)


class LightsSection(_Section):
    """BCM pin numbers of the lane lights and the buzzer."""

    main_red: int = 17
    main_amber: int = 27
    main_green: int = 22
    green_lane: int = 23
    isolation_beacon: int = 24
    buzzer: int = 25

    @model_validator(mode="after")
    def _distinct(self) -> Self:
        seen: dict[int, str] = {}
        for name, pin in self.model_dump().items():
            if not 0 <= pin <= 27:
                raise ValueError(f"{name} = {pin}: the Pi header has GPIO 0 to 27")
            if pin in I2C_PINS:
                raise ValueError(
                    f"{name} = {pin}: GPIO 2 and 3 carry the thermometer's I2C bus (SDA, SCL)"
                )
            if pin in seen:
                raise ValueError(f"{name} and {seen[pin]} both use GPIO {pin}")
            seen[pin] = name
        return self


class ScannerSection(_Section):
    device: str = "auto"
    min_length: int = Field(6, ge=1, le=64)


class HardwareSection(_Section):
    backend: Literal["pi", "sim"] = "pi"
    camera: CameraSection = CameraSection()
    decoder: DecoderSection = DecoderSection()
    thermometer: ThermometerSection = ThermometerSection()
    lights: LightsSection = LightsSection()
    scanner: ScannerSection = ScannerSection()
    rtc: RtcSection = RtcSection()


class KioskSection(_Section):
    language: Literal["zh", "en"] = "zh"
    fullscreen: bool = True
    result_timeout_s: float = Field(6.0, ge=1, le=120)
    staff_lock_s: float = Field(120.0, ge=10, le=3600)
    staff_pin_file: Path | None = None
    id_hash_key_file: Path | None = None
    speech: bool = False


class StationConfig(_Section):
    station: StationSection
    health_code: HealthCodeSection
    sampling: SamplingSection = SamplingSection()
    broker: BrokerSection
    storage: StorageSection = StorageSection()
    hardware: HardwareSection = HardwareSection()
    kiosk: KioskSection = KioskSection()

    @property
    def source(self) -> str:
        return f"urn:sampling:{self.station.township}:{self.station.id}"

    @property
    def topic_prefix(self) -> str:
        return f"sampling/{self.station.township}/{self.station.id}"


def _resolve_paths(data: dict[str, Any], base: Path) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            out[key] = _resolve_paths(value, base)
        elif isinstance(value, str) and _is_path_key(key) and value:
            p = Path(value).expanduser()
            out[key] = p if p.is_absolute() else base / p
        else:
            out[key] = value
    return out


def _is_path_key(key: str) -> bool:
    return key in {"trusted_keys", "path"} or key.endswith("_file")


def describe_error(
    err: dict[str, Any], where: str = "", reference: str = "docs/configuration.md"
) -> str:
    """One pydantic validation error as a sentence naming the key (``where`` prefixes it)."""
    key = where + (".".join(str(p) for p in err["loc"]) or "(file)")
    kind = err["type"]
    if kind == "extra_forbidden":
        return f"{key}: unknown key (check its spelling against {reference})"
    if kind == "missing":
        return f"{key}: required key is missing"
    msg = str(err["msg"]).removeprefix("Value error, ")
    got = err.get("input")
    if got is not None and not isinstance(got, dict | list):
        return f"{key}: {msg} (got {got!r})"
    return f"{key}: {msg}"


def parse_config(data: dict[str, Any], base: Path, origin: str = "<config>") -> StationConfig:
    """Validate an already-parsed TOML table; relative paths resolve against ``base``."""
    try:
        return StationConfig.model_validate(_resolve_paths(data, base))
    except ValidationError as exc:
        problems = [describe_error(dict(e)) for e in exc.errors()]
        raise ConfigError(origin, problems) from None


def read_toml(path: Path, error: type[ConfigError] = ConfigError) -> dict[str, Any]:
    """Read a TOML file, or raise ``error`` saying why it cannot be read."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise error(str(path), [f"cannot read the file: {exc.strerror}"]) from None
    except UnicodeDecodeError:
        raise error(str(path), ["the file is not UTF-8 text"]) from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise error(str(path), [f"not valid TOML: {exc}"]) from None


_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
_ESCAPES = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\t": "\\t", "\r": "\\r"}
_I64 = range(-(2**63), 2**63)


def dump_toml(data: dict[str, Any]) -> str:
    """``data`` as a TOML document that ``tomllib`` reads back equal, None values left out.

    Values are strings, booleans, integers (64-bit), floats, lists and tables (dicts with string
    keys). A list of tables becomes an array of tables (``[[name]]``); a table inside another
    list is written inline. Anything else raises TypeError naming the key, as does None inside
    a list (leaving it out would change the list).
    """
    if not isinstance(data, dict):
        raise TypeError(f"a TOML document is a table, not {type(data).__name__}")
    return _toml_table(data, ())


def _toml_table(data: dict[str, Any], path: tuple[str, ...]) -> str:
    lines: list[str] = []
    nested: list[str] = []
    for k, v in data.items():
        here = (*path, _toml_key(k, path))
        if v is None:
            continue
        if isinstance(v, dict):
            nested.append(f"\n[{'.'.join(here)}]\n" + _toml_table(v, here))
        elif isinstance(v, list) and v and all(isinstance(x, dict) for x in v):
            nested.extend(f"\n[[{'.'.join(here)}]]\n" + _toml_table(x, here) for x in v)
        else:
            lines.append(f"{here[-1]} = {_toml_value(v, here)}\n")
    return "".join(lines) + "".join(nested)


def _toml_key(key: object, path: tuple[str, ...]) -> str:
    if not isinstance(key, str):
        raise TypeError(f"cannot write {'.'.join(path) or 'the document'} to TOML: key {key!r}")
    return key if _BARE_KEY.fullmatch(key) else _toml_string(key, path)


def _toml_value(v: Any, path: tuple[str, ...]) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int) and v in _I64:
        return str(int(v))
    if isinstance(v, float):
        return repr(float(v))  # valid TOML for every float, inf and nan included
    if isinstance(v, str):
        return _toml_string(v, path)
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x, path) for x in v) + "]"
    if isinstance(v, dict):
        items = (
            f"{_toml_key(k, path)} = {_toml_value(x, (*path, k))}"
            for k, x in v.items()
            if x is not None
        )
        return "{" + ", ".join(items) + "}"
    if v is None:
        raise TypeError(f"cannot write {'.'.join(path)} to TOML: None inside a list")
    what = "an integer outside 64 bits" if isinstance(v, int) else type(v).__name__
    raise TypeError(f"cannot write {'.'.join(path)} to TOML: {what} ({v!r})")


def _toml_string(s: str, path: tuple[str, ...]) -> str:
    out = []
    for ch in s:
        if ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif ch < " " or ch == "\x7f":
            out.append(f"\\u{ord(ch):04x}")
        elif "\ud800" <= ch <= "\udfff":
            raise TypeError(f"cannot write {'.'.join(path)} to TOML: a lone surrogate in {s!r}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def load_config(path: Path | str) -> StationConfig:
    """Read and validate a station configuration file, or raise ConfigError naming each key."""
    path = Path(path)
    return parse_config(read_toml(path), path.resolve().parent, str(path))
