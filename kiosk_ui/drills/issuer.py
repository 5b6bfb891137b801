"""A test and drill issuer: mints resident codes in the wire format of the resident-code spec.

A real station never issues codes; the township health authority does. Drills, the
simulated camera and the tests need codes signed by a key the station trusts, so this
module generates a key pair in memory (never written anywhere), publishes its public half
as a JWK for the trust file, and signs CWT claims as ``HC1:`` + Base45(zlib(COSE_Sign1)).

``sign_claims`` builds every shape the verifier must handle (tagged or not, wrapped in the
CWT tag, ``kid`` in either header, a foreign algorithm id), so tests can exercise each
branch with a genuine signature.
"""

from __future__ import annotations

import base64
import os
import time
import zlib
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal

import base45
import cbor2
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

Alg = Literal["ES256", "EdDSA"]

# COSE algorithm identifiers (RFC 9053).
COSE_ALG: dict[str, int] = {"ES256": -7, "EdDSA": -8}
# COSE header labels and CBOR tags (RFC 9052, RFC 8392).
HDR_ALG = 1
HDR_KID = 4
TAG_COSE_SIGN1 = 18
TAG_CWT = 61

DAY_S = 24 * 3600


def b64url(data: bytes) -> str:
    """Base64url without padding, as JWK members use (RFC 7515 section 2)."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def encode_cose(cose: bytes) -> str:
    """``HC1:`` + Base45(zlib(cose)): the QR text of a COSE message."""
    encoded: bytes = base45.b45encode(zlib.compress(cose, 9))
    return "HC1:" + encoded.decode("ascii")


class Issuer:
    """One signing key with its ``kid``; signs resident codes for drills and tests."""

    def __init__(
        self,
        private_key: ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey,
        kid: bytes,
        iss: str = "T01-HEALTH",
    ) -> None:
        if isinstance(private_key, ec.EllipticCurvePrivateKey):
            if not isinstance(private_key.curve, ec.SECP256R1):
                raise ValueError("ES256 needs a P-256 key")
            self.alg: str = "ES256"
        else:
            self.alg = "EdDSA"
        self._key = private_key
        self.kid = kid
        self.iss = iss

    @classmethod
    def generate(
        cls, alg: Alg = "ES256", kid: bytes | None = None, iss: str = "T01-HEALTH"
    ) -> Issuer:
        """A fresh key pair held in memory only."""
        key: ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey
        if alg == "ES256":
            key = ec.generate_private_key(ec.SECP256R1())
        elif alg == "EdDSA":
            key = ed25519.Ed25519PrivateKey.generate()
        else:
            raise ValueError(f"unsupported algorithm {alg!r}; use ES256 or EdDSA")
        return cls(key, os.urandom(8) if kid is None else kid, iss)

    def jwk(self) -> dict[str, str]:
        """The public key as a JWK (RFC 7517/7518/8037), ``kid`` = base64url of the kid bytes."""
        if isinstance(self._key, ec.EllipticCurvePrivateKey):
            numbers = self._key.public_key().public_numbers()
            return {
                "kty": "EC",
                "crv": "P-256",
                "alg": "ES256",
                "kid": b64url(self.kid),
                "x": b64url(numbers.x.to_bytes(32, "big")),
                "y": b64url(numbers.y.to_bytes(32, "big")),
            }
        raw = self._key.public_key().public_bytes_raw()
        return {
            "kty": "OKP",
            "crv": "Ed25519",
            "alg": "EdDSA",
            "kid": b64url(self.kid),
            "x": b64url(raw),
        }

    def claims(
        self,
        sub: str,
        color: str = "green",
        *,
        iat: int | None = None,
        exp: int | None = None,
        name: str | None = None,
        cat: Sequence[str] = (),
        now: float | None = None,
    ) -> dict[Any, Any]:
        """The CWT claims map ``issue`` signs (integer keys for registered claims)."""
        t = int(time.time() if now is None else now)
        claims: dict[Any, Any] = {
            1: self.iss,
            2: sub,
            4: t + DAY_S if exp is None else exp,
            6: t if iat is None else iat,
            "color": color,
        }
        if name is not None:
            claims["name"] = name
        if cat:
            claims["cat"] = list(cat)
        return claims

    def issue(
        self,
        sub: str,
        color: str = "green",
        *,
        iat: int | None = None,
        exp: int | None = None,
        name: str | None = None,
        cat: Sequence[str] = (),
        now: float | None = None,
    ) -> str:
        """A signed resident code (``HC1:...``); valid from ``now`` for 24 h by default."""
        return self.sign_claims(
            self.claims(sub, color, iat=iat, exp=exp, name=name, cat=cat, now=now)
        )

    def sign(self, data: bytes) -> bytes:
        """A COSE signature over ``data``: raw r||s (64 bytes) for ES256, 64 bytes for EdDSA."""
        if isinstance(self._key, ec.EllipticCurvePrivateKey):
            r, s = decode_dss_signature(self._key.sign(data, ec.ECDSA(hashes.SHA256())))
            return r.to_bytes(32, "big") + s.to_bytes(32, "big")
        return self._key.sign(data)

    def sign_cose(
        self,
        payload: bytes,
        *,
        tag: bool = True,
        cwt_tag: bool = False,
        kid_unprotected: bool = False,
        alg_override: int | None = None,
        protected: Mapping[Any, Any] | None = None,
        unprotected: Mapping[Any, Any] | None = None,
    ) -> bytes:
        """A COSE_Sign1 message (CBOR bytes) over an arbitrary payload.

        ``protected`` / ``unprotected`` replace the generated headers entirely when given.
        """
        alg = COSE_ALG[self.alg] if alg_override is None else alg_override
        if protected is None:
            protected = {HDR_ALG: alg} if kid_unprotected else {HDR_ALG: alg, HDR_KID: self.kid}
        if unprotected is None:
            unprotected = {HDR_KID: self.kid} if kid_unprotected else {}
        protected_bytes = cbor2.dumps(dict(protected)) if protected else b""
        to_sign = cbor2.dumps(["Signature1", protected_bytes, b"", payload])
        message: Any = [protected_bytes, dict(unprotected), payload, self.sign(to_sign)]
        if tag:
            message = cbor2.CBORTag(TAG_COSE_SIGN1, message)
        if cwt_tag:
            message = cbor2.CBORTag(TAG_CWT, message)
        return cbor2.dumps(message)

    def sign_claims(
        self,
        claims: Mapping[Any, Any],
        *,
        tag: bool = True,
        cwt_tag: bool = False,
        kid_unprotected: bool = False,
        alg_override: int | None = None,
    ) -> str:
        """Sign any claims map in any supported envelope shape; returns the QR text."""
        cose = self.sign_cose(
            cbor2.dumps(dict(claims)),
            tag=tag,
            cwt_tag=cwt_tag,
            kid_unprotected=kid_unprotected,
            alg_override=alg_override,
        )
        return encode_cose(cose)


def jwks(issuers: Iterable[Issuer]) -> dict[str, list[dict[str, str]]]:
    """A trust file (JWKS) holding the public keys of ``issuers``."""
    return {"keys": [i.jwk() for i in issuers]}
