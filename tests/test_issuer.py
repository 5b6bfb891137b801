"""The drill issuer, checked against an independent COSE implementation (pycose) both ways.

pycose signs and verifies COSE_Sign1 with code nobody here wrote: what our issuer signs,
pycose verifies; what pycose signs, our verifier accepts. Each half would catch a mistake
the other half shares with it (Sig_structure, signature encoding, header placement).
"""

from __future__ import annotations

import base64
import zlib
from typing import Any

import base45
import cbor2
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from pycose.algorithms import EdDSA, Es256
from pycose.headers import KID, Algorithm
from pycose.keys import EC2Key, OKPKey
from pycose.keys.curves import P256, Ed25519
from pycose.messages import Sign1Message

from kiosk_ui.core.codes import CodeVerifier, Reason, TrustStore
from kiosk_ui.drills.issuer import Issuer, encode_cose, jwks
from tests.support.codes import NOW, good_claims

DAY = 24 * 3600


def _b64(s: str) -> bytes:
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def _thaw(x: Any) -> Any:
    """cbor2 decodes tagged content as tuples and frozendicts; pycose wants lists and dicts."""
    if isinstance(x, list | tuple):
        return [_thaw(i) for i in x]
    if isinstance(x, cbor2.frozendict | dict):
        return {k: _thaw(v) for k, v in x.items()}
    return x


def _cose_of(text: str) -> Any:
    assert text.startswith("HC1:")
    return cbor2.loads(zlib.decompress(base45.b45decode(text[4:])))


def _pycose_key(jwk: dict[str, str]) -> EC2Key | OKPKey:
    if jwk["kty"] == "EC":
        return EC2Key(crv=P256, x=_b64(jwk["x"]), y=_b64(jwk["y"]))
    return OKPKey(crv=Ed25519, x=_b64(jwk["x"]))


@pytest.mark.parametrize("alg", ["ES256", "EdDSA"])
@pytest.mark.parametrize("kid_unprotected", [False, True])
def test_pycose_verifies_what_the_issuer_signs(alg: str, kid_unprotected: bool) -> None:
    issuer = Issuer.generate(alg)  # type: ignore[arg-type]
    text = issuer.sign_claims(good_claims(issuer), kid_unprotected=kid_unprotected)
    item = _cose_of(text)
    assert item.tag == 18
    msg = Sign1Message.from_cose_obj(_thaw(item.value), True)
    msg.key = _pycose_key(issuer.jwk())
    assert msg.verify_signature()
    assert msg.get_attr(KID) == issuer.kid
    assert cbor2.loads(msg.payload) == good_claims(issuer)
    # ...and a key pycose holds for another issuer does not verify it.
    msg.key = _pycose_key(Issuer.generate(alg).jwk())  # type: ignore[arg-type]
    assert not msg.verify_signature()


@pytest.mark.parametrize("alg", ["ES256", "EdDSA"])
@pytest.mark.parametrize("tag", [True, False])
def test_the_verifier_accepts_what_pycose_signs(alg: str, tag: bool) -> None:
    key = EC2Key.generate_key(crv=P256) if alg == "ES256" else OKPKey.generate_key(crv=Ed25519)
    jwk: dict[str, Any] = {"kid": "cHljb3Nl", "x": base64.urlsafe_b64encode(key.x).decode()}
    if alg == "ES256":
        jwk |= {"kty": "EC", "crv": "P-256", "y": base64.urlsafe_b64encode(key.y).decode()}
    else:
        jwk |= {"kty": "OKP", "crv": "Ed25519"}
    jwk = {k: v.rstrip("=") if isinstance(v, str) else v for k, v in jwk.items()}
    verifier = CodeVerifier(TrustStore.from_jwks({"keys": [jwk]}))
    claims = {1: "T09", 2: "R-7", 4: NOW + DAY, 6: NOW, "color": "yellow", "cat": ["pregnant"]}
    msg = Sign1Message(
        phdr={Algorithm: Es256 if alg == "ES256" else EdDSA},
        uhdr={KID: b"pycose"},
        payload=cbor2.dumps(claims),
    )
    msg.key = key
    verdict = verifier.verify(encode_cose(msg.encode(tag=tag)), NOW)
    assert verdict.valid, verdict.detail
    assert verdict.claims is not None
    assert (verdict.claims.sub, verdict.claims.color, verdict.claims.cat) == (
        "R-7",
        "yellow",
        ("pregnant",),
    )


def test_issue_defaults_to_now_and_24_hours() -> None:
    issuer = Issuer.generate(iss="T05-HEALTH")
    payload = cbor2.loads(_cose_of(issuer.issue("R-1", now=NOW + 0.7)).value[2])
    assert payload == {1: "T05-HEALTH", 2: "R-1", 4: NOW + DAY, 6: NOW, "color": "green"}
    payload = cbor2.loads(
        _cose_of(
            issuer.issue("R-2", "red", iat=5, exp=9, name="周", cat=["elderly"], now=NOW)
        ).value[2]
    )
    assert payload == {
        1: "T05-HEALTH",
        2: "R-2",
        4: 9,
        6: 5,
        "color": "red",
        "name": "周",
        "cat": ["elderly"],
    }


def test_es256_signatures_are_raw_r_and_s() -> None:
    issuer = Issuer.generate("ES256")
    for _ in range(5):  # DER would vary in length (70-72 bytes); raw r||s is always 64
        assert len(_cose_of(issuer.issue("R-1")).value[3]) == 64


def test_jwk_form() -> None:
    es = Issuer.generate("ES256", kid=b"\xfb\xff\x01")
    jwk = es.jwk()
    assert set(jwk) == {"kty", "crv", "alg", "kid", "x", "y"}
    assert (jwk["kty"], jwk["crv"], jwk["alg"], jwk["kid"]) == ("EC", "P-256", "ES256", "-_8B")
    assert len(_b64(jwk["x"])) == len(_b64(jwk["y"])) == 32
    ed = Issuer.generate("EdDSA", kid=b"k")
    assert ed.jwk()["kty"] == "OKP" and ed.jwk()["crv"] == "Ed25519"
    assert "=" not in ed.jwk()["kid"] + ed.jwk()["x"]
    assert "d" not in jwk and "d" not in ed.jwk()
    assert jwks([es, ed]) == {"keys": [jwk, ed.jwk()]}
    assert len(Issuer.generate().kid) == 8


def test_alg_override_puts_that_id_in_the_protected_header() -> None:
    issuer = Issuer.generate("EdDSA")
    text = issuer.sign_claims(good_claims(issuer), alg_override=-37, cwt_tag=True)
    item = _cose_of(text)
    assert item.tag == 61 and item.value.tag == 18
    assert cbor2.loads(item.value.value[0]) == {1: -37, 4: issuer.kid}
    verifier = CodeVerifier(TrustStore.from_jwks(jwks([issuer])))
    assert verifier.verify(text, NOW).reason == Reason.BAD_ALG


def test_unsupported_keys_and_algorithms_are_refused() -> None:
    with pytest.raises(ValueError, match="unsupported algorithm"):
        Issuer.generate("RS256")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="P-256"):
        Issuer(ec.generate_private_key(ec.SECP384R1()), b"k")
