"""The refusals' texts: each names the same facts in zh and en, and fills in from them."""

from __future__ import annotations

import string

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kiosk_ui.core import messages
from kiosk_ui.core.messages import Text, violation

TEXTS = {name: v for name, v in vars(messages).items() if isinstance(v, Text)}


def _fields(template: str) -> set[str]:
    return {f for _, f, _, _ in string.Formatter().parse(template) if f}


def _facts(text: Text) -> set[str]:
    """What a caller names: ``state``/``what`` bring their zh words; ``thing`` is per language."""
    names = _fields(text.code) | _fields(text.en) | _fields(text.zh)
    names -= {"state_zh", "what_zh"}
    return {n.removesuffix("_en").removesuffix("_zh") for n in names}


def test_there_is_one_text_per_refusal() -> None:
    assert len(TEXTS) >= 24  # the station's, the barcodes', the rules', the flow's, the panel's
    assert len({(t.en, t.zh) for t in TEXTS.values()}) == len(TEXTS)


@pytest.mark.parametrize("name", sorted(TEXTS))
def test_zh_and_en_name_the_same_facts(name: str) -> None:
    text = TEXTS[name]
    en = {f.removesuffix("_en") for f in _fields(text.en)}
    zh = {f.removesuffix("_zh") for f in _fields(text.zh)}
    assert en == zh, name
    assert any("\u4e00" <= ch <= "\u9fff" for ch in text.zh), name
    assert text.code and text.en.endswith(".") and text.zh.endswith("。"), name


@given(st.sampled_from(sorted(TEXTS)), st.text(min_size=1, max_size=20))
def test_every_text_fills_in_from_its_facts(name: str, value: str) -> None:
    text = TEXTS[name]
    facts: dict[str, object] = {}
    for fact in _facts(text):
        if fact == "state":
            facts[fact] = "sealed"
        elif fact == "what":
            facts[fact] = "reason"
        elif fact == "kind":  # a scan kind names the code itself: "tube" or "box", never free text
            facts[fact] = "tube"
        elif fact == "thing":
            facts.update(thing_en=value, thing_zh=value)
        else:
            facts[fact] = value
    exc = violation(text, **facts)
    assert "{" not in exc.code
    assert exc.message("en") == exc.en and exc.message("zh") == exc.zh
    for fact, v in facts.items():
        if fact not in ("state", "what", "kind"):
            assert str(v) in exc.en or repr(v) in exc.en or fact.endswith("_zh")


def test_a_state_and_a_field_bring_their_chinese_words() -> None:
    exc = violation(messages.TUBE_CLOSED, tube="TB1", state="voided")
    assert (exc.code, exc.en, exc.zh) == ("tube_voided", "Tube TB1 is voided.", "试管 TB1 已作废。")
    exc = violation(messages.BAD_TEXT, what="sampler", most=200)
    assert exc.code == "bad_sampler" and "采样员" in exc.zh and "1 to 200" in exc.en
