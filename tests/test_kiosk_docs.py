"""The kiosk's documents keep up with the screens: every resident-facing string is in the
review, every screen has its pictures, every shipped drill is described."""

from __future__ import annotations

from pathlib import Path

from kiosk_ui.core.i18n import STRINGS
from tests.test_kiosk_ui import SCREENS

ROOT = Path(__file__).resolve().parents[1]
RESIDENT = ("idle.", "measure.", "result.", "lane.", "wait.", "isolation.", "staff.", "reason.")


def test_every_resident_string_is_in_the_text_review() -> None:
    review = (ROOT / "docs" / "resident-text-review.md").read_text()
    absent = [
        key
        for key, text in STRINGS.items()
        if key.startswith(RESIDENT) and (text["zh"] not in review or text["en"] not in review)
    ]
    assert absent == []


def test_every_screen_has_its_pictures_in_both_languages() -> None:
    shots = ROOT / "docs" / "screenshots"
    kiosk = (ROOT / "docs" / "kiosk.md").read_text()
    for name in SCREENS:
        for lang in ("zh", "en"):
            png = shots / f"{name}-{lang}.png"
            assert png.exists(), png
            assert png.stat().st_size < 60_000, f"{png} is large; regenerate with --docs"
            assert f"screenshots/{name}-{lang}.png" in kiosk


def test_every_shipped_drill_is_described() -> None:
    kiosk = (ROOT / "docs" / "kiosk.md").read_text()
    for drill in (ROOT / "examples" / "drills").glob("*.json"):
        assert f"`{drill.name}`" in kiosk, drill.name
