"""Spoken prompts: what is said (surname and place, never the whole name), said by espeak-ng."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest

from kiosk_ui.core.flow import State, View
from kiosk_ui.speech import EspeakSpeaker, prompt


def result(**kw: object) -> View:
    base: dict[str, object] = {
        "state": State.RESULT,
        "since": 0.0,
        "decision": "pool",
        "lane": "main",
        "name": "张*",
        "position": 2,
        "capacity": 10,
    }
    base.update(kw)
    return View(**base)  # type: ignore[arg-type]


def test_the_prompt_says_surname_place_and_lane() -> None:
    assert prompt(result(), "zh") == "张，2号，普通通道"
    assert prompt(result(), "en") == "Main lane, place 2"
    assert prompt(result(name=None), "zh") == "2号，普通通道"
    assert prompt(result(state=State.ISOLATION), "zh") == "请到临时隔离区"
    assert prompt(View(State.IDLE, since=0.0), "zh") is None


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")
def test_espeak_speaks_on_its_own_thread(tmp_path: Path) -> None:
    wav = tmp_path / "said.wav"
    speaker = EspeakSpeaker(extra_args=("-w", str(wav)))
    speaker.say(result(), "zh")
    deadline = time.monotonic() + 20
    while not speaker.spoken and time.monotonic() < deadline:
        time.sleep(0.05)
    speaker.stop()
    assert speaker.spoken == ["张，2号，普通通道"]
    assert wav.stat().st_size > 1000 and wav.read_bytes()[:4] == b"RIFF"
