"""What a scanned or photographed text is: a tube, a box, a resident code or nothing known.

Tube and box barcodes are told apart by the configured patterns (``sampling.tube_pattern``,
``sampling.box_pattern``); resident codes by their ``HC1:`` prefix. The scanner adds line
ends and sometimes spaces; they are stripped before anything is matched.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

from kiosk_ui.core.rules import RuleViolation

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
    return RuleViolation(
        "resident_code_on_scanner",
        "That is a resident's health code. Scan the tube barcode here; the resident shows "
        "the code to the kiosk camera.",
        "这是居民的健康码。这里请扫描试管条码；居民请在自助机摄像头前出示健康码。",
    )


def tube_on_camera(kind: ScanKind) -> RuleViolation:
    what_en = "a tube" if kind is ScanKind.TUBE else "a box"
    what_zh = "试管" if kind is ScanKind.TUBE else "转运箱"
    return RuleViolation(
        f"{kind.value}_barcode_on_camera",
        f"That is {what_en} barcode, not a health code. Samplers scan it with the barcode "
        "scanner; residents show their health code here.",
        f"这是{what_zh}条码，不是健康码。采样员请用扫码枪扫描；居民请在此出示健康码。",
    )


def unknown_barcode(text: str) -> RuleViolation:
    return RuleViolation(
        "unknown_barcode",
        f"{short(text)!r} is neither a tube nor a box barcode. Scan the barcode on the tube "
        "label again.",
        f"{short(text)!r} 既不是试管条码也不是转运箱条码。请重新扫描试管标签上的条码。",
    )
