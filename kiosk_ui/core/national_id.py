"""Residents without a code: the national ID number (GB 11643-1999) and the keyed ``sub``.

Staff type the 18-character citizen identity number of a resident who has no code. The
check character (ISO 7064 MOD 11-2) catches a mistyped digit or two swapped digits before
anything is stored. The station never stores or sends the number: it derives the
resident's ``sub`` with HMAC-SHA256 under a key that comes with the configuration
(``kiosk.id_hash_key_file``), so the same person gets the same ``sub`` on every station of
the campaign while the number itself stays on the device, and only for the moment it takes.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import re
from pathlib import Path

from firmware.errors import ConfigError
from kiosk_ui.errors import NationalIdError

WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
CHECK_CHARS = "10X98765432"
_SHAPE = re.compile(r"^[0-9]{17}[0-9X]$")
SUB_PREFIX = "nid:"
MIN_KEY_BYTES = 16


def check_char(first17: str) -> str:
    """The GB 11643 check character of the first 17 digits."""
    if len(first17) != 17 or not first17.isdigit():
        raise ValueError("the check character is computed over exactly 17 digits")
    total = sum(int(d) * w for d, w in zip(first17, WEIGHTS, strict=True))
    return CHECK_CHARS[total % 11]


def normalize(text: str) -> str:
    """Spaces removed, a lower-case ``x`` made upper case (as people write it)."""
    return re.sub(r"\s+", "", text).upper()


def validate(text: str) -> str:
    """The normalised number, or NationalIdError saying what is wrong with it."""
    number = normalize(text)
    if len(number) != 18:
        raise NationalIdError(
            "id_length",
            f"An ID number has 18 characters; this one has {len(number)}.",
            f"身份证号码应为18位，当前为{len(number)}位。",
        )
    if not _SHAPE.match(number):
        raise NationalIdError(
            "id_characters",
            "Only digits, and X as the last character, are allowed.",
            "只能输入数字，最后一位可以是X。",
        )
    try:
        dt.date(int(number[6:10]), int(number[10:12]), int(number[12:14]))
    except ValueError:
        raise NationalIdError(
            "id_birth_date",
            "The date of birth in this number does not exist. Please check it.",
            "号码中的出生日期不存在，请核对。",
        ) from None
    if check_char(number[:17]) != number[17]:
        raise NationalIdError(
            "id_check",
            "The last character does not match. Please check the number.",
            "校验位不符，请核对号码。",
        )
    return number


def load_key(path: Path | None) -> bytes:
    """The campaign's ID hash key, from the file the configuration names."""
    if path is None:
        raise ConfigError(
            "kiosk.id_hash_key_file",
            ["not set: residents without a code cannot be checked in by ID number"],
        )
    try:
        raw = path.read_bytes().strip()
    except OSError as exc:
        raise ConfigError("kiosk.id_hash_key_file", [f"{path}: {exc.strerror}"]) from None
    if len(raw) < MIN_KEY_BYTES:
        raise ConfigError(
            "kiosk.id_hash_key_file", [f"{path}: the key must be at least {MIN_KEY_BYTES} bytes"]
        )
    return raw


def derive_sub(number: str, key: bytes) -> str:
    """The resident's pseudonymous ``sub``: HMAC-SHA256 of the validated number.

    43 characters of unpadded base64url after a ``nid:`` prefix, inside the 64 characters
    a ``sub`` may have, and never the number itself.
    """
    valid = validate(number)
    mac = hmac.new(key, valid.encode("ascii"), hashlib.sha256).digest()
    return SUB_PREFIX + base64.urlsafe_b64encode(mac).rstrip(b"=").decode("ascii")
