"""Drills: the scenario file format of ``station simulate`` (shared spec ``scenario.md``).

A scenario is a JSON object with a ``name`` and a list of ``steps``. Parsing checks every
step completely before anything runs, so a typo in step 40 is reported before step 1 has
touched the database: unknown keys, a missing value, a value of the wrong type. Every
message names the step by its number and its index in ``steps``.

Beyond the spec's steps (``scan``, ``show``, ``touch``, ``wait``, ``expect``) the station
understands:

- ``{"id": "11010519491231002X", "temperature": 36.6}``: a resident without a code; staff
  type the national ID number (``temperature`` as for ``show``);
- ``{"gateway": "offline"}`` / ``{"gateway": "online"}``: the link to the township broker
  goes down / comes back (the kiosk keeps working; the agent delivers the backlog later);
- ``{"thermometer": "fault"}`` / ``{"thermometer": "ok"}``: the infrared module stops
  answering / works again; while it is faulty the steps' temperatures are entered by hand;
- ``{"results": "tube,result\\nTB...,positive\\n"}``: the lab's result file comes back (the
  drill plays the township gateway: ``kiosk_ui.drills.lab``) and the recall list it makes
  reaches the station;
- ``{"recall": {"sub" or "id": ..., "reason": ..., "action": ..., "pool": ..., "op": ...}}``:
  one recall change arrives, numbered after the version the station holds (``id``: a
  national ID number, turned into its ``sub`` with the station's key; ``op`` ``add`` by
  default, ``remove`` takes no ``action``);
- ``{"recall_version": N}``: wait (up to 20 s) until the station holds the recall list's
  version N, as when a real gateway sends it;
- ``{"clock": {"set": "1970-01-01T00:00:00Z", "jump_s": 3600, "ntp": false}}``: the
  simulated system clock is set or jumps, and NTP has (or has not) synchronised it
  (``kiosk_ui.drills.clock``);
- in ``expect``: ``screen`` (the kiosk screen: ``idle``, ``result``, ``wait``,
  ``isolation``, ``staff``, ...), ``alerts`` (how many alerts were raised so far) and
  ``clock`` (``trusted`` or ``untrusted``, as the kiosk last judged it) and ``link``
  (``online`` while the edge agent is connected to the broker, ``offline``
  otherwise, as the sampler panel shows it).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kiosk_ui.drills.clock import ClockStep, parse_clock
from kiosk_ui.errors import DrillError

TOUCH_ACTIONS = ("seal", "void", "remove", "dispatch")
DISTORT_KEYS = ("rotate", "blur", "scale", "noise")
EXPECT_KEYS = (
    "decision",
    "reason",
    "lane",
    "tube",
    "position",
    "open_tube_count",
    "lights",
    "screen",
    "alerts",
    "link",
    "recall_version",
    "clock",
)
# primary key -> the keys allowed beside it
STEP_KEYS: dict[str, tuple[str, ...]] = {
    "scan": (),
    "show": ("temperature", "distort"),
    "id": ("temperature",),
    "touch": ("reason", "resident", "box"),
    "wait": (),
    "expect": (),
    "gateway": (),
    "thermometer": (),
    "results": (),
    "recall": (),
    "recall_version": (),
    "clock": (),
}
RECALL_KEYS = ("sub", "id", "reason", "action", "pool", "op")


@dataclass(frozen=True)
class Distort:
    rotate: float = 0.0
    blur: float = 0.0
    scale: float = 1.0
    noise: float = 0.0


@dataclass(frozen=True)
class Scan:
    text: str

    def describe(self) -> str:
        return f"scan {self.text}"


@dataclass(frozen=True)
class Show:
    text: str
    temperatures: tuple[float, ...] = ()
    distort: Distort | None = None

    def describe(self) -> str:
        return f"show {self.text[:24]}{'...' if len(self.text) > 24 else ''}"


@dataclass(frozen=True)
class ManualId:
    number: str
    temperatures: tuple[float, ...] = ()

    def describe(self) -> str:
        return "id ******"  # a national ID number is never printed


@dataclass(frozen=True)
class Touch:
    action: str
    reason: str | None = None
    resident: str | None = None
    box: str | None = None

    def describe(self) -> str:
        return f"touch {self.action}"


@dataclass(frozen=True)
class Wait:
    seconds: float

    def describe(self) -> str:
        return f"wait {self.seconds}"


@dataclass(frozen=True)
class Expect:
    checks: dict[str, Any] = field(default_factory=dict)

    def describe(self) -> str:
        return "expect"


@dataclass(frozen=True)
class Gateway:
    online: bool

    def describe(self) -> str:
        return f"gateway {'online' if self.online else 'offline'}"


@dataclass(frozen=True)
class ThermometerState:
    ok: bool

    def describe(self) -> str:
        return f"thermometer {'ok' if self.ok else 'fault'}"


@dataclass(frozen=True)
class Results:
    text: str

    def describe(self) -> str:
        return f"results ({max(0, len(self.text.strip().splitlines()) - 1)} rows)"


@dataclass(frozen=True)
class RecallChange:
    change: dict[str, str]

    def describe(self) -> str:
        return f"recall {self.change.get('op', 'add')} ({self.change.get('reason', '')})"


@dataclass(frozen=True)
class RecallVersion:
    version: int

    def describe(self) -> str:
        return f"recall_version {self.version}"


Step = (
    Scan
    | Show
    | ManualId
    | Touch
    | Wait
    | Expect
    | Gateway
    | ThermometerState
    | Results
    | RecallChange
    | RecallVersion
    | ClockStep
)


@dataclass(frozen=True)
class Scenario:
    name: str
    steps: tuple[Step, ...]


def _where(i: int) -> str:
    return f"step {i + 1} (steps[{i}])"


def _number(value: Any) -> bool:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(float(value))
    )


def _text(value: Any, i: int, key: str) -> str:
    if not isinstance(value, str) or not value:
        raise DrillError(f"{_where(i)}: {key!r} must be a non-empty string, got {value!r}")
    return value


def _temperatures(value: Any, i: int) -> tuple[float, ...]:
    values = value if isinstance(value, list) else [value]
    if not values or not all(_number(v) for v in values):
        raise DrillError(
            f"{_where(i)}: 'temperature' must be a number or a non-empty list of numbers, "
            f"got {value!r}"
        )
    return tuple(float(v) for v in values)


def _distort(value: Any, i: int) -> Distort:
    if not isinstance(value, dict):
        raise DrillError(f"{_where(i)}: 'distort' must be an object, got {value!r}")
    unknown = sorted(set(value) - set(DISTORT_KEYS))
    if unknown:
        raise DrillError(
            f"{_where(i)}: unknown key {unknown[0]!r} in 'distort' "
            f"(allowed: {', '.join(DISTORT_KEYS)})"
        )
    for k, v in value.items():
        if not _number(v):
            raise DrillError(f"{_where(i)}: distort {k!r} must be a number, got {v!r}")
    d = Distort(**{k: float(v) for k, v in value.items()})
    if d.scale <= 0 or d.blur < 0 or d.noise < 0:
        raise DrillError(f"{_where(i)}: distort needs scale > 0, blur >= 0 and noise >= 0")
    return d


def _expect(value: Any, i: int) -> Expect:
    if not isinstance(value, dict) or not value:
        raise DrillError(f"{_where(i)}: 'expect' must be a non-empty object, got {value!r}")
    unknown = sorted(set(value) - set(EXPECT_KEYS))
    if unknown:
        raise DrillError(
            f"{_where(i)}: unknown key {unknown[0]!r} in 'expect' "
            f"(allowed: {', '.join(EXPECT_KEYS)})"
        )
    for k in ("position", "open_tube_count", "alerts", "recall_version"):
        v = value.get(k)
        if k in value and v is not None and not (isinstance(v, int) and not isinstance(v, bool)):
            raise DrillError(f"{_where(i)}: expect {k!r} must be an integer or null, got {v!r}")
    for k in ("decision", "reason", "lane", "tube", "screen", "link", "clock"):
        v = value.get(k)
        if k in value and v is not None and not isinstance(v, str):
            raise DrillError(f"{_where(i)}: expect {k!r} must be a string or null, got {v!r}")
    lights = value.get("lights")
    if "lights" in value and not (
        isinstance(lights, dict) and all(isinstance(v, str) for v in lights.values())
    ):
        raise DrillError(f"{_where(i)}: expect 'lights' must map lane names to states")
    return Expect(dict(value))


def parse_step(raw: Any, i: int) -> Step:
    """One step, or DrillError naming the step and what is wrong with it."""
    if not isinstance(raw, dict) or not raw:
        raise DrillError(f"{_where(i)}: a step is a non-empty object, got {raw!r}")
    primaries = [k for k in raw if k in STEP_KEYS]
    if len(primaries) != 1:
        if primaries:
            raise DrillError(
                f"{_where(i)}: one action per step, this one has {', '.join(primaries)}"
            )
        key = next(iter(raw))
        raise DrillError(
            f"{_where(i)}: unknown key {key!r} (a step is one of: {', '.join(STEP_KEYS)})"
        )
    kind = primaries[0]
    for key in raw:
        if key != kind and key not in STEP_KEYS[kind]:
            allowed = ", ".join(STEP_KEYS[kind]) or "nothing"
            raise DrillError(
                f"{_where(i)}: unknown key {key!r} in a {kind!r} step "
                f"(allowed beside it: {allowed})"
            )
    value = raw[kind]
    if kind == "scan":
        return Scan(_text(value, i, "scan"))
    if kind == "show":
        temps = _temperatures(raw["temperature"], i) if "temperature" in raw else ()
        distort = _distort(raw["distort"], i) if "distort" in raw else None
        return Show(_text(value, i, "show"), temps, distort)
    if kind == "id":
        temps = _temperatures(raw["temperature"], i) if "temperature" in raw else ()
        return ManualId(_text(value, i, "id"), temps)
    if kind == "touch":
        return _touch(raw, i)
    if kind == "wait":
        if not _number(value) or float(value) < 0:
            raise DrillError(f"{_where(i)}: 'wait' must be seconds >= 0, got {value!r}")
        return Wait(float(value))
    if kind == "gateway":
        if value not in ("online", "offline"):
            raise DrillError(f"{_where(i)}: 'gateway' is 'online' or 'offline', got {value!r}")
        return Gateway(value == "online")
    if kind == "clock":
        return parse_clock(value, _where(i))
    if kind in ("results", "recall", "recall_version"):
        return _lab_step(kind, value, i)
    if kind == "thermometer":
        if value not in ("ok", "fault"):
            raise DrillError(f"{_where(i)}: 'thermometer' is 'ok' or 'fault', got {value!r}")
        return ThermometerState(value == "ok")
    return _expect(value, i)


def _lab_step(kind: str, value: Any, i: int) -> Results | RecallChange | RecallVersion:
    if kind == "results":
        return Results(_text(value, i, "results"))
    if kind == "recall_version":
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise DrillError(f"{_where(i)}: 'recall_version' must be an integer >= 0")
        return RecallVersion(value)
    if not isinstance(value, dict):
        raise DrillError(f"{_where(i)}: 'recall' must be an object, got {value!r}")
    unknown = sorted(set(value) - set(RECALL_KEYS))
    if unknown:
        raise DrillError(
            f"{_where(i)}: unknown key {unknown[0]!r} in 'recall' "
            f"(allowed: {', '.join(RECALL_KEYS)})"
        )
    if ("sub" in value) == ("id" in value):
        raise DrillError(f"{_where(i)}: a 'recall' names the resident by 'sub' or by 'id'")
    op = value.get("op", "add")
    needed = ("reason", "pool", "action") if op == "add" else ("reason", "pool")
    if op not in ("add", "remove") or any(k not in value for k in needed):
        raise DrillError(
            f"{_where(i)}: a 'recall' is op 'add' (with reason, pool, action) or 'remove' "
            "(with reason, pool)"
        )
    return RecallChange({k: _text(v, i, f"recall {k}") for k, v in value.items()})


def _touch(raw: dict[str, Any], i: int) -> Touch:
    action = raw["touch"]
    if action not in TOUCH_ACTIONS:
        raise DrillError(
            f"{_where(i)}: unknown touch {action!r} (one of: {', '.join(TOUCH_ACTIONS)})"
        )
    needs = {"void": "reason", "remove": "resident", "dispatch": "box"}
    extra = {"reason"} if action == "remove" else set()
    needed = needs.get(action)
    for key in ("reason", "resident", "box"):
        if key in raw and key != needed and key not in extra:
            raise DrillError(f"{_where(i)}: a {action!r} touch takes no {key!r}")
    if needed is not None and needed not in raw:
        raise DrillError(f"{_where(i)}: a {action!r} touch needs {needed!r}")
    return Touch(
        action,
        reason=_text(raw["reason"], i, "reason") if "reason" in raw else None,
        resident=_text(raw["resident"], i, "resident") if "resident" in raw else None,
        box=_text(raw["box"], i, "box") if "box" in raw else None,
    )


def parse(data: Any) -> Scenario:
    """A scenario from decoded JSON, or DrillError."""
    if not isinstance(data, dict):
        raise DrillError("a scenario is a JSON object with 'name' and 'steps'")
    unknown = sorted(set(data) - {"name", "steps", "description"})
    if unknown:
        raise DrillError(f"unknown top-level key {unknown[0]!r} (allowed: name, steps)")
    name = data.get("name")
    if not isinstance(name, str) or not name:
        raise DrillError("'name' must be a non-empty string")
    steps = data.get("steps")
    if not isinstance(steps, list) or not steps:
        raise DrillError("'steps' must be a non-empty list")
    parsed = tuple(parse_step(s, i) for i, s in enumerate(steps))
    if isinstance(parsed[0], Expect):
        raise DrillError(f"{_where(0)}: 'expect' checks the step before it; there is none")
    return Scenario(name, parsed)


def load(path: Path) -> Scenario:
    """Read and parse a scenario file."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise DrillError(f"{path}: cannot read the scenario: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise DrillError(f"{path}: the scenario is not UTF-8 text") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DrillError(
            f"{path}: not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})"
        ) from None
    try:
        return parse(data)
    except DrillError as exc:
        raise DrillError(f"{path}: {exc}") from None
