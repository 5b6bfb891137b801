"""Spoken prompts (``kiosk.speech``): espeak-ng says where to go and the place in the tube.

Samplers call residents by place, so the kiosk says the first character of the name and the
position ("张，2号"), never the whole name. Speech runs on a thread of its own, one prompt at
a time; a prompt still waiting when a newer one comes is dropped (the newer is what matters).
"""

from __future__ import annotations

import contextlib
import logging
import queue
import shutil
import subprocess
import threading

from firmware.config import StationConfig
from firmware.errors import StationError
from kiosk_ui.core.flow import State, View
from kiosk_ui.core.i18n import Language, t

log = logging.getLogger(__name__)

VOICES: dict[str, str] = {"zh": "cmn", "en": "en"}


def prompt(view: View, lang: Language) -> str | None:
    """What to say for a view, or None (nothing to say)."""
    first = (view.name or "")[:1]
    if view.state is State.RESULT:
        lane = t(f"lane.{view.lane}", lang)
        if view.position is not None:
            if lang == "zh":
                return f"{first}，{view.position}号，{lane}".lstrip("，")
            return f"{lane}, place {view.position}"
        return lane
    if view.state is State.REMEASURE:
        return t("measure.again", lang)
    if view.state is State.WAIT:
        return t("wait.title", lang)
    if view.state is State.ISOLATION:
        return t("isolation.title", lang)
    if view.state is State.STAFF:
        return t("staff.title", lang)
    return None


class EspeakSpeaker:
    """Says prompts with espeak-ng on a worker thread (started on first use)."""

    def __init__(
        self, command: str | None = None, rate_wpm: int = 140, extra_args: tuple[str, ...] = ()
    ) -> None:
        self.command = command or shutil.which("espeak-ng") or "espeak-ng"
        self.rate_wpm = rate_wpm
        self.extra_args = extra_args  # e.g. ("-w", "out.wav") to write instead of playing
        self._queue: queue.Queue[tuple[str, str] | None] = queue.Queue(maxsize=1)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.spoken: list[str] = []

    def say(self, view: View, language: str) -> None:
        lang: Language = "en" if language == "en" else "zh"
        text = prompt(view, lang)
        if text is None:
            return
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="speech", daemon=True)
            self._thread.start()
        with contextlib.suppress(queue.Empty):
            self._queue.get_nowait()  # drop a prompt nobody has heard yet
        self._queue.put_nowait((text, VOICES[lang]))

    def stop(self, timeout: float = 12.0) -> None:
        self._stop.set()
        with contextlib.suppress(queue.Full):
            self._queue.put_nowait(None)
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout)
            if thread.is_alive():
                raise StationError(f"the speech thread did not stop within {timeout} s")

    def _run(self) -> None:
        while not self._stop.is_set():
            item = self._queue.get()
            if item is None:
                return
            text, voice = item
            try:
                subprocess.run(
                    [self.command, "-v", voice, "-s", str(self.rate_wpm), *self.extra_args, text],
                    check=False,
                    timeout=10,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
                self.spoken.append(text)
            except (OSError, subprocess.TimeoutExpired) as exc:
                log.warning("speech failed: %s", exc)


def speaker_for(config: StationConfig) -> EspeakSpeaker | None:
    """The configured voice (``kiosk.speech``), or None."""
    return EspeakSpeaker() if config.kiosk.speech else None
