"""Building a Station on a real SQLite file for tests, with a clock the test moves."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from firmware.config import StationConfig, load_config
from kiosk_ui.core.codes import Claims, Reason, Verdict
from kiosk_ui.core.station import Station
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


def claims(
    sub: str, color: str = "green", name: str | None = None, cat: Sequence[str] = ()
) -> Claims:
    return Claims(
        iss="T01-HEALTH",
        sub=sub,
        exp=int(T0) + 86400,
        iat=int(T0) - 60,
        color=color,
        name=name,
        cat=tuple(cat),
    )


def resident(
    sub: str, color: str = "green", name: str | None = None, cat: Sequence[str] = ()
) -> Verdict:
    """A verified code's verdict, as the verifier returns it."""
    return Verdict.ok(claims(sub, color, name, cat))


def rejected(reason: str) -> Verdict:
    return Verdict.rejected(Reason(reason))


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
