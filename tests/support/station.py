"""Building a Station on a real SQLite file for tests, with a clock the test moves."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from firmware.config import StationConfig, load_config
from kiosk_ui.station import Station
from tests.support.config import write_config

T0 = 1_795_420_800.0  # 2026-11-23 08:00 UTC


@dataclass
class Clock:
    """A clock that only moves when the test says so."""

    now: float = T0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass(frozen=True)
class Claims:
    sub: str
    color: str
    name: str | None = None
    cat: tuple[str, ...] = ()
    iss: str = "TEST"
    exp: int = 0
    iat: int = 0


@dataclass(frozen=True)
class Verdict:
    valid: bool
    reason: str | None = None
    claims: Claims | None = None


def resident(
    sub: str, color: str = "green", name: str | None = None, cat: Sequence[str] = ()
) -> Verdict:
    """A verified code's verdict, as the verifier returns it."""
    return Verdict(True, None, Claims(sub, color, name, tuple(cat)))


def rejected(reason: str) -> Verdict:
    return Verdict(False, reason, None)


@dataclass
class Rig:
    station: Station
    clock: Clock
    config: StationConfig
    directory: Path
    events: list[dict[str, Any]] = field(default_factory=list)


def make_config(directory: Path, sampling: dict[str, Any] | None = None) -> StationConfig:
    over: dict[str, Any] = {"sampling": sampling} if sampling else {}
    return load_config(write_config(directory, over))


def open_station(
    directory: Path, sampling: dict[str, Any] | None = None, verifier: Any = None
) -> Rig:
    config = make_config(directory, sampling)
    clock = Clock()
    return Rig(Station.open(config, verifier, clock=clock), clock, config, directory)
