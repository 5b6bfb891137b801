"""What residents and samplers read, in Chinese and English, without a window: the presenter
(``kiosk_ui.screens.present``) that the Kivy screens copy onto their labels."""

from __future__ import annotations

import subprocess
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kiosk_ui.core.flow import FaultKind, State, View
from kiosk_ui.core.i18n import LANGUAGES, STRINGS, Language
from kiosk_ui.core.rules import Thresholds
from kiosk_ui.core.store import Tube
from kiosk_ui.core.views import Counters
from kiosk_ui.panel import LinkStatus, PanelData, PanelMessage
from kiosk_ui.screens.present import (
    COLOURS,
    OK_RGBA,
    REASONS,
    REFUSED_RGBA,
    WARN_RGBA,
    ResidentText,
    entry_text,
    keypad_keys,
    offline_banner,
    panel_text,
    resident_text,
    sample_views,
    void_choices,
)

# -- the resident screen ----------------------------------------------------------------------


def test_idle_asks_for_the_code_in_both_languages() -> None:
    idle = View(State.IDLE, 0.0)
    assert resident_text(idle, "zh") == ResidentText(
        "idle", "idle", "请出示健康码", "把二维码对准框内", "", "没有健康码？请找工作人员"
    )
    en = resident_text(idle, "en")
    assert (en.title, en.line1, en.line3) == (
        "Show your health code",
        "Hold the QR code inside the box",
        "No code? Ask the staff",
    )


def test_a_pooled_result_says_lane_place_name_and_temperature() -> None:
    view = View(
        State.RESULT,
        0.0,
        decision="pool",
        lane="main",
        name="张*",
        temperature_c=36.55,
        position=2,
        capacity=10,
    )
    zh = resident_text(view, "zh")
    assert zh.labels == ("请去采样", "普通通道", "管内第 2/10 位", "张*", "体温 36.5℃")
    assert zh.line3 == "张*  体温 36.5℃"
    assert (zh.background, zh.icon) == ("go", "go")
    en = resident_text(view, "en")
    assert en.labels == (
        "Please go to sampling",
        "Main lane",
        "Tube place 2/10",
        "张*",
        "Temperature 36.5℃",
    )


def test_the_green_lane_has_its_own_background_and_words() -> None:
    view = View(State.RESULT, 0.0, decision="pool", lane="green", position=1, capacity=10)
    text = resident_text(view, "zh")
    assert text.background == "green" and text.line1 == "绿色通道（优先）"
    assert text.line3 == ""  # no name, no temperature: nothing made up
    assert resident_text(view, "en").line1 == "Green lane (priority)"


def test_a_single_sample_result_sends_to_the_single_desk() -> None:
    view = View(State.RESULT, 0.0, decision="single", lane="single", name="李*")
    assert resident_text(view, "zh").labels == (
        "单采台",
        "请到单采台单独采样",
        "李*",
        "",
        "",
    )
    assert resident_text(view, "en").labels[:2] == (
        "Single-sample desk",
        "Go to the single-sample desk",
    )


@pytest.mark.parametrize(
    ("view", "zh", "en"),
    [
        (
            View(State.WAIT, 0.0, prompt="wait.full", name="赵*"),
            ("请稍等", "采样管已满，正在换新管", "请在黄线后等候叫号", "赵*", ""),
            (
                "Please wait",
                "The tube is full. A new tube is coming.",
                "Wait behind the yellow line",
                "赵*",
                "",
            ),
        ),
        (
            View(State.WAIT, 0.0),
            ("请稍等", "正在准备采样管", "请在黄线后等候叫号", "", ""),
            (
                "Please wait",
                "The sampler is getting a tube ready.",
                "Wait behind the yellow line",
                "",
                "",
            ),
        ),
        (
            View(State.ISOLATION, 0.0, prompt="isolation.red", name="钱*"),
            ("请到临时隔离区", "健康码为红码", "工作人员会来帮助您。请跟随红灯。", "钱*", ""),
            (
                "Go to the isolation area",
                "Your health code is red",
                "Staff will come to help you. Follow the red light.",
                "钱*",
                "",
            ),
        ),
        (
            View(State.ISOLATION, 0.0),
            ("请到临时隔离区", "体温偏高", "工作人员会来帮助您。请跟随红灯。", "", ""),
            (
                "Go to the isolation area",
                "Your temperature is high",
                "Staff will come to help you. Follow the red light.",
                "",
                "",
            ),
        ),
        (
            View(State.STAFF, 0.0, reason="already_sampled"),
            ("请到工作人员服务台", "您在12小时内已采过样", "工作人员会帮您处理", "", ""),
            (
                "Please go to the staff desk",
                "You were sampled in the last hours",
                "The staff will help you there",
                "",
                "",
            ),
        ),
        (
            View(State.REMEASURE, 0.0, prompt="measure.again_why"),
            ("请再测一次", "请靠近测温器", "体温偏高，再测一次确认", "", ""),
            (
                "One more measurement, please",
                "Please move closer to the sensor",
                "The reading was high. We check it again.",
                "",
                "",
            ),
        ),
        (
            View(State.MEASURING, 0.0, name="孙*"),
            ("测量体温", "请靠近测温器", "", "孙*", ""),
            ("Temperature check", "Please move closer to the sensor", "", "孙*", ""),
        ),
        (
            View(State.MANUAL_TEMPERATURE, 0.0, name="孙*"),
            ("测量体温", "测温器故障，工作人员将为您测温", "", "孙*", ""),
            (
                "Temperature check",
                "Thermometer fault. Staff will take your temperature",
                "",
                "孙*",
                "",
            ),
        ),
        (
            View(State.FAULT, 0.0, fault=FaultKind.STORAGE, message_en="disk full"),
            ("暂停服务", "存储已满，无法登记，请找工作人员", "", "", ""),
            (
                "Out of service",
                "Storage is full. Nothing can be recorded. Ask the staff",
                "disk full",
                "",
                "",
            ),
        ),
    ],
    ids=lambda v: v.state.value if isinstance(v, View) else "",
)
def test_what_each_screen_says(view: View, zh: tuple[str, ...], en: tuple[str, ...]) -> None:
    assert resident_text(view, "zh").labels == zh
    assert resident_text(view, "en").labels == en


def test_a_rule_refusal_is_shown_in_its_own_words_and_a_fault_cut_short() -> None:
    refused = View(
        State.STAFF,
        0.0,
        reason="tube_barcode",
        message_en="That is a tube barcode.",
        message_zh="这是试管条码。",
    )
    assert resident_text(refused, "zh").line1 == "这是试管条码。"
    assert resident_text(refused, "en").line1 == "That is a tube barcode."
    fault = View(State.FAULT, 0.0, message_en="x" * 200)
    text = resident_text(fault, "en")
    assert (text.line1, text.line2) == ("System error. Ask the staff", "x" * 80)


def test_every_state_has_a_colour_an_icon_and_a_title_in_both_languages() -> None:
    views = sample_views(Thresholds())
    assert {v.state for v in views} == set(State)
    for view in views:
        for lang in LANGUAGES:
            text = resident_text(view, lang)
            assert text.background in COLOURS and text.icon and text.title, (view, lang)
    # every temperature from the plausible minimum to just under the fever threshold, once
    temps = [v.temperature_c for v in views if v.temperature_c is not None]
    assert len(temps) == len(set(temps)) == 33
    assert (min(temps), max(temps)) == (34.0, 37.2)


def test_the_offline_banner_shows_only_with_events_waiting() -> None:
    assert offline_banner(None, "zh") == ""
    assert offline_banner(LinkStatus("online", 5), "zh") == ""
    assert offline_banner(LinkStatus("offline", 0), "zh") == ""
    assert offline_banner(LinkStatus("offline", 3), "zh") == "网络离线，数据已保存"
    assert offline_banner(LinkStatus("connecting", 3), "en") == "Offline. Records are kept safe"


# -- the sampler panel ------------------------------------------------------------------------


def _counters(**over: int) -> Counters:
    base = {
        "checkins": 7,
        "waiting_pool": 2,
        "waiting_single": 0,
        "open_pool_members": 2,
        "tubes_sealed": 1,
        "tubes_voided": 0,
        "residents_sealed": 3,
        "boxes_dispatched": 0,
        "outbox_pending": 4,
    }
    base.update(over)
    return Counters(
        day="2026-11-23",
        by_decision={"pool": 4, "single": 1, "isolate": 1, "refer": 1},
        by_lane={},
        **base,  # type: ignore[arg-type]
    )


def _data(message: PanelMessage | None = None, tube: Tube | None = None) -> PanelData:
    return PanelData(
        tube=tube,
        names=("张*", "") if tube is not None else (),
        counters=_counters(),
        single_armed=False,
        temp_needed=True,
        fault=False,
        alerts=(("fever", "09:41"),),
        message=message,
    )


TUBE = Tube(
    "TB2026112300001",
    "pool",
    10,
    "open",
    ("R000001", "a-resident-with-a-long-id"),
    0.0,
    None,
)


@pytest.mark.parametrize("lang", LANGUAGES)
def test_the_panel_lists_the_tube_members_and_shortens_long_ids(lang: Language) -> None:
    text = panel_text(_data(tube=TUBE), LinkStatus("online", 0), lang)
    words = {"zh": "当前采样管", "en": "Open tube"}
    assert text.tube == f"{words[lang]} TB2026112300001  2/10"
    assert [(m.text, m.resident) for m in text.members] == [
        ("1. 张* · R000001", "R000001"),
        ("2. a-resident-w…", "a-resident-with-a-long-id"),
    ]
    assert text.temp_needed and not text.fault_active and not text.single_armed


def test_the_panel_counters_link_and_alerts_in_both_languages() -> None:
    link = LinkStatus("offline", 12, alerts={"storage_low": {"free_mb": 10}})
    zh = panel_text(_data(), link, "zh")
    assert zh.tube == "没有打开的采样管，请扫描新管" and zh.members == ()
    assert zh.counters == (
        "今日统计: 登记 7 · 混采 4 · 单采 1 · 隔离 1 · 转人工 1 · 已封管 1 · 排队 2 人"
    )
    assert zh.link == "网关连接: 离线 (offline) · 待发送 12 条 · 警报: 存储空间不足, 发热 09:41"
    assert zh.link_rgba == WARN_RGBA
    en = panel_text(_data(), LinkStatus("online", 0), "en")
    assert en.counters == (
        "Today: Check-ins 7 · Pooled 4 · Single 1 · Isolated 1 · Referred 1 · "
        "Sealed tubes 1 · 2 waiting"
    )
    assert en.link == "Gateway link: online (online) · 0 events to send · Alerts: fever 09:41"
    assert en.link_rgba == OK_RGBA


def test_without_the_agents_status_the_panel_counts_the_backlog_itself() -> None:
    text = panel_text(_data(), None, "en")
    assert text.link.startswith("Gateway link: offline (unknown) · 4 events to send")


def test_the_panels_answer_is_green_when_done_and_red_when_refused() -> None:
    done = panel_text(_data(PanelMessage(True, "Tube sealed.", "已封管。")), None, "zh")
    assert (done.message, done.message_rgba) == ("已封管。", OK_RGBA)
    refused = PanelMessage(False, "Scan the box's barcode first.", "请先扫描转运箱条码。")
    text = panel_text(_data(refused), None, "en")
    assert (text.message, text.message_rgba) == ("Scan the box's barcode first.", REFUSED_RGBA)
    assert panel_text(_data(), None, "en").message == ""


# -- the keypad -------------------------------------------------------------------------------


def test_the_keypad_hides_a_pin_and_says_what_to_type() -> None:
    pin = entry_text("pin", "2468", "green", "zh")
    assert (pin.prompt, pin.shown) == ("输入工号密码或刷工牌", "●●●●")
    temp = entry_text("temp", "36.5", "green", "en")
    assert (temp.prompt, temp.shown) == ("Enter temperature", "36.5℃")
    ident = entry_text("id", "11010519491231002X", "yellow", "zh")
    assert (ident.prompt, ident.shown, ident.color) == (
        "输入身份证号码",
        "11010519491231002X",
        "黄码",
    )
    assert keypad_keys("pin")[9] == "" and keypad_keys("id")[9] == "X"
    assert keypad_keys("temp") == [*"123456789", ".", "0", "←"]


def test_a_void_is_chosen_in_the_samplers_language_and_recorded_in_english() -> None:
    assert void_choices("zh") == [
        ("样本洒漏", "Sample spilled"),
        ("标签错误", "Wrong label"),
        ("可能污染", "Possibly contaminated"),
    ]
    assert [label for label, _ in void_choices("en")] == [
        reason for _, reason in void_choices("zh")
    ]


def test_the_presenter_imports_no_kivy() -> None:
    code = "import sys, kiosk_ui.screens.present; print('kivy' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "False"


# -- properties -------------------------------------------------------------------------------

LANES = sorted(k.removeprefix("lane.") for k in STRINGS if k.startswith("lane."))
PROMPTS = sorted(k for k in STRINGS if k.split(".")[0] in ("measure", "wait", "isolation"))


@st.composite
def views(draw: st.DrawFn) -> View:
    state = draw(st.sampled_from(State))
    position = draw(st.none() | st.integers(1, 20))
    return View(
        state,
        0.0,
        decision=draw(st.sampled_from(["pool", "single", "isolate", "refer"])),
        lane=draw(st.sampled_from(LANES)),
        reason=draw(st.none() | st.sampled_from(sorted(REASONS)) | st.text(max_size=20)),
        name=draw(st.none() | st.text(max_size=12)),
        temperature_c=draw(st.none() | st.floats(30, 45)),
        position=position,
        capacity=None if position is None else draw(st.integers(position, 20)),
        prompt=draw(st.none() | st.sampled_from(PROMPTS)),
        message_en=draw(st.none() | st.text(max_size=300)),
        message_zh=draw(st.none() | st.text(max_size=300)),
        fault=draw(st.none() | st.sampled_from(FaultKind)),
    )


@given(views(), st.sampled_from(LANGUAGES))
def test_every_view_has_a_colour_an_icon_and_a_title(view: View, lang: Language) -> None:
    text = resident_text(view, lang)
    assert text.background in COLOURS
    assert text.icon and text.title
    assert len(text.line2) <= 80 or view.state is not State.FAULT  # a fault's detail is cut
    if view.name and view.state not in (State.IDLE, State.FAULT):
        assert view.name in text.labels  # the resident sees their own masked name
    if view.state is State.RESULT and view.temperature_c:
        assert f"{view.temperature_c:.1f}" in text.line3


@given(
    st.lists(st.text(min_size=1, max_size=30), max_size=12),
    st.lists(st.text(max_size=8), max_size=12),
    st.sampled_from(LANGUAGES),
)
def test_the_panel_lists_every_member_once_in_order(
    members: list[str], names: list[str], lang: Language
) -> None:
    names = (names + [""] * len(members))[: len(members)]
    tube = Tube("TB2026112300001", "pool", 20, "open", tuple(members), 0.0, None)
    data = PanelData(tube, tuple(names), _counters(), False, False, False, (), None)
    text = panel_text(data, None, lang)
    assert [m.resident for m in text.members] == members
    for pos, line in enumerate(text.members, 1):
        assert line.text.startswith(f"{pos}. ")
        assert len(line.resident) <= 16 or "…" in line.text
