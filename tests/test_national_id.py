"""National ID numbers (GB 11643): the check character and the keyed ``sub``."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from firmware.errors import ConfigError
from kiosk_ui.core.national_id import (
    NationalIdError,
    check_char,
    derive_sub,
    load_key,
    validate,
)

KEY = b"campaign-id-key-0123456789abcdef"
# The example number printed in GB 11643-1999 itself.
EXAMPLE = "11010519491231002X"

dates = st.dates(min_value=dt.date(1900, 1, 1), max_value=dt.date(2026, 11, 23))


@st.composite
def numbers(draw: st.DrawFn) -> str:
    area = draw(st.from_regex(r"[1-6][0-9]{5}", fullmatch=True))
    born = draw(dates).strftime("%Y%m%d")
    seq = draw(st.from_regex(r"[0-9]{3}", fullmatch=True))
    first17 = area + born + seq
    return first17 + check_char(first17)


def test_the_standard_example_is_valid_in_any_case_and_spacing() -> None:
    assert check_char(EXAMPLE[:17]) == "X"
    assert validate("110105 19491231 002x") == EXAMPLE


@given(numbers())
def test_every_generated_number_validates(number: str) -> None:
    assert validate(number) == number


@given(numbers(), st.integers(0, 16), st.integers(1, 9))
def test_any_single_wrong_digit_is_caught(number: str, i: int, delta: int) -> None:
    wrong = number[:i] + str((int(number[i]) + delta) % 10) + number[i + 1 :]
    with pytest.raises(NationalIdError):
        validate(wrong)


@given(numbers(), st.integers(0, 15))
def test_swapped_neighbours_are_caught(number: str, i: int) -> None:
    if number[i] == number[i + 1]:
        return
    swapped = number[:i] + number[i + 1] + number[i] + number[i + 2 :]
    with pytest.raises(NationalIdError):
        validate(swapped)


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("1101051949123100", "id_length"),
        ("11010519491231002X9", "id_length"),
        ("1101051949123100AX", "id_characters"),
        ("X10105194912310023", "id_characters"),
        ("110105194902300021", "id_birth_date"),
        ("110105194912310021", "id_check"),
    ],
)
def test_each_kind_of_bad_number_says_what_is_wrong(text: str, code: str) -> None:
    with pytest.raises(NationalIdError) as err:
        validate(text)
    assert err.value.code == code
    assert err.value.message("zh") and err.value.message("en")


def test_sub_is_keyed_stable_and_never_the_number() -> None:
    sub = derive_sub(EXAMPLE, KEY)
    assert sub == derive_sub(EXAMPLE.lower(), KEY)
    assert sub != derive_sub(EXAMPLE, KEY[::-1])
    assert sub.startswith("nid:") and len(sub) <= 64
    assert EXAMPLE[:6] not in sub and "19491231" not in sub


def test_key_file_is_required_and_long_enough(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="id_hash_key_file"):
        load_key(None)
    short = tmp_path / "short.key"
    short.write_bytes(b"abc")
    with pytest.raises(ConfigError, match="at least 16 bytes"):
        load_key(short)
    with pytest.raises(ConfigError, match="No such file"):
        load_key(tmp_path / "missing.key")
    good = tmp_path / "id.key"
    good.write_bytes(KEY + b"\n")
    assert load_key(good) == KEY
