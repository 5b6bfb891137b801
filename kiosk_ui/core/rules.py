"""The station's rules: temperature assessment and the check-in decision table.

Plain Python on purpose: no Kivy, no hardware, no SQLite. The station (``kiosk_ui.core.station``)
gathers the facts (the verified code, the readings, whether the resident was sampled
recently) and asks these functions what follows; the same rules then run in a drill, a test
and on a Pi.

The decision table is the one of the resident-code contract (docs/rules.md). Its rows are
tried top to bottom and the first that applies wins:

==============================  ==========  ===========  ===========================
situation                       decision    lane         reason
==============================  ==========  ===========  ===========================
code rejected                   refer       staff        the code's rejection reason
colour red                      isolate     isolation    ``red_code``
fever confirmed                 isolate     isolation    ``fever``
readings implausible            refer       staff        ``implausible_temperature``
recalled, action isolate        isolate     isolation    the recall's (``single_positive``)
recalled, action single         single      single       the recall's (``pool_positive``, ...)
already sampled in the window   refer       staff        ``already_sampled``
colour yellow                   single      single       null
colour green, priority group    pool        green        null
colour green                    pool        main         null
==============================  ==========  ===========  ===========================
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, NamedTuple, Protocol

from firmware.config import SamplingSection
from kiosk_ui.core import messages


class Decision(StrEnum):
    POOL = "pool"
    SINGLE = "single"
    ISOLATE = "isolate"
    REFER = "refer"


class Lane(StrEnum):
    MAIN = "main"
    GREEN = "green"
    SINGLE = "single"
    ISOLATION = "isolation"
    STAFF = "staff"


class TubeMode(StrEnum):
    """The kind of tube a resident is sampled into (and the queue that waits for one)."""

    POOL = "pool"  # pooled: up to ``pool_size`` residents in one tube
    SINGLE = "single"  # one resident alone (yellow codes), at the single desk


class Color(StrEnum):
    GREEN = "green"
    YELLOW = "yellow"
    RED = "red"


# Reason codes of the station's own rows; a rejected code carries the verifier's reason.
RED_CODE = "red_code"
FEVER = "fever"
IMPLAUSIBLE_TEMPERATURE = "implausible_temperature"
ALREADY_SAMPLED = "already_sampled"
RULE_REASONS = (RED_CODE, FEVER, IMPLAUSIBLE_TEMPERATURE, ALREADY_SAMPLED)
# Why a resident is on the township's recall list (the gateway's lab results, docs/lab.md).
POOL_POSITIVE = "pool_positive"
POOL_INVALID = "pool_invalid"
SINGLE_POSITIVE = "single_positive"
SINGLE_INVALID = "single_invalid"
RECALL_REASONS = (POOL_POSITIVE, POOL_INVALID, SINGLE_POSITIVE, SINGLE_INVALID)


class ClaimsLike(Protocol):
    """What the rules read from a verified code's claims (``kiosk_ui.core.codes.Claims``)."""

    @property
    def sub(self) -> str: ...
    @property
    def color(self) -> str: ...
    @property
    def name(self) -> str | None: ...
    @property
    def cat(self) -> Sequence[str]: ...


class RecallLike(Protocol):
    """A resident's entry on the recall list (``edge_agent.recall_list.Recall``)."""

    @property
    def reason(self) -> str: ...
    @property
    def action(self) -> str: ...


class VerdictLike(Protocol):
    """What the rules read from a verifier's verdict (``kiosk_ui.core.codes.Verdict``)."""

    @property
    def valid(self) -> bool: ...
    @property
    def reason(self) -> str | None: ...
    @property
    def claims(self) -> ClaimsLike | None: ...


@dataclass(frozen=True, slots=True)
class Thresholds:
    """The sampling settings in force for one decision (configuration + gateway overrides)."""

    pool_size: int = 10
    fever_threshold_c: float = 37.3
    resample_window_h: float = 12.0
    plausible_min_c: float = 34.0
    plausible_max_c: float = 42.5
    max_tries: int = 3

    @classmethod
    def from_settings(
        cls, base: SamplingSection, overrides: Mapping[str, Any] | None = None
    ) -> Thresholds:
        """The configuration's values, with gateway overrides (``sampling.<key>``) on top.

        Overrides that would make the settings inconsistent are validated like the file
        itself; a ``ValueError`` (pydantic's) tells the caller they cannot be used.
        """
        s = SamplingSection.model_validate(base.with_overrides(overrides or {}))
        return cls(
            pool_size=s.pool_size,
            fever_threshold_c=s.fever_threshold_c,
            resample_window_h=s.resample_window_h,
            plausible_min_c=s.plausible_min_c,
            plausible_max_c=s.plausible_max_c,
            max_tries=s.max_tries,
        )

    @property
    def resample_window_s(self) -> float:
        return self.resample_window_h * 3600.0


class TemperatureStatus(StrEnum):
    NEED_READING = "need_reading"  # take another reading and ask again
    NORMAL = "normal"
    FEVER = "fever"
    IMPLAUSIBLE = "implausible"


class TemperatureAssessment(NamedTuple):
    """What the readings so far say.

    ``temperature_c`` is the reading that counts (the second one after a first fever
    reading, the confirming one for a fever), None while undecided or when implausible.
    ``used`` is how many of the readings the result rests on; later ones are ignored.
    """

    status: TemperatureStatus
    temperature_c: float | None
    readings: tuple[float, ...]
    used: int
    implausible: int

    @property
    def need_reading(self) -> bool:
        return self.status is TemperatureStatus.NEED_READING

    @property
    def done(self) -> bool:
        return not self.need_reading


def plausible(reading: float, t: Thresholds) -> bool:
    return math.isfinite(reading) and t.plausible_min_c <= reading <= t.plausible_max_c


def assess_temperature(readings: Sequence[float], t: Thresholds) -> TemperatureAssessment:
    """Assess successive readings (calibration offset already applied by the driver).

    - a plausible reading below the threshold settles it (``normal``), also when it comes
      right after a fever reading: the second reading is the one that counts;
    - a reading at or above the threshold asks for a second one; a second at or above it
      confirms ``fever``;
    - a reading outside ``plausible_min_c..plausible_max_c`` (or not a number) is retaken;
      the ``max_tries``-th implausible reading settles it as ``implausible``.
    """
    rs = tuple(float(r) for r in readings)
    first_fever = False
    bad = 0
    for i, r in enumerate(rs, start=1):
        if not plausible(r, t):
            bad += 1
            if bad >= t.max_tries:
                return TemperatureAssessment(TemperatureStatus.IMPLAUSIBLE, None, rs, i, bad)
            continue
        if r >= t.fever_threshold_c:
            if first_fever:
                return TemperatureAssessment(TemperatureStatus.FEVER, r, rs, i, bad)
            first_fever = True
            continue
        return TemperatureAssessment(TemperatureStatus.NORMAL, r, rs, i, bad)
    return TemperatureAssessment(TemperatureStatus.NEED_READING, None, rs, len(rs), bad)


def needs_temperature(verdict: VerdictLike) -> bool:
    """Whether the decision depends on a temperature: not for rejected or red codes.

    Those two rows come before any temperature row, so the kiosk sends the resident on at
    once instead of measuring for nothing.
    """
    if not verdict.valid or verdict.claims is None:
        return False
    return str(verdict.claims.color) != Color.RED


class Outcome(NamedTuple):
    """A decision table row's result: what is decided, the lane, and why (a reason code)."""

    decision: Decision
    lane: Lane
    reason: str | None

    @property
    def alert_kind(self) -> str | None:
        """The ``sampling.alert.raised`` kind this outcome raises, if any."""
        return self.reason if self.reason in (RED_CODE, FEVER) else None


def decide(
    verdict: VerdictLike,
    temperature: TemperatureAssessment | None,
    already_sampled: bool,
    recall: RecallLike | None = None,
) -> Outcome:
    """Apply the decision table; the first row that applies wins.

    ``recall`` is the resident's entry on the township's recall list, if any: a recalled
    resident is sent to isolation or to the single-sample desk, even when sampled within
    the window (the pooled sample they gave is the one that came back positive or invalid).

    ``temperature`` may be None only when ``needs_temperature(verdict)`` is false; an
    assessment that still needs a reading is refused the same way (RuleViolation
    ``temperature_needed``), because deciding without it would skip the fever rows.
    """
    claims = verdict.claims
    if not verdict.valid or claims is None:
        reason = str(verdict.reason) if verdict.reason is not None else "bad_format"
        return Outcome(Decision.REFER, Lane.STAFF, reason)
    color = str(claims.color)
    if color == Color.RED:
        return Outcome(Decision.ISOLATE, Lane.ISOLATION, RED_CODE)
    if temperature is None or temperature.need_reading:
        raise messages.violation(messages.TEMPERATURE_NEEDED)
    if temperature.status is TemperatureStatus.FEVER:
        return Outcome(Decision.ISOLATE, Lane.ISOLATION, FEVER)
    if temperature.status is TemperatureStatus.IMPLAUSIBLE:
        return Outcome(Decision.REFER, Lane.STAFF, IMPLAUSIBLE_TEMPERATURE)
    if recall is not None:
        if recall.action == "isolate":
            return Outcome(Decision.ISOLATE, Lane.ISOLATION, recall.reason)
        return Outcome(Decision.SINGLE, Lane.SINGLE, recall.reason)
    if already_sampled:
        return Outcome(Decision.REFER, Lane.STAFF, ALREADY_SAMPLED)
    if color == Color.YELLOW:
        return Outcome(Decision.SINGLE, Lane.SINGLE, None)
    if color == Color.GREEN:
        if len(claims.cat) > 0:
            return Outcome(Decision.POOL, Lane.GREEN, None)
        return Outcome(Decision.POOL, Lane.MAIN, None)
    # A verifier never passes another colour as valid; treat it like a rejected claim set.
    return Outcome(Decision.REFER, Lane.STAFF, "bad_claims")


def queue_mode(decision: Decision) -> TubeMode | None:
    """The tube a decision samples the resident into; None when they are not sampled here."""
    if decision is Decision.POOL:
        return TubeMode.POOL
    if decision is Decision.SINGLE:
        return TubeMode.SINGLE
    return None


@dataclass(frozen=True, slots=True)
class StatedClaims:
    """Claims nobody signed: what staff read from the authority's system for a resident
    without a code (``Station.check_in_manual``)."""

    sub: str
    color: str
    name: str | None = None
    cat: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class StatedVerdict:
    """A verdict on :class:`StatedClaims`: valid, as staff vouch for them."""

    claims: StatedClaims
    valid: bool = True
    reason: str | None = None


def _likely(color: Color) -> TubeMode | None:
    """What the table decides for a valid code of ``color``, a normal temperature and no
    recent sample: the tube the resident most likely joins."""
    normal = TemperatureAssessment(TemperatureStatus.NORMAL, 36.5, (36.5,), 1, 0)
    verdict = StatedVerdict(StatedClaims("probe", color.value))
    if not needs_temperature(verdict):
        return queue_mode(decide(verdict, None, False).decision)
    return queue_mode(decide(verdict, normal, False).decision)


# Asked of the table once: the station reads that tube's room with the resident's facts,
# before the temperature is known, so most check-ins need no second read.
_LIKELY_MODE: dict[str, TubeMode | None] = {c.value: _likely(c) for c in Color}


def likely_mode(color: str) -> TubeMode | None:
    """The tube a resident with a valid code of ``color`` joins if nothing else stops them."""
    return _LIKELY_MODE.get(color)
