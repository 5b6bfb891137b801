"""What the sampler panel shows, as plain records the kiosk fills on its core thread and the
screens format (``kiosk_ui.screens.present``): no Kivy, no SQL."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from kiosk_ui.core.store import Tube
from kiosk_ui.core.views import Counters


@dataclass
class PanelMessage:
    """The last answer the sampler panel shows: what happened, or what to fix."""

    ok: bool
    en: str
    zh: str
    at: float = field(default_factory=time.monotonic)

    def text(self, language: str) -> str:
        return self.zh if language == "zh" else self.en


@dataclass(frozen=True, slots=True)
class LinkStatus:
    """The agent's link and the backlog, as the agent records them in the station database."""

    link: str  # the agent's link state (online, offline, connecting, ...), or "unknown"
    depth: int  # events not yet delivered
    oldest_s: float | None = None  # the age of the oldest of them
    alerts: dict[str, Any] = field(default_factory=dict)  # standing alerts, by kind

    @property
    def online(self) -> bool:
        return self.link in ("connected", "online")


@dataclass(frozen=True, slots=True)
class PanelData:
    """What the sampler panel shows, read on the core thread in one go."""

    tube: Tube | None
    names: tuple[str, ...]  # the masked names of the open tube's members, in order
    counters: Counters
    single_armed: bool
    temp_needed: bool
    fault: bool
    alerts: tuple[tuple[str, str], ...]  # the latest alerts: (kind, local time)
    message: PanelMessage | None
