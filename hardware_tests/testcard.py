"""The self-test's test card: a QR code the camera check must read.

Print it with ``station selftest --write-test-card card.png`` (any printer; keep it flat and
unglossy) and keep one in each station's kit. The simulated camera shows the same card.
"""

from __future__ import annotations

from pathlib import Path

import segno

TEST_CARD_TEXT = "SAMPLING-STATION TEST CARD 1"
TEST_BARCODE = "SELFTEST-0001"


def write_test_card(path: Path | str, scale: int = 12) -> Path:
    """Write the test card as a PNG (``scale`` pixels per module) and return its path."""
    path = Path(path)
    segno.make_qr(TEST_CARD_TEXT, error="h").save(str(path), kind="png", scale=scale, border=4)
    return path
