"""What the screens say, without Kivy: the words and colours of each screen as plain records.

The Kivy app (``kiosk_ui.screens.app``) only copies these records onto its widgets, so what
a resident or a sampler reads in either language is tested here as text
(``tests/test_screens_present.py``), without a window.
"""

from __future__ import annotations

from dataclasses import dataclass

from kiosk_ui.core.codes import Reason, rejection_message
from kiosk_ui.core.flow import FaultKind, State, View
from kiosk_ui.core.i18n import STRINGS, Language, t
from kiosk_ui.core.rules import Decision, Lane, Thresholds
from kiosk_ui.panel import LinkStatus, PanelData

Rgba = tuple[float, float, float, float]

# Background per state: the colour says it from afar, the icon and the words say it too.
COLOURS: dict[str, Rgba] = {
    "idle": (0.11, 0.20, 0.33, 1),
    "measure": (0.45, 0.30, 0.02, 1),
    "go": (0.06, 0.42, 0.20, 1),
    "green": (0.0, 0.50, 0.30, 1),
    "wait": (0.55, 0.36, 0.0, 1),
    "isolate": (0.62, 0.0, 0.10, 1),
    "staff": (0.12, 0.27, 0.55, 1),
    "fault": (0.25, 0.25, 0.27, 1),
}
OK_RGBA: Rgba = (0.7, 1, 0.7, 1)
WARN_RGBA: Rgba = (1, 0.75, 0.4, 1)
REFUSED_RGBA: Rgba = (1, 0.6, 0.5, 1)
NEUTRAL_RGBA: Rgba = (1, 1, 1, 1)
REASONS = frozenset(r.value for r in Reason)
VOID_REASONS = ("void.spilled", "void.mislabelled", "void.contaminated")
ID_COLORS = ("green", "yellow", "red")
ID_COLOR_RGBA: dict[str, Rgba] = {
    "green": (0.10, 0.50, 0.23, 1),
    "yellow": (0.70, 0.55, 0.0, 1),
    "red": (0.62, 0.0, 0.10, 1),
}
ENTRY_PROMPTS = {"pin": "panel.unlock", "id": "id.title", "temp": "panel.manual_temp"}


@dataclass(frozen=True, slots=True)
class ResidentText:
    """What the resident screen shows for one view: a background (a key of ``COLOURS``),
    an icon, a title, two lines, and a third line in two pieces (the resident's masked
    name or a fixed text, then the temperature)."""

    background: str
    icon: str
    title: str
    line1: str
    line2: str
    line3a: str
    line3b: str = ""

    @property
    def line3(self) -> str:
        return "  ".join(x for x in (self.line3a, self.line3b) if x)

    @property
    def labels(self) -> tuple[str, str, str, str, str]:
        """The texts of the screen's five labels: title, line 1, line 2, line 3, line 3b."""
        return self.title, self.line1, self.line2, self.line3a, self.line3b


def resident_text(view: View, lang: Language) -> ResidentText:
    """The words and colour a resident reads for ``view`` in ``lang``."""
    s = view.state
    name = view.name or ""
    if s is State.IDLE:
        return ResidentText(
            "idle", "idle", t("idle.title", lang), t("idle.hint", lang), "", t("idle.no_code", lang)
        )
    if s in (State.MEASURING, State.REMEASURE):
        again = s is State.REMEASURE
        return ResidentText(
            "measure",
            "measure",
            t("measure.again", lang) if again else t("measure.title", lang),
            t("measure.closer", lang),
            t(view.prompt or "measure.closer", lang) if again else "",
            name,
        )
    if s is State.MANUAL_TEMPERATURE:
        title, line1 = t("measure.title", lang), t("fault.thermometer", lang)
        return ResidentText("measure", "fault", title, line1, "", name)
    if s is State.RESULT:
        return _result_text(view, lang)
    if s is State.WAIT:
        title, next_ = t("wait.title", lang), t("wait.next", lang)
        return ResidentText(
            "wait", "wait", title, t(view.prompt or "wait.no_tube", lang), next_, name
        )
    if s is State.ISOLATION:
        title, next_ = t("isolation.title", lang), t("isolation.next", lang)
        return ResidentText(
            "isolate", "isolate", title, t(view.prompt or "isolation.fever", lang), next_, name
        )
    if s is State.STAFF:
        title, next_ = t("staff.title", lang), t("staff.next", lang)
        return ResidentText("staff", "staff", title, why(view, lang), next_, name)
    kind = view.fault.value if view.fault is not None else "internal"
    detail = (view.message(lang) or "")[:80]
    return ResidentText(
        "fault", "fault", t("fault.title", lang), t(f"fault.{kind}", lang), detail, ""
    )


def _result_text(view: View, lang: Language) -> ResidentText:
    name = view.name or ""
    temp = t("result.temperature", lang, t=view.temperature_c) if view.temperature_c else ""
    lane = t(f"lane.{view.lane}", lang)
    if view.decision == "single":
        words = t("result.recall" if view.prompt == "result.recall" else "result.single", lang)
        return ResidentText("go", "go", lane, words, name, temp)
    place = t("result.position", lang, k=view.position, n=view.capacity)
    background = "green" if view.lane == "green" else "go"
    return ResidentText(background, "go", t("result.go", lang), lane, place, name, temp)


def why(view: View, lang: Language) -> str:
    """Why a resident is sent to the staff desk, in plain words."""
    msg = view.message(lang)
    if msg:
        return msg
    if f"reason.{view.reason}" in STRINGS:
        return t(f"reason.{view.reason}", lang)
    if view.reason in REASONS:
        return rejection_message(Reason(view.reason), lang)
    return ""


def offline_banner(link: LinkStatus | None, lang: Language) -> str:
    """The banner under the resident screen while the gateway is away with events waiting."""
    if link is None or link.online or not link.depth:
        return ""
    return t("fault.offline", lang)


def sample_views(th: Thresholds) -> list[View]:
    """A view of every state with every fixed text it can show (no names): the texts the
    screen draws ahead, before the first resident."""
    keys = sorted(STRINGS)
    views = [View(State.IDLE, 0.0), View(State.MANUAL_TEMPERATURE, 0.0)]
    for state, family in (
        (State.MEASURING, "measure."),
        (State.REMEASURE, "measure."),
        (State.WAIT, "wait."),
        (State.ISOLATION, "isolation."),
    ):
        views += [View(state, 0.0, prompt=k) for k in keys if k.startswith(family)]
        views.append(View(state, 0.0))
    reasons = REASONS | {k.removeprefix("reason.") for k in keys if k.startswith("reason.")}
    views += [View(State.STAFF, 0.0, reason=reason) for reason in sorted(reasons)]
    views += [View(State.FAULT, 0.0, fault=kind) for kind in FaultKind]
    lanes = [k.removeprefix("lane.") for k in keys if k.startswith("lane.")]
    for lane in lanes:
        views.append(View(State.RESULT, 0.0, decision=Decision.SINGLE, lane=Lane(lane)))
        views += [
            View(State.RESULT, 0.0, decision=Decision.POOL, lane=Lane(lane), position=k, capacity=n)
            for n in {th.pool_size}
            for k in range(1, n + 1)
        ]
    # every temperature a resident can be sent on with, to a tenth of a degree
    tenths = range(round(th.plausible_min_c * 10), round(th.fever_threshold_c * 10))
    views += [
        View(State.RESULT, 0.0, decision=Decision.POOL, lane=Lane.MAIN, temperature_c=x / 10)
        for x in tenths
    ]
    return views


# -- the sampler panel ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MemberLine:
    """One member of the open tube on the panel, with the resident its remove button takes."""

    text: str
    resident: str


@dataclass(frozen=True, slots=True)
class PanelText:
    """What the sampler panel shows: the open tube and its members, today's counters, the
    gateway link, the last answer, and which buttons are live."""

    tube: str
    members: tuple[MemberLine, ...]
    counters: str
    link: str
    link_rgba: Rgba
    message: str
    message_rgba: Rgba
    single_armed: bool
    temp_needed: bool
    fault_active: bool


def panel_text(data: PanelData, link: LinkStatus | None, lang: Language) -> PanelText:
    """The panel's words for ``data`` (read on the core thread) and the agent's ``link``."""
    tube = data.tube
    if tube is None:
        tube_line = t("panel.no_tube", lang)
    else:
        tube_line = f"{t('panel.open_tube', lang)} {tube.tube}  {tube.count}/{tube.capacity}"
    members = tuple(
        MemberLine(f"{pos}. {name} · {short(who)}" if name else f"{pos}. {short(who)}", who)
        for pos, (who, name) in enumerate(
            zip(tube.members if tube is not None else (), data.names, strict=True), 1
        )
    )
    st = link or LinkStatus("unknown", data.counters.outbox_pending)
    m = data.message
    return PanelText(
        tube=tube_line,
        members=members,
        counters=counters_line(data, lang),
        link=link_line(st, data.alerts, lang),
        link_rgba=OK_RGBA if st.online else WARN_RGBA,
        message=m.text(lang) if m else "",
        message_rgba=OK_RGBA if (m is None or m.ok) else REFUSED_RGBA,
        single_armed=data.single_armed,
        temp_needed=data.temp_needed,
        fault_active=data.fault,
    )


def counters_line(data: PanelData, lang: Language) -> str:
    c = data.counters
    return (
        f"{t('panel.counters', lang)}: {t('counter.checkins', lang)} {c.checkins} · "
        f"{t('counter.pooled', lang)} {c.by_decision.get('pool', 0)} · "
        f"{t('counter.single', lang)} {c.by_decision.get('single', 0)} · "
        f"{t('counter.isolated', lang)} {c.by_decision.get('isolate', 0)} · "
        f"{t('counter.referred', lang)} {c.by_decision.get('refer', 0)} · "
        f"{t('counter.sealed', lang)} {c.tubes_sealed} · "
        f"{t('panel.waiting', lang, n=c.waiting_pool)}"
    )


def link_line(st: LinkStatus, recent: tuple[tuple[str, str], ...], lang: Language) -> str:
    """The gateway link, the backlog, the standing alerts and the latest raised ones."""
    word = t("panel.online", lang) if st.online else t("panel.offline", lang)
    text = f"{t('panel.link', lang)}: {word} ({st.link}) · {t('panel.backlog', lang, n=st.depth)}"
    alerts = [alert_name(kind, lang) for kind in sorted(st.alerts)] + [
        f"{alert_name(kind, lang)} {at}" for kind, at in recent
    ]
    if alerts:
        text += f" · {t('panel.alerts', lang)}: {', '.join(alerts)}"
    return text


def alert_name(kind: str, lang: Language) -> str:
    return t(f"alert.{kind}", lang) if f"alert.{kind}" in STRINGS else kind


def short(resident: str) -> str:
    return resident if len(resident) <= 16 else resident[:12] + "…"


# -- the keypad -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EntryText:
    """The keypad screen: what to type, what was typed (a PIN as dots), the ID's colour."""

    prompt: str
    shown: str
    color: str
    color_rgba: Rgba


def void_choices(lang: Language) -> list[tuple[str, str]]:
    """The reasons to void a tube: (what the button says, the reason recorded, in English)."""
    return [(t(key, lang), t(key, "en")) for key in VOID_REASONS]


def entry_text(mode: str, value: str, color: str, lang: Language) -> EntryText:
    shown = "●" * len(value) if mode == "pin" else value + ("℃" if mode == "temp" else "")
    return EntryText(
        t(ENTRY_PROMPTS[mode], lang), shown, t(f"color.{color}", lang), ID_COLOR_RGBA[color]
    )


def keypad_keys(mode: str) -> list[str]:
    """The keypad's twelve keys: digits, then X for an ID (a dot for a temperature, none for
    a PIN), 0 and backspace."""
    keys = [*"123456789", "X" if mode == "id" else ".", "0", "←"]
    if mode == "pin":
        keys[9] = ""
    return keys
