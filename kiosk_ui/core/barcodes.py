"""What a scanned or photographed text is: a tube, a box, a resident code or nothing known.

Tube and box barcodes are told apart by the configured patterns (``sampling.tube_pattern``,
``sampling.box_pattern``); resident codes by their ``HC1:`` prefix. The scanner adds line
ends and sometimes spaces; they are stripped before anything is matched.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

from kiosk_ui.core import messages
from kiosk_ui.errors import RuleViolation

RESIDENT_PREFIX = "HC1:"
MAX_BARCODE_CHARS = 64


class ScanKind(StrEnum):
    TUBE = "tube"
    BOX = "box"
    RESIDENT_CODE = "resident_code"
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class BarcodeKinds:
    tube: re.Pattern[str]
    box: re.Pattern[str]

    @classmethod
    def from_patterns(cls, tube: str, box: str) -> BarcodeKinds:
        return cls(re.compile(tube), re.compile(box))

    def classify(self, text: str) -> ScanKind:
        t = clean(text)
        if t[: len(RESIDENT_PREFIX)].upper() == RESIDENT_PREFIX:
            return ScanKind.RESIDENT_CODE
        if len(t) > MAX_BARCODE_CHARS or not t:
            return ScanKind.UNKNOWN
        if self.tube.fullmatch(t):
            return ScanKind.TUBE
        if self.box.fullmatch(t):
            return ScanKind.BOX
        return ScanKind.UNKNOWN


def clean(text: str) -> str:
    return text.strip().strip("\x00").strip()


def short(text: str, limit: int = 24) -> str:
    """A scanned text cut for a message (a resident code is long and means nothing there)."""
    t = clean(text)
    return t if len(t) <= limit else t[: limit - 1] + "…"


def resident_code_on_scanner() -> RuleViolation:
    return messages.violation(messages.RESIDENT_CODE_ON_SCANNER)


def tube_on_camera(kind: ScanKind) -> RuleViolation:
    tube = kind is ScanKind.TUBE
    return messages.violation(
        messages.BARCODE_ON_CAMERA,
        kind=kind.value,
        thing_en="a tube" if tube else "a box",
        thing_zh="试管" if tube else "转运箱",
    )


def unknown_barcode(text: str) -> RuleViolation:
    return messages.violation(messages.UNKNOWN_BARCODE, code=short(text))
