"""Fuzzing the verifier: whatever the camera or the scanner delivers gets a reason, never an
exception and never a hang."""

from __future__ import annotations

from typing import Any

import base45
import cbor2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kiosk_ui.core.codes import MAX_TEXT_CHARS, CodeVerifier, Reason, TrustStore, Verdict
from kiosk_ui.drills.issuer import Issuer, encode_cose, jwks
from tests.support.codes import NOW, good_claims, qr_of_cbor, qr_of_cose

ISSUER = Issuer.generate("ES256", kid=b"fuzz")
ED_ISSUER = Issuer.generate("EdDSA", kid=b"fuzz")  # a shared kid: both keys get tried
VERIFIER = CodeVerifier(TrustStore.from_jwks(jwks([ISSUER, ED_ISSUER])))
VALID = ISSUER.issue("R-0001", now=NOW)
B45_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:"

# A hang would be a defect too: no test here may take long.
pytestmark = pytest.mark.timeout(120)

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
# Examples that sign a message each (a key operation per example) get fewer.
FUZZ_SIGNED = settings(FUZZ, max_examples=120)
REJECTIONS = set(Reason) - {Reason.NO_CODE}


def rejected(text: str | bytes) -> Verdict:
    verdict = VERIFIER.verify(text, NOW)
    assert not verdict.valid
    assert verdict.claims is None
    assert verdict.reason in REJECTIONS
    assert verdict.detail != "unexpected verifier failure"  # no decoder crash slipped through
    return verdict


def test_the_fuzzing_baseline_is_a_valid_code() -> None:
    assert VERIFIER.verify(VALID, NOW).valid


@FUZZ
@given(st.binary(max_size=2000))
def test_random_bytes(data: bytes) -> None:
    rejected(data)
    rejected(b"HC1:" + data)


@FUZZ
@given(st.text(max_size=500))
def test_random_text(text: str) -> None:
    rejected(text)
    verdict = rejected("HC1:" + text)
    assert verdict.reason == Reason.BAD_FORMAT


@FUZZ
@given(st.binary(min_size=1, max_size=300).filter(lambda b: b[0] > 0x7F))
def test_non_utf8_bytes(data: bytes) -> None:
    assert rejected(data).reason == Reason.NOT_A_CODE
    assert rejected(b"HC1:" + data).reason == Reason.BAD_FORMAT


@FUZZ
@given(st.text(alphabet=B45_ALPHABET, max_size=600))
def test_base45_alphabet_soup(body: str) -> None:
    assert rejected("HC1:" + body).reason == Reason.BAD_FORMAT


@FUZZ
@given(st.integers(min_value=4, max_value=len(VALID) - 1))
def test_a_truncated_code(cut: int) -> None:
    assert rejected(VALID[:cut]).reason == Reason.BAD_FORMAT


@FUZZ
@given(st.integers(min_value=4, max_value=len(VALID) - 1), st.sampled_from(B45_ALPHABET))
def test_one_character_changed(at: int, char: str) -> None:
    text = VALID[:at] + char + VALID[at + 1 :]
    if text == VALID:
        return
    # zlib's checksum, the CBOR structure or the signature catches every change.
    assert rejected(text).reason in {Reason.BAD_FORMAT, Reason.BAD_SIGNATURE}


@FUZZ
@given(st.binary(max_size=3000))
def test_valid_base45_of_garbage(data: bytes) -> None:
    assert rejected("HC1:" + base45.b45encode(data).decode()).reason == Reason.BAD_FORMAT


@FUZZ
@given(st.binary(max_size=3000))
def test_valid_zlib_of_garbage(data: bytes) -> None:
    rejected(qr_of_cose(data))


CBOR_LEAVES = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True)
    | st.binary(max_size=40)
    | st.text(max_size=20)
    | st.just(cbor2.undefined)
)


def _tagged(value: Any) -> st.SearchStrategy[Any]:
    return st.sampled_from([0, 1, 2, 4, 17, 18, 24, 37, 61, 98, 258, 55799, 9999]).map(
        lambda tag: cbor2.CBORTag(tag, value)
    )


CBOR_VALUES = st.recursive(
    CBOR_LEAVES,
    lambda inner: (
        st.lists(inner, max_size=5)
        | st.dictionaries(st.integers(-300, 300) | st.text(max_size=6), inner, max_size=5)
        | inner.flatmap(_tagged)
    ),
    max_leaves=25,
)


def _dumps(value: Any) -> bytes | None:
    try:
        return cbor2.dumps(value)
    except (cbor2.CBOREncodeError, TypeError, ValueError):
        return None


@FUZZ
@given(CBOR_VALUES)
def test_cbor_of_the_wrong_shape(value: Any) -> None:
    encoded = _dumps(value)
    if encoded is not None:
        rejected(qr_of_cose(encoded))


@FUZZ
@given(CBOR_VALUES, CBOR_VALUES, CBOR_VALUES, CBOR_VALUES, st.booleans())
def test_four_element_arrays_of_the_wrong_kinds(a: Any, b: Any, c: Any, d: Any, tag: bool) -> None:
    item: Any = [a, b, c, d]
    if tag:
        item = cbor2.CBORTag(18, item)
    if _dumps(item) is not None:
        rejected(qr_of_cbor(item))


@FUZZ_SIGNED
@given(
    st.dictionaries(st.integers(-10, 10) | st.text(max_size=4), CBOR_VALUES, max_size=4),
    st.dictionaries(st.integers(-10, 10) | st.text(max_size=4), CBOR_VALUES, max_size=4),
)
def test_hostile_headers_around_a_genuine_signature(
    protected: dict[Any, Any], unprotected: dict[Any, Any]
) -> None:
    if _dumps(protected) is None or _dumps(unprotected) is None:
        return
    cose = ISSUER.sign_cose(
        cbor2.dumps(good_claims(ISSUER)), protected=protected, unprotected=unprotected
    )
    verdict = VERIFIER.verify(encode_cose(cose), NOW)
    # Without ES256 and the trusted kid in the right places, it cannot be valid.
    assert verdict.detail != "unexpected verifier failure"
    if verdict.valid:
        assert protected.get(1) == -7
        assert (protected.get(4) or unprotected.get(4)) == b"fuzz"


@FUZZ_SIGNED
@given(
    st.dictionaries(
        st.sampled_from([1, 2, 4, 6, "color", "name", "cat", 3, -260]), CBOR_VALUES, max_size=7
    )
)
def test_signed_claims_of_every_shape(changes: dict[Any, Any]) -> None:
    """Genuinely signed claims maps: either valid with well-typed claims, or bad_claims/time."""
    claims = good_claims(ISSUER)
    claims.update(changes)
    if _dumps(claims) is None:
        return
    verdict = VERIFIER.verify(ISSUER.sign_claims(claims), NOW)
    assert verdict.detail != "unexpected verifier failure"
    if verdict.valid:
        assert verdict.claims is not None
        assert isinstance(verdict.claims.sub, str) and 1 <= len(verdict.claims.sub) <= 64
        assert verdict.claims.color in ("green", "yellow", "red")
        assert type(verdict.claims.exp) is int and type(verdict.claims.iat) is int
    else:
        assert verdict.reason in {Reason.BAD_CLAIMS, Reason.EXPIRED, Reason.NOT_YET_VALID}


@pytest.mark.timeout(30)
@pytest.mark.parametrize("size", [MAX_TEXT_CHARS + 1, 100_000, 5_000_000])
def test_huge_inputs_are_rejected(size: int) -> None:
    assert rejected("HC1:" + "0" * size).reason == Reason.BAD_FORMAT
    assert rejected(b"HC1:" + b"\xff" * size).reason == Reason.BAD_FORMAT
    assert rejected("X" * size).reason == Reason.NOT_A_CODE


@pytest.mark.timeout(30)
def test_deeply_nested_cbor_is_rejected() -> None:
    for opener in (b"\x81", b"\xa1\x01", b"\xd8\x12", b"\x9f"):
        assert rejected(qr_of_cose(opener * 2000 + b"\x00")).reason == Reason.BAD_FORMAT
