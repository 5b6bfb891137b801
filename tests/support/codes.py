"""Helpers for resident-code tests: a trusted issuer, and hand-built hostile messages."""

from __future__ import annotations

import zlib
from typing import Any

import base45
import cbor2

from kiosk_ui.drills.issuer import Issuer

NOW = 1_777_590_000  # 2026-05-01 07:00 +08:00


def qr_of_cose(cose: bytes) -> str:
    """``HC1:`` text of raw COSE bytes (no checks: the bytes may be anything)."""
    return "HC1:" + base45.b45encode(zlib.compress(cose)).decode("ascii")


def qr_of_cbor(item: Any) -> str:
    """``HC1:`` text of any CBOR item, for messages of the wrong shape."""
    return qr_of_cose(cbor2.dumps(item))


def good_claims(issuer: Issuer, **changes: Any) -> dict[Any, Any]:
    """Claims that pass every check at ``NOW``; ``changes`` replace (None removes) keys."""
    claims = issuer.claims("R-0001", "green", now=NOW, name="张三丰")
    for key, value in changes.items():
        k: Any = {"iss": 1, "sub": 2, "exp": 4, "iat": 6}.get(key, key)
        if value is None:
            claims.pop(k, None)
        else:
            claims[k] = value
    return claims
