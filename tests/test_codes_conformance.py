"""Conformance: real signed codes from national issuing systems (shared/conformance/dcc).

Every case's verdict must equal the reason the resident-code spec demands, from the text and
from the issuing system's own QR picture (through ``station verify-code --image``'s path).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import pytest

from firmware.qr import decode_image_file
from kiosk_ui.core.codes import CodeVerifier, Reason, TrustStore
from kiosk_ui.verify_cli import verdict_for
from tests.conftest import SHARED

DCC = SHARED / "conformance" / "dcc"
CASES_FILE = DCC / "cases.json"
KEYS = DCC / "keys.jwks.json"

pytestmark = pytest.mark.skipif(
    not CASES_FILE.is_file() or not KEYS.is_file(),
    reason=f"conformance data absent: {DCC} (shared/conformance beside the project root)",
)

# Any moment works: no case is valid, and the validity time is checked after the claims
# (which every cryptographically sound case fails: DCCs carry no colour).
NOW = 1_700_000_000


def _cases() -> list[dict[str, Any]]:
    if not CASES_FILE.is_file():
        return []
    cases: list[dict[str, Any]] = json.loads(CASES_FILE.read_text())
    return cases


@pytest.fixture(scope="module")
def verifier() -> CodeVerifier:
    return CodeVerifier(TrustStore.load(KEYS))


def test_the_set_is_complete() -> None:
    cases = _cases()
    assert len(cases) == 533
    assert sum("png" in c for c in cases) == 474
    assert {c["reason"] for c in cases} <= {r.value for r in Reason}


def test_every_case_from_its_text(verifier: CodeVerifier) -> None:
    cases = _cases()
    disagreements = []
    for case in cases:
        verdict = verifier.verify(case["qr"], NOW)
        if verdict.valid != case["valid"] or verdict.reason != case["reason"]:
            disagreements.append((case["source"], case["reason"], verdict.reason, verdict.detail))
    assert disagreements == []
    assert len(cases) == 533


def test_every_reason_in_the_set_is_reached() -> None:
    reasons = {c["reason"] for c in _cases()}
    assert reasons == {"bad_claims", "bad_alg", "bad_format", "bad_signature"}


@pytest.mark.timeout(120)
def test_every_case_from_its_picture() -> None:
    cases = [c for c in _cases() if "png" in c]
    disagreements = []
    for case in cases:
        args = argparse.Namespace(keys=KEYS, at=float(NOW), image=DCC / case["png"], text=None)
        verdict = verdict_for(args)
        if verdict.valid != case["valid"] or verdict.reason != case["reason"]:
            disagreements.append((case["png"], case["reason"], verdict.reason, verdict.detail))
    assert disagreements == []
    assert len(cases) == 474


def test_the_pictures_decode_to_the_cases_text() -> None:
    """The picture path reads the issuers' own images exactly (not merely the same verdict)."""
    cases = [c for c in _cases() if "png" in c][::10]
    assert cases
    for case in cases:
        assert decode_image_file(Path(DCC / case["png"])) == [case["qr"]]
