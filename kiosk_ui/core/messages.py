"""What a sampler or resident reads when the station refuses something, in zh and en.

Every ``RuleViolation`` the core raises is one :class:`Text` here, made into an exception by
:func:`violation` with the facts it names::

    raise violation(TUBE_EMPTY, tube="TB000123")

A text is a machine-readable ``code`` (the kiosk picks its screen by it; stable, tested) and
the two sentences, as ``str.format`` templates. ``{state}`` brings ``{state_zh}`` along and
``{what}`` brings ``{what_zh}``, so a caller names a tube state or a field once. The screens'
own words (titles, prompts) live in ``kiosk_ui.core.i18n``; these are the station's answers.
"""

from __future__ import annotations

from typing import Any, Final, NamedTuple

from kiosk_ui.errors import RuleViolation

MAX_TEXT: Final = 200  # characters of a sampler's name, a reason, a staff name

STATE_ZH: Final = {"open": "打开", "sealed": "封管", "voided": "作废", "dispatched": "装箱送出"}
WHAT_ZH: Final = {"sampler": "采样员", "reason": "原因", "staff": "工作人员"}


class Text(NamedTuple):
    """One refusal: its code and its sentences (templates of the facts it names)."""

    code: str
    en: str
    zh: str


def violation(text: Text, **facts: Any) -> RuleViolation:
    """``text`` filled in with ``facts``, as the exception to raise."""
    if "state" in facts:
        facts["state_zh"] = STATE_ZH.get(str(facts["state"]), facts["state"])
    if "what" in facts:
        facts["what_zh"] = WHAT_ZH.get(str(facts["what"]), facts["what"])
    return RuleViolation(
        text.code.format(**facts), text.en.format(**facts), text.zh.format(**facts)
    )


# -- what is typed or scanned ------------------------------------------------------------------

BAD_TEXT = Text(
    "bad_{what}",
    "A {what} of 1 to {most} characters is needed.",
    "需要填写{what_zh}（1至{most}个字符）。",
)
BAD_RESIDENT_ID = Text(
    "bad_resident_id",
    "The resident id must have 1 to 64 characters.",
    "居民编号须为1至64个字符。",
)
BAD_COLOR = Text(
    "bad_color",
    "The health code colour must be green, yellow or red.",
    "健康码颜色须为绿、黄或红。",
)
BAD_CATEGORY = Text(
    "bad_category",
    "Unknown priority group {group!r}.",
    "未知的优先人群 {group!r}。",
)
RESIDENT_CODE_ON_SCANNER = Text(
    "resident_code_on_scanner",
    "That is a resident's health code. Scan the tube barcode here; the resident shows "
    "the code to the kiosk camera.",
    "这是居民的健康码。这里请扫描试管条码；居民请在自助机摄像头前出示健康码。",
)
BARCODE_ON_CAMERA = Text(
    "{kind}_barcode_on_camera",
    "That is {thing_en} barcode, not a health code. Samplers scan it with the barcode "
    "scanner; residents show their health code here.",
    "这是{thing_zh}条码，不是健康码。采样员请用扫码枪扫描；居民请在此出示健康码。",
)
UNKNOWN_BARCODE = Text(
    "unknown_barcode",
    "{code!r} is neither a tube nor a box barcode. Scan the barcode on the tube label again.",
    "{code!r} 既不是试管条码也不是转运箱条码。请重新扫描试管标签上的条码。",
)
NOT_A_BOX = Text(
    "not_a_box",
    "{code!r} is not a box barcode. Scan the label on the box.",
    "{code!r} 不是转运箱条码。请扫描箱子上的标签。",
)

# -- the resident flow ---------------------------------------------------------------------------

TEMPERATURE_NEEDED = Text(
    "temperature_needed",
    "Please measure the temperature first.",
    "请先测量体温。",
)
KIOSK_BUSY = Text(
    "kiosk_busy",
    "Finish the resident on screen first.",
    "请先完成当前居民的登记。",
)

# -- tubes and boxes -----------------------------------------------------------------------------

UNKNOWN_TUBE = Text(
    "unknown_tube",
    "Tube {tube!r} is not known on this station.",
    "本站没有试管 {tube!r}。",
)
NO_OPEN_TUBE = Text(
    "no_open_tube",
    "No tube is open. Scan a tube barcode first.",
    "当前没有打开的试管。请先扫描试管条码。",
)
TUBE_USED = Text(
    "tube_already_used",
    "Tube {tube} was already used on this station ({state}). Take a new tube.",
    "试管 {tube} 已在本站使用过（{state_zh}）。请换一支新试管。",
)
TUBE_FULL = Text(
    "tube_full",
    "Tube {tube} is full ({count}/{capacity}). Seal it by touch first.",
    "试管 {tube} 已满（{count}/{capacity}）。请先点击封管。",
)
TUBE_STILL_OPEN = Text(
    "tube_still_open",
    "Tube {tube} is still open ({count}/{capacity}). Seal or void it first.",
    "试管 {tube} 仍未封管（{count}/{capacity}）。请先封管或作废。",
)
TUBE_EMPTY = Text(
    "tube_empty",
    "Tube {tube} has nobody in it. Void it instead of sealing.",
    "试管 {tube} 中还没有人。请作废而不是封管。",
)
TUBE_SEALED = Text(
    "tube_sealed",
    "Tube {tube} is sealed; its group can no longer change. Void the tube if needed.",
    "试管 {tube} 已封管，成员不能再更改。如有需要请作废该试管。",
)
TUBE_CLOSED = Text(
    "tube_{state}",
    "Tube {tube} is {state}.",
    "试管 {tube} 已{state_zh}。",
)
TUBE_NOT_VOIDABLE = Text(
    "tube_{state}",
    "Tube {tube} is {state}; it can no longer be voided.",
    "试管 {tube} 已{state_zh}，不能再作废。",
)
TUBE_NOT_DISPATCHABLE = Text(
    "tube_{state}",
    "Tube {tube} is {state}; only sealed tubes go in a box.",
    "试管 {tube} {state_zh}；只有已封管的试管才能装箱。",
)
NOT_IN_OPEN_TUBE = Text(
    "not_in_open_tube",
    "That resident is neither in the open tube nor waiting.",
    "该居民既不在当前试管中，也不在等候队列中。",
)
NOTHING_TO_DISPATCH = Text(
    "nothing_to_dispatch",
    "There is no sealed tube to put in the box.",
    "没有已封管的试管可装箱。",
)
SCAN_BOX_FIRST = Text(
    "scan_box",
    "Scan the box's barcode first.",
    "请先扫描转运箱条码。",
)
BOX_USED = Text(
    "box_already_used",
    "Box {box} was already dispatched from this station. Take a new box.",
    "转运箱 {box} 已从本站送出。请换一个新箱子。",
)


def required_text(value: str, what: str) -> str:
    """``value`` stripped, when it has 1 to ``MAX_TEXT`` characters (``bad_<what>`` if not)."""
    v = value.strip() if isinstance(value, str) else ""
    if not v or len(v) > MAX_TEXT:
        raise violation(BAD_TEXT, what=what, most=MAX_TEXT)
    return v
