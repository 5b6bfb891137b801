"""The kiosk's exceptions, in one place.

Every error the station software raises on purpose descends from
``firmware.errors.StationError``; this module holds the kiosk's own branches of that tree
(those of the device platform live in ``firmware/errors.py``, those of the outbox and its
delivery in ``edge_agent/errors.py``)::

    StationError                      firmware.errors
    ├── RuleViolation                 something a sampler or resident can fix (zh and en)
    ├── NationalIdError               a typed national ID number is not valid (zh and en)
    ├── CodeRejected                  a resident code failed a check (inside the verifier)
    ├── KivyError                     Kivy was imported before the kiosk configured it
    ├── FontError                     no font with the screens' Simplified Chinese glyphs
    ├── DrillError                    a drill's scenario file cannot be run as written
    ├── SimulateError                 a drill cannot be set up (broker, database, relay)
    ├── StepFailed                    a drill's step did not do what it should
    └── ConfigError                   firmware.errors
        ├── TrustFileError            the issuers' trust file cannot be used
        └── UsageError                an argument of ``station verify-code`` cannot be used

The texts a resident or sampler reads live in ``kiosk_ui.core.messages``; the classes here
only carry them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from firmware.errors import ConfigError, StationError

if TYPE_CHECKING:
    from kiosk_ui.core.codes import Reason

__all__ = [
    "CodeRejected",
    "DrillError",
    "FontError",
    "KivyError",
    "NationalIdError",
    "RuleViolation",
    "SimulateError",
    "StepFailed",
    "TrustFileError",
    "UsageError",
]


class RuleViolation(StationError):
    """Something a sampler or a resident can fix: the message says what, in zh and en.

    ``code`` is a stable machine-readable name (the kiosk picks its screen by it).
    """

    def __init__(self, code: str, en: str, zh: str) -> None:
        self.code = code
        self.en = en
        self.zh = zh
        super().__init__(f"{code}: {en}")

    def message(self, language: str) -> str:
        """The message in ``language`` (``zh`` or ``en``)."""
        return self.zh if language == "zh" else self.en


class NationalIdError(StationError):
    """The number typed is not a valid 18-character citizen identity number."""

    def __init__(self, code: str, en: str, zh: str) -> None:
        self.code = code
        self.en = en
        self.zh = zh
        super().__init__(en)

    def message(self, language: str) -> str:
        return self.zh if language == "zh" else self.en


class CodeRejected(StationError):
    """Raised inside the verifier to stop at the first failed check; never escapes it."""

    def __init__(self, reason: Reason, detail: str) -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}")


class KivyError(StationError):
    """Kivy was imported before the kiosk could configure it."""


class FontError(StationError):
    """No font with the Simplified Chinese glyphs the screens need was found."""


class DrillError(StationError):
    """The scenario file cannot be run as written."""


class SimulateError(StationError):
    """The drill could not be set up (not the drill failing: that is a step's failure)."""


class _Step(Protocol):
    def describe(self) -> str: ...


class StepFailed(StationError):
    """A drill's step did not do what it should (or an ``expect`` did not hold)."""

    def __init__(self, index: int, step: _Step, why: str) -> None:
        self.index = index
        self.step = step
        self.why = why
        super().__init__(f"step {index + 1} (steps[{index}]) {step.describe()}: {why}")


class TrustFileError(ConfigError):
    """The issuer trust file is missing, unreadable, not a JWKS, or holds an unusable key."""

    def __str__(self) -> str:
        lines = [f"trust file {self.origin} cannot be used:"]
        lines += [f"  - {p}" for p in self.problems]
        return "\n".join(lines)


class UsageError(ConfigError):
    """An argument of ``station verify-code`` cannot be used."""

    def __str__(self) -> str:
        return f"{self.origin}: " + "; ".join(self.problems)
