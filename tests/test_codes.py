"""Resident-code verification: every rejection reason, the check order, every envelope shape."""

from __future__ import annotations

import zlib
from typing import Any

import base45
import cbor2
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from kiosk_ui.core.codes import (
    MAX_COSE_BYTES,
    MAX_TEXT_CHARS,
    Claims,
    CodeVerifier,
    Reason,
    TrustStore,
    Verdict,
    mask_name,
    rejection_message,
)
from kiosk_ui.drills.issuer import Issuer, encode_cose, jwks
from tests.support.codes import NOW, good_claims, qr_of_cbor, qr_of_cose

DAY = 24 * 3600


@pytest.fixture(scope="module")
def es() -> Issuer:
    return Issuer.generate("ES256", kid=b"es-kid-1")


@pytest.fixture(scope="module")
def ed() -> Issuer:
    return Issuer.generate("EdDSA", kid=b"ed-kid-1")


@pytest.fixture(scope="module")
def stranger() -> Issuer:
    """An issuer nobody trusts."""
    return Issuer.generate("ES256", kid=b"stranger")


@pytest.fixture(scope="module")
def verifier(es: Issuer, ed: Issuer) -> CodeVerifier:
    return CodeVerifier(TrustStore.from_jwks(jwks([es, ed])))


def reason(verifier: CodeVerifier, text: str | bytes, now: float = NOW) -> Reason | None:
    verdict = verifier.verify(text, now)
    assert verdict.valid == (verdict.reason is None)
    assert (verdict.claims is None) == (not verdict.valid)
    return verdict.reason


# ------------------------------------------------------------------------ valid codes


@pytest.mark.parametrize("alg", ["ES256", "EdDSA"])
def test_a_valid_code_yields_its_claims(alg: str) -> None:
    issuer = Issuer.generate(alg, iss="T07-HEALTH")  # type: ignore[arg-type]
    verifier = CodeVerifier(TrustStore.from_jwks(jwks([issuer])))
    text = issuer.issue("R-42", "yellow", name="李小龙", cat=["elderly", "disabled"], now=NOW)
    verdict = verifier.verify(text, NOW)
    assert verdict == Verdict.ok(
        Claims(
            iss="T07-HEALTH",
            sub="R-42",
            exp=NOW + DAY,
            iat=NOW,
            color="yellow",
            name="李小龙",
            cat=("elderly", "disabled"),
        )
    )
    assert verdict.as_json() == {
        "valid": True,
        "reason": None,
        "claims": {
            "iss": "T07-HEALTH",
            "sub": "R-42",
            "exp": NOW + DAY,
            "iat": NOW,
            "color": "yellow",
            "name": "李小龙",
            "cat": ["elderly", "disabled"],
        },
    }


@pytest.mark.parametrize("color", ["green", "yellow", "red"])
def test_every_color_is_a_valid_code(verifier: CodeVerifier, es: Issuer, color: str) -> None:
    verdict = verifier.verify(es.issue("R-1", color, now=NOW), NOW)
    assert verdict.claims is not None
    assert verdict.claims.color == color
    assert verdict.claims.name is None
    assert verdict.claims.cat == ()


@pytest.mark.parametrize(
    ("tag", "cwt_tag", "kid_unprotected"),
    [
        (True, False, False),
        (False, False, False),
        (True, True, False),
        (False, True, False),
        (True, False, True),
        (False, False, True),
        (True, True, True),
    ],
)
@pytest.mark.parametrize("which", ["es", "ed"])
def test_every_envelope_shape_verifies(
    request: pytest.FixtureRequest,
    verifier: CodeVerifier,
    which: str,
    tag: bool,
    cwt_tag: bool,
    kid_unprotected: bool,
) -> None:
    issuer: Issuer = request.getfixturevalue(which)
    text = issuer.sign_claims(
        good_claims(issuer), tag=tag, cwt_tag=cwt_tag, kid_unprotected=kid_unprotected
    )
    # The shape asked for is the shape on the wire.
    item = cbor2.loads(zlib.decompress(base45.b45decode(text[4:])))
    if cwt_tag:
        assert item.tag == 61
        item = item.value
    if tag:
        assert item.tag == 18
        item = item.value
    assert isinstance(item, list | tuple)
    protected = cbor2.loads(item[0])
    assert (4 in protected) != kid_unprotected
    assert (4 in item[1]) == kid_unprotected
    verdict = verifier.verify(text, NOW)
    assert verdict.valid, verdict.detail
    assert verdict.claims is not None
    assert verdict.claims.sub == "R-0001"


def test_bytes_input_and_a_scanners_line_end_are_accepted(
    verifier: CodeVerifier, es: Issuer
) -> None:
    text = es.issue("R-1", now=NOW)
    assert verifier.verify(text.encode("ascii"), NOW).valid
    assert verifier.verify(text + "\r\n", NOW).valid
    assert verifier.verify(text.encode("ascii") + b"\n", NOW).valid


def test_other_claims_are_ignored(verifier: CodeVerifier, es: Issuer) -> None:
    claims = good_claims(es)
    claims.update({-260: {1: {"v": [{"dn": 2}]}}, 99: "x", "vac": [1, 2], "iss": 5, 3: "aud"})
    verdict = verifier.verify(es.sign_claims(claims), NOW)
    assert verdict.valid, verdict.detail
    assert verdict.claims is not None
    assert verdict.claims.iss == "T01-HEALTH"


def test_sub_of_exactly_64_characters_is_valid(verifier: CodeVerifier, es: Issuer) -> None:
    sub = "居" * 64
    verdict = verifier.verify(es.sign_claims(good_claims(es, sub=sub)), NOW)
    assert verdict.claims is not None
    assert verdict.claims.sub == sub


# ------------------------------------------------------------------- shared kid, keys


def test_several_keys_may_share_a_kid_and_each_is_tried() -> None:
    kid = b"shared"
    first, second, third = (Issuer.generate("ES256", kid=kid) for _ in range(3))
    eddsa = Issuer.generate("EdDSA", kid=kid)
    trust = TrustStore.from_jwks(jwks([first, second, eddsa]))
    assert len(trust.keys_for(kid)) == 3
    verifier = CodeVerifier(trust)
    for issuer in (first, second, eddsa):
        verdict = verifier.verify(issuer.issue("R-1", now=NOW), NOW)
        assert verdict.valid, verdict.detail
    # Same kid, but no key under it made this signature.
    assert reason(verifier, third.issue("R-1", now=NOW)) == Reason.BAD_SIGNATURE


def test_duplicate_keys_in_the_trust_file_count_once(es: Issuer) -> None:
    trust = TrustStore.from_jwks({"keys": [es.jwk(), es.jwk(), es.jwk()]})
    assert len(trust) == 1


def test_a_kid_whose_keys_are_for_another_algorithm_is_unknown() -> None:
    kid = b"one-kid"
    ec_issuer = Issuer.generate("ES256", kid=kid)
    ed_issuer = Issuer.generate("EdDSA", kid=kid)
    verifier = CodeVerifier(TrustStore.from_jwks(jwks([ec_issuer])))
    assert reason(verifier, ed_issuer.issue("R-1", now=NOW)) == Reason.UNKNOWN_KEY


def test_an_empty_trust_file_rejects_every_code(es: Issuer) -> None:
    verifier = CodeVerifier(TrustStore.from_jwks({"keys": []}))
    assert reason(verifier, es.issue("R-1", now=NOW)) == Reason.UNKNOWN_KEY


# ------------------------------------------------------------------ each reason alone


@pytest.mark.parametrize(
    "text",
    ["TUBE-0012345", "", "hc1:NCF", "HC2:NCF", " HC1:NCF", "https://example.org/qr", "HC1"],
)
def test_not_a_code(verifier: CodeVerifier, text: str) -> None:
    assert reason(verifier, text) == Reason.NOT_A_CODE
    assert reason(verifier, text.encode()) == Reason.NOT_A_CODE


def test_not_a_code_for_non_text_input(verifier: CodeVerifier) -> None:
    assert reason(verifier, None) == Reason.NOT_A_CODE  # type: ignore[arg-type]
    assert reason(verifier, b"\xff\xfe\x00HC1:") == Reason.NOT_A_CODE


def _cose(issuer: Issuer, claims: Any = None, **kw: Any) -> bytes:
    payload = cbor2.dumps(good_claims(issuer) if claims is None else claims)
    return issuer.sign_cose(payload, **kw)


def _bad_format_texts(es: Issuer) -> dict[str, str]:
    good = _cose(es)
    sign1 = cbor2.loads(good).value
    prot, unprot, payload, sig = sign1
    bomb = zlib.compress(b"\0" * (3 * 1024 * 1024), 9)
    return {
        "empty after prefix": "HC1:",
        "not Base45 alphabet": "HC1:abc",
        "Base45 length 3n+1": "HC1:" + base45.b45encode(zlib.compress(good)).decode() + "0",
        "Base45 triplet above 65535": "HC1:GGW",
        "non-ASCII after prefix": "HC1:张三",
        "over the length bound": "HC1:" + "0" * (MAX_TEXT_CHARS + 3),
        "not zlib": "HC1:" + base45.b45encode(good).decode(),
        "truncated zlib": "HC1:" + base45.b45encode(zlib.compress(good)[:-6]).decode(),
        "bytes after zlib": "HC1:" + base45.b45encode(zlib.compress(good) + b"\0").decode(),
        "zlib bomb": "HC1:" + base45.b45encode(bomb).decode(),
        "not CBOR": qr_of_cose(b"\xff\xff\xff"),
        "bytes after the CBOR": qr_of_cose(good + b"\x00"),
        "CBOR integer": qr_of_cbor(7),
        "map instead of array": qr_of_cbor({1: prot, 2: payload}),
        "array of three": qr_of_cbor([prot, unprot, payload]),
        "array of five": qr_of_cbor([prot, unprot, payload, sig, b""]),
        "COSE_Mac0 tag": qr_of_cbor(cbor2.CBORTag(17, [prot, {}, payload, sig])),
        "COSE_Sign tag": qr_of_cbor(cbor2.CBORTag(98, [prot, {}, payload, []])),
        "tag 18 inside tag 61 inside tag 18": qr_of_cbor(
            cbor2.CBORTag(18, cbor2.CBORTag(61, cbor2.CBORTag(18, list(sign1))))
        ),
        "protected as a map": qr_of_cbor([{1: -7}, unprot, payload, sig]),
        "protected not CBOR": qr_of_cbor([b"\xff", unprot, payload, sig]),
        "protected an array": qr_of_cbor([cbor2.dumps([1, -7]), unprot, payload, sig]),
        "unprotected a list": qr_of_cbor([prot, [], payload, sig]),
        "detached payload": qr_of_cbor([prot, unprot, None, sig]),
        "payload text": qr_of_cbor([prot, unprot, "claims", sig]),
        "payload not CBOR": encode_cose(es.sign_cose(b"\xff\x00")),
        "signature text": qr_of_cbor([prot, unprot, payload, "sig"]),
        "kid text": encode_cose(
            es.sign_cose(cbor2.dumps(good_claims(es)), protected={1: -7, 4: "es-kid-1"})
        ),
        "CBOR nested too deep": qr_of_cose(b"\x81" * 40 + b"\x01"),
        "a header map with a repeated key": qr_of_cose(
            b"\xd2\x84"
            + cbor2.dumps(prot)
            + b"\xa2\x04"
            + cbor2.dumps(es.kid)
            + b"\x04"
            + cbor2.dumps(b"other")
            + cbor2.dumps(payload)
            + cbor2.dumps(sig)
        ),
        "invalid UTF-8 in CBOR text": qr_of_cose(
            cbor2.dumps([prot, unprot, payload, sig])[:-1] + b"\x61\xff"
        ),
    }


BAD_FORMAT_CASES = [
    "empty after prefix",
    "not Base45 alphabet",
    "Base45 length 3n+1",
    "Base45 triplet above 65535",
    "non-ASCII after prefix",
    "over the length bound",
    "not zlib",
    "truncated zlib",
    "bytes after zlib",
    "zlib bomb",
    "not CBOR",
    "bytes after the CBOR",
    "CBOR integer",
    "map instead of array",
    "array of three",
    "array of five",
    "COSE_Mac0 tag",
    "COSE_Sign tag",
    "tag 18 inside tag 61 inside tag 18",
    "protected as a map",
    "protected not CBOR",
    "protected an array",
    "unprotected a list",
    "detached payload",
    "payload text",
    "payload not CBOR",
    "signature text",
    "kid text",
    "CBOR nested too deep",
    "a header map with a repeated key",
    "invalid UTF-8 in CBOR text",
]


@pytest.mark.parametrize("case", BAD_FORMAT_CASES)
def test_bad_format(verifier: CodeVerifier, es: Issuer, case: str) -> None:
    text = _bad_format_texts(es)[case]
    verdict = verifier.verify(text, NOW)
    assert verdict.reason == Reason.BAD_FORMAT, verdict.detail
    assert verdict.detail != "unexpected verifier failure"


def test_the_zlib_bomb_is_stopped_by_the_output_bound(verifier: CodeVerifier) -> None:
    bomb = zlib.compress(b"\0" * (3 * 1024 * 1024), 9)
    text = "HC1:" + base45.b45encode(bomb).decode()
    assert len(text) < MAX_TEXT_CHARS  # small enough to pass the length bound
    verdict = verifier.verify(text, NOW)
    assert verdict.reason == Reason.BAD_FORMAT
    assert str(MAX_COSE_BYTES) in verdict.detail


def test_all_bad_format_cases_are_tested() -> None:
    assert sorted(BAD_FORMAT_CASES) == sorted(_bad_format_texts(Issuer.generate()))


@pytest.mark.parametrize(
    ("protected", "unprotected"),
    [
        ({1: -35, 4: b"es-kid-1"}, {}),  # ES384
        ({1: -37, 4: b"es-kid-1"}, {}),  # PS256
        ({1: -257, 4: b"es-kid-1"}, {}),  # RS256
        ({1: 0, 4: b"es-kid-1"}, {}),
        ({1: "ES256", 4: b"es-kid-1"}, {}),
        ({1: True, 4: b"es-kid-1"}, {}),
        ({4: b"es-kid-1"}, {}),  # no alg at all
        ({4: b"es-kid-1"}, {1: -7}),  # alg only where the signature does not cover it
        ({}, {1: -7, 4: b"es-kid-1"}),  # empty protected header
    ],
)
def test_bad_alg(
    verifier: CodeVerifier, es: Issuer, protected: dict[int, Any], unprotected: dict[int, Any]
) -> None:
    cose = _cose(es, protected=protected, unprotected=unprotected)
    assert reason(verifier, encode_cose(cose)) == Reason.BAD_ALG


def test_unknown_key(verifier: CodeVerifier, stranger: Issuer) -> None:
    assert reason(verifier, stranger.issue("R-1", now=NOW)) == Reason.UNKNOWN_KEY


def test_no_kid_in_either_header_is_an_unknown_key(verifier: CodeVerifier, es: Issuer) -> None:
    cose = _cose(es, protected={1: -7}, unprotected={})
    assert reason(verifier, encode_cose(cose)) == Reason.UNKNOWN_KEY


def test_protected_kid_wins_over_unprotected(verifier: CodeVerifier, es: Issuer) -> None:
    good = _cose(es, protected={1: -7, 4: es.kid}, unprotected={4: b"stranger"})
    assert verifier.verify(encode_cose(good), NOW).valid
    wrong = _cose(es, protected={1: -7, 4: b"stranger"}, unprotected={4: es.kid})
    assert reason(verifier, encode_cose(wrong)) == Reason.UNKNOWN_KEY


def _resign(cose: bytes, signature: bytes) -> bytes:
    item = cbor2.loads(cose)
    prot, unprot, payload, _sig = item.value
    return cbor2.dumps(cbor2.CBORTag(18, [prot, dict(unprot), payload, signature]))


def test_bad_signature_forms(verifier: CodeVerifier, es: Issuer, ed: Issuer) -> None:
    good = _cose(es)
    sig = cbor2.loads(good).value[3]
    assert len(sig) == 64
    flipped = bytes([sig[0] ^ 1]) + sig[1:]
    for bad in (flipped, sig[:63], sig + b"\0", b"", b"\0" * 64):
        assert reason(verifier, encode_cose(_resign(good, bad))) == Reason.BAD_SIGNATURE
    ed_good = _cose(ed)
    ed_sig = cbor2.loads(ed_good).value[3]
    for bad in (ed_sig[:-1] + bytes([ed_sig[-1] ^ 0x80]), ed_sig[:32]):
        assert reason(verifier, encode_cose(_resign(ed_good, bad))) == Reason.BAD_SIGNATURE


def test_a_der_encoded_ecdsa_signature_is_rejected() -> None:
    """COSE carries r||s; a DER signature (what some signers wrongly emit) does not verify."""
    key = ec.generate_private_key(ec.SECP256R1())
    issuer = Issuer(key, b"der")
    verifier = CodeVerifier(TrustStore.from_jwks(jwks([issuer])))
    prot = cbor2.dumps({1: -7, 4: b"der"})
    payload = cbor2.dumps(good_claims(issuer))
    to_sign = cbor2.dumps(["Signature1", prot, b"", payload])
    der = key.sign(to_sign, ec.ECDSA(hashes.SHA256()))
    text = qr_of_cbor(cbor2.CBORTag(18, [prot, {}, payload, der]))
    assert reason(verifier, text) == Reason.BAD_SIGNATURE
    raw = issuer.sign(to_sign)
    assert verifier.verify(qr_of_cbor(cbor2.CBORTag(18, [prot, {}, payload, raw])), NOW).valid


def test_a_changed_claim_breaks_the_signature(verifier: CodeVerifier, es: Issuer) -> None:
    cose = cbor2.loads(_cose(es, good_claims(es, color="red"))).value
    forged = cbor2.dumps(good_claims(es, color="green"))
    text = qr_of_cbor(cbor2.CBORTag(18, [cose[0], {}, forged, cose[3]]))
    assert reason(verifier, text) == Reason.BAD_SIGNATURE


BAD_CLAIMS: dict[str, dict[str, Any]] = {
    "no iss": {"iss": None},
    "iss integer": {"iss": 7},
    "iss empty": {"iss": ""},
    "no sub": {"sub": None},
    "sub empty": {"sub": ""},
    "sub 65 characters": {"sub": "x" * 65},
    "sub integer": {"sub": 12345},
    "sub bytes": {"sub": b"R-1"},
    "no exp": {"exp": None},
    "exp float": {"exp": float(NOW + DAY)},
    "exp text": {"exp": str(NOW + DAY)},
    "exp true": {"exp": True},
    "exp epoch datetime tag": {"exp": cbor2.CBORTag(1, NOW + DAY)},
    "no iat": {"iat": None},
    "iat float": {"iat": NOW + 0.5},
    "no color": {"color": None},
    "color blue": {"color": "blue"},
    "color capitalised": {"color": "Green"},
    "color integer": {"color": 1},
    "name integer": {"name": 5},
    "name null": {"name": cbor2.undefined},
    "cat a string": {"cat": "elderly"},
    "cat unknown group": {"cat": ["elderly", "vip"]},
    "cat with a number": {"cat": [1]},
    "cat a map": {"cat": {"elderly": True}},
}


@pytest.mark.parametrize("case", list(BAD_CLAIMS))
def test_bad_claims(verifier: CodeVerifier, es: Issuer, case: str) -> None:
    text = es.sign_claims(good_claims(es, **BAD_CLAIMS[case]))
    verdict = verifier.verify(text, NOW)
    assert verdict.reason == Reason.BAD_CLAIMS, verdict.detail
    assert verdict.claims is None


def test_claims_named_by_text_instead_of_their_keys_are_bad(
    verifier: CodeVerifier, es: Issuer
) -> None:
    claims = {"iss": "T01-HEALTH", "sub": "R-1", "exp": NOW + DAY, "iat": NOW, "color": "green"}
    assert reason(verifier, es.sign_claims(claims)) == Reason.BAD_CLAIMS


@pytest.mark.parametrize("payload", [[1, 2], "claims", 7, None, cbor2.CBORTag(61, {})])
def test_a_payload_that_is_not_a_map_is_bad_claims(
    verifier: CodeVerifier, es: Issuer, payload: Any
) -> None:
    assert reason(verifier, encode_cose(es.sign_cose(cbor2.dumps(payload)))) == Reason.BAD_CLAIMS


def test_a_null_name_is_rejected_but_a_missing_one_is_fine(
    verifier: CodeVerifier, es: Issuer
) -> None:
    assert reason(verifier, es.sign_claims(good_claims(es, name=None))) is None
    claims = good_claims(es)
    claims["name"] = None
    assert reason(verifier, es.sign_claims(claims)) == Reason.BAD_CLAIMS


# ------------------------------------------------------------------ validity and leeway


@pytest.mark.parametrize(
    ("exp_offset", "iat_offset", "expected"),
    [
        (DAY, 0, None),
        (0, -DAY, None),  # exp == now: still inside the leeway
        (-59, -DAY, None),
        (-60, -DAY, Reason.EXPIRED),
        (-61, -DAY, Reason.EXPIRED),
        (-DAY, -2 * DAY, Reason.EXPIRED),
        (DAY, 59, None),
        (DAY, 60, None),
        (DAY, 61, Reason.NOT_YET_VALID),
        (2 * DAY, DAY, Reason.NOT_YET_VALID),
    ],
)
def test_validity_time_with_60_s_leeway(
    verifier: CodeVerifier,
    es: Issuer,
    exp_offset: int,
    iat_offset: int,
    expected: Reason | None,
) -> None:
    text = es.issue("R-1", exp=NOW + exp_offset, iat=NOW + iat_offset, now=NOW)
    assert reason(verifier, text) == expected


def test_fractional_now_at_the_edges(verifier: CodeVerifier, es: Issuer) -> None:
    text = es.issue("R-1", exp=NOW, iat=NOW - DAY, now=NOW)
    assert reason(verifier, text, NOW + 59.999) is None
    assert reason(verifier, text, NOW + 60.0) == Reason.EXPIRED
    early = es.issue("R-1", iat=NOW, now=NOW)
    assert reason(verifier, early, NOW - 60.0) is None
    assert reason(verifier, early, NOW - 60.001) == Reason.NOT_YET_VALID


def test_a_clock_that_reads_nonsense_fails_closed(verifier: CodeVerifier, es: Issuer) -> None:
    text = es.issue("R-1", now=NOW)
    assert reason(verifier, text, float("nan")) == Reason.EXPIRED
    assert reason(verifier, text, float("inf")) == Reason.EXPIRED
    assert reason(verifier, text, float("-inf")) == Reason.NOT_YET_VALID


def test_a_leeway_of_zero(es: Issuer) -> None:
    verifier = CodeVerifier(TrustStore.from_jwks(jwks([es])), leeway_s=0)
    text = es.issue("R-1", exp=NOW + 1, iat=NOW, now=NOW)
    assert reason(verifier, text, NOW) is None
    assert reason(verifier, text, NOW + 1) == Reason.EXPIRED
    assert reason(verifier, text, NOW - 1) == Reason.NOT_YET_VALID
    with pytest.raises(ValueError, match="leeway"):
        CodeVerifier(TrustStore(), leeway_s=-1)


# ---------------------------------------------------------- the order of the checks


def test_prefix_before_format(verifier: CodeVerifier, es: Issuer) -> None:
    # A valid code's body without its prefix is not a code, whatever it holds.
    assert reason(verifier, es.issue("R-1", now=NOW)[4:]) == Reason.NOT_A_CODE
    assert reason(verifier, "X" * (MAX_TEXT_CHARS * 4)) == Reason.NOT_A_CODE


def test_format_before_algorithm(verifier: CodeVerifier, es: Issuer) -> None:
    cose = cbor2.loads(_cose(es, protected={1: -37, 4: es.kid})).value
    assert reason(verifier, encode_cose(cbor2.dumps(cose))) == Reason.BAD_ALG
    broken = [cose[0], cose[1], cose[2], "not bytes"]  # bad alg AND a broken structure
    assert reason(verifier, qr_of_cbor(broken)) == Reason.BAD_FORMAT
    text_kid = _cose(es, protected={1: -37, 4: "es-kid-1"})
    assert reason(verifier, encode_cose(text_kid)) == Reason.BAD_FORMAT


def test_algorithm_before_key(verifier: CodeVerifier, stranger: Issuer) -> None:
    text = stranger.sign_claims(good_claims(stranger), alg_override=-35)
    assert reason(verifier, text) == Reason.BAD_ALG


def test_algorithm_before_signature_and_claims(verifier: CodeVerifier, es: Issuer) -> None:
    text = es.sign_claims(good_claims(es, color=None, exp=NOW - DAY), alg_override=-257)
    assert reason(verifier, text) == Reason.BAD_ALG


def test_key_before_signature(verifier: CodeVerifier, stranger: Issuer) -> None:
    cose = _resign(_cose(stranger), b"\0" * 64)
    assert reason(verifier, encode_cose(cose)) == Reason.UNKNOWN_KEY


def test_key_before_claims_and_time(verifier: CodeVerifier, stranger: Issuer) -> None:
    text = stranger.sign_claims(good_claims(stranger, color=None, exp=NOW - DAY))
    assert reason(verifier, text) == Reason.UNKNOWN_KEY


def test_signature_before_claims_and_time(verifier: CodeVerifier, es: Issuer) -> None:
    impostor = Issuer.generate("ES256", kid=es.kid)  # claims the trusted kid
    assert reason(verifier, impostor.sign_claims(good_claims(impostor, color=None))) == (
        Reason.BAD_SIGNATURE
    )
    expired = impostor.issue("R-1", exp=NOW - DAY, iat=NOW - 2 * DAY)
    assert reason(verifier, expired) == Reason.BAD_SIGNATURE


def test_claims_before_time(verifier: CodeVerifier, es: Issuer) -> None:
    text = es.sign_claims(good_claims(es, color="purple", exp=NOW - DAY, iat=NOW - 2 * DAY))
    assert reason(verifier, text) == Reason.BAD_CLAIMS
    future = es.sign_claims(good_claims(es, sub="", iat=NOW + DAY, exp=NOW + 2 * DAY))
    assert reason(verifier, future) == Reason.BAD_CLAIMS


def test_time_is_checked_last(verifier: CodeVerifier, es: Issuer) -> None:
    text = es.issue("R-1", exp=NOW + DAY, iat=NOW, now=NOW)
    assert reason(verifier, text, NOW + 2 * DAY) == Reason.EXPIRED
    assert reason(verifier, text, NOW - DAY) == Reason.NOT_YET_VALID


# ------------------------------------------------------------------------ the screen


@pytest.mark.parametrize(
    ("name", "masked"),
    [("张三丰", "张**"), ("李", "李"), ("Anna Lee", "A*******"), ("", ""), ("欧阳娜娜", "欧***")],
)
def test_mask_name(name: str, masked: str) -> None:
    assert mask_name(name) == masked


def test_every_reason_has_a_plain_message_in_both_languages() -> None:
    for r in Reason:
        en, zh = rejection_message(r, "en"), rejection_message(r, "zh")
        assert en and zh and en != zh
        assert en.endswith(".") and zh.endswith("。")
        assert "_" not in en  # a sentence for a resident, not a reason code
        assert not any("\u4e00" <= ch <= "\u9fff" for ch in en)
        assert any("\u4e00" <= ch <= "\u9fff" for ch in zh)
    assert rejection_message(Reason.NOT_A_CODE, "en") == (
        "This is not a health code. Please show your health code."
    )
    assert rejection_message(Reason.NOT_A_CODE, "zh") == "这不是健康码。请出示您的健康码。"
    assert len({rejection_message(r, "en") for r in Reason}) == len(Reason)


def test_a_rejected_verdict_never_carries_claims(verifier: CodeVerifier, es: Issuer) -> None:
    expired = verifier.verify(es.issue("R-1", exp=NOW - DAY, iat=NOW - 2 * DAY), NOW)
    assert expired.reason == Reason.EXPIRED
    assert expired.claims is None
    assert expired.as_json() == {"valid": False, "reason": "expired"}
