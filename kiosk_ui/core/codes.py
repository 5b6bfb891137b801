"""Offline verification of resident codes (docs/resident-codes.md, the resident-code spec).

QR text = ``HC1:`` + Base45(zlib(COSE_Sign1(CWT claims))). :class:`CodeVerifier` turns the
text into a :class:`Verdict`: valid with its :class:`Claims`, or rejected with exactly one
:class:`Reason`. The checks run in the spec's order and the first failure names the reason:

1. prefix          ``not_a_code``     text does not start with ``HC1:``
2. format          ``bad_format``     size bounds, Base45, zlib, CBOR, COSE_Sign1 structure
3. algorithm       ``bad_alg``        protected ``alg`` is not ES256 (-7) or EdDSA (-8)
4. key             ``unknown_key``    no ``kid``, or no trusted key for it and the algorithm
5. signature       ``bad_signature``  no trusted key with that ``kid`` verifies the signature
6. claims          ``bad_claims``     the CWT claims table of the spec
7. validity time   ``expired`` / ``not_yet_valid`` (60 s leeway on ``exp`` and ``iat``)

The verifier is fed whatever the camera or the scanner saw, so it treats every input as
hostile: the text and the decompressed size are bounded, CBOR nesting is bounded, and
``verify`` never raises; an input that breaks a third-party decoder in an unforeseen way is a
``bad_format`` (logged as an error, since it points at a gap in these checks).

The COSE_Sign1 signature is checked here with ``cryptography`` rather than through pycose:
see docs/resident-codes.md for why.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import logging
import re
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal, cast

import base45
import cbor2
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from kiosk_ui.errors import CodeRejected, TrustFileError

log = logging.getLogger(__name__)

PREFIX = "HC1:"
# The largest QR code (version 40-L) holds 4296 alphanumeric characters; twice that leaves
# room for a scanner's own framing and still rejects a flood in microseconds.
MAX_TEXT_CHARS = 8192
# A resident code is a few hundred bytes once inflated; anything beyond this is a zlib bomb.
MAX_COSE_BYTES = 64 * 1024
# Deep enough for any real header or claims map, shallow enough to stay far from recursion.
MAX_CBOR_DEPTH = 16
DEFAULT_LEEWAY_S = 60

ALG_ES256 = -7
ALG_EDDSA = -8
ALG_NAMES: dict[int, str] = {ALG_ES256: "ES256", ALG_EDDSA: "EdDSA"}
HDR_ALG = 1
HDR_KID = 4
TAG_COSE_SIGN1 = 18
TAG_CWT = 61

CLAIM_ISS = 1
CLAIM_SUB = 2
CLAIM_EXP = 4
CLAIM_IAT = 6
SUB_MAX_CHARS = 64
COLORS = ("green", "yellow", "red")
CATEGORIES = ("elderly", "child", "pregnant", "disabled")

Color = Literal["green", "yellow", "red"]


class Reason(StrEnum):
    """Why a code was rejected: exactly one per rejected code."""

    NOT_A_CODE = "not_a_code"
    BAD_FORMAT = "bad_format"
    BAD_ALG = "bad_alg"
    UNKNOWN_KEY = "unknown_key"
    BAD_SIGNATURE = "bad_signature"
    EXPIRED = "expired"
    NOT_YET_VALID = "not_yet_valid"
    BAD_CLAIMS = "bad_claims"
    # Only for a picture that holds no QR code at all (``station verify-code --image``).
    NO_CODE = "no_code"


@dataclass(frozen=True, slots=True)
class Claims:
    """The claims of a verified code, by name."""

    iss: str
    sub: str
    exp: int
    iat: int
    color: Color
    name: str | None
    cat: tuple[str, ...]

    def as_json(self) -> dict[str, Any]:
        return {
            "iss": self.iss,
            "sub": self.sub,
            "exp": self.exp,
            "iat": self.iat,
            "color": self.color,
            "name": self.name,
            "cat": list(self.cat),
        }


@dataclass(frozen=True, slots=True)
class Verdict:
    """The outcome of one verification. ``claims`` is set only when ``valid``.

    ``detail`` says, for logs and technicians, what exactly failed; it is not part of the
    verdict's identity (two rejections for the same reason compare equal).
    """

    valid: bool
    reason: Reason | None
    claims: Claims | None
    detail: str = field(default="", compare=False)

    @classmethod
    def ok(cls, claims: Claims) -> Verdict:
        return cls(True, None, claims)

    @classmethod
    def rejected(cls, reason: Reason, detail: str = "") -> Verdict:
        return cls(False, reason, None, detail)

    def as_json(self) -> dict[str, Any]:
        """``{"valid", "reason", "claims"}``; ``claims`` only when valid."""
        out: dict[str, Any] = {
            "valid": self.valid,
            "reason": None if self.reason is None else str(self.reason),
        }
        if self.valid and self.claims is not None:
            out["claims"] = self.claims.as_json()
        return out


# --------------------------------------------------------------------------- trust store


PublicKey = ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey


@dataclass(frozen=True, slots=True)
class TrustedKey:
    """One issuer public key from the trust file."""

    kid: bytes
    alg: str  # "ES256" or "EdDSA"
    key: PublicKey
    raw: bytes = field(repr=False)  # the public key's encoding, to drop duplicates

    def verify(self, signature: bytes, data: bytes) -> bool:
        """Whether ``signature`` (COSE form: raw r||s for ES256) signs ``data``."""
        try:
            if isinstance(self.key, ec.EllipticCurvePublicKey):
                if len(signature) != 64:
                    return False
                der = encode_dss_signature(
                    int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
                )
                self.key.verify(der, data, ec.ECDSA(hashes.SHA256()))
            else:
                if len(signature) != 64:
                    return False
                self.key.verify(signature, data)
        except InvalidSignature:
            return False
        return True


_B64URL = re.compile(r"[A-Za-z0-9_-]+")


def _b64url(value: Any, what: str) -> bytes:
    if not isinstance(value, str) or not value:
        raise ValueError(f"{what} must be a non-empty base64url string")
    if not _B64URL.fullmatch(value):
        raise ValueError(f"{what} is not valid base64url")
    try:
        return base64.b64decode(value + "=" * (-len(value) % 4), altchars=b"-_", validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"{what} is not valid base64url") from None


def _parse_jwk(jwk: Any) -> TrustedKey:
    """One JWK -> TrustedKey; ValueError names what is wrong with it."""
    if not isinstance(jwk, dict):
        raise ValueError("is not a JSON object")
    if "d" in jwk:
        raise ValueError("holds a private key ('d'); a trust file holds public keys only")
    kid = _b64url(jwk.get("kid"), "'kid'")
    use = jwk.get("use")
    if use is not None and use != "sig":
        raise ValueError(f"'use' is {use!r}, not 'sig'")
    kty, crv, alg = jwk.get("kty"), jwk.get("crv"), jwk.get("alg")
    key: PublicKey
    if kty == "EC":
        if crv != "P-256":
            raise ValueError(f"EC curve {crv!r} is not supported (only P-256)")
        if alg not in (None, "ES256"):
            raise ValueError(f"'alg' {alg!r} does not fit an EC P-256 key (ES256)")
        x, y = _b64url(jwk.get("x"), "'x'"), _b64url(jwk.get("y"), "'y'")
        if len(x) != 32 or len(y) != 32:
            raise ValueError("'x' and 'y' must be 32 bytes each for P-256")
        try:
            key = ec.EllipticCurvePublicNumbers(
                int.from_bytes(x, "big"), int.from_bytes(y, "big"), ec.SECP256R1()
            ).public_key()
        except ValueError:
            raise ValueError("the point ('x', 'y') is not on the P-256 curve") from None
        return TrustedKey(kid, "ES256", key, x + y)
    if kty == "OKP":
        if crv != "Ed25519":
            raise ValueError(f"OKP curve {crv!r} is not supported (only Ed25519)")
        if alg not in (None, "EdDSA", "Ed25519"):
            raise ValueError(f"'alg' {alg!r} does not fit an Ed25519 key (EdDSA)")
        x = _b64url(jwk.get("x"), "'x'")
        if len(x) != 32:
            raise ValueError("'x' must be 32 bytes for Ed25519")
        key = ed25519.Ed25519PublicKey.from_public_bytes(x)
        return TrustedKey(kid, "EdDSA", key, x)
    raise ValueError(
        f"key type {kty!r} is not supported (the station accepts EC P-256 and OKP Ed25519)"
    )


class TrustStore:
    """The issuer keys a station trusts, by ``kid``; several keys may share one ``kid``."""

    def __init__(self, keys: Sequence[TrustedKey] = (), origin: str = "<memory>") -> None:
        self.origin = origin
        self._by_kid: dict[bytes, list[TrustedKey]] = {}
        for k in keys:
            same = self._by_kid.setdefault(k.kid, [])
            if not any(o.alg == k.alg and o.raw == k.raw for o in same):
                same.append(k)

    @classmethod
    def load(cls, path: Path | str) -> TrustStore:
        """Read a JWKS file; :class:`TrustFileError` names the file and every problem."""
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise TrustFileError(str(path), ["no such file"]) from None
        except IsADirectoryError:
            raise TrustFileError(str(path), ["is a directory, not a JWKS file"]) from None
        except UnicodeDecodeError:
            raise TrustFileError(str(path), ["is not UTF-8 text (a JWKS is JSON)"]) from None
        except OSError as exc:
            raise TrustFileError(str(path), [f"cannot be read: {exc.strerror}"]) from None
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise TrustFileError(
                str(path), [f"is not JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})"]
            ) from None
        return cls.from_jwks(data, origin=str(path))

    @classmethod
    def from_jwks(cls, data: Any, origin: str = "<JWKS>") -> TrustStore:
        """Trust the keys of a parsed JWKS (RFC 7517 ``{"keys": [...]}``)."""
        if not isinstance(data, dict) or not isinstance(data.get("keys"), list):
            raise TrustFileError(origin, ['is not a JWKS: expected {"keys": [ ... ]}'])
        keys: list[TrustedKey] = []
        problems: list[str] = []
        for i, jwk in enumerate(data["keys"]):
            try:
                keys.append(_parse_jwk(jwk))
            except ValueError as exc:
                kid = jwk.get("kid") if isinstance(jwk, dict) else None
                label = f"key {i}" + (f" (kid {kid!r})" if isinstance(kid, str) else "")
                problems.append(f"{label} {exc}")
        if problems:
            raise TrustFileError(origin, problems)
        if not keys:
            log.warning("trust file %s holds no keys: every resident code will be rejected", origin)
        return cls(keys, origin)

    def keys_for(self, kid: bytes, alg: str | None = None) -> list[TrustedKey]:
        """The keys published under ``kid`` (for ``alg`` only, when given)."""
        found = self._by_kid.get(bytes(kid), [])
        return [k for k in found if alg is None or k.alg == alg]

    def __len__(self) -> int:
        return sum(len(v) for v in self._by_kid.values())


# ----------------------------------------------------------------------------- verifier


def _keep_tag(tag: int) -> Callable[[Any, bool], cbor2.CBORTag]:
    def keep(value: Any, immutable: bool) -> cbor2.CBORTag:
        return cbor2.CBORTag(tag, value)

    return keep


# cbor2 interprets many tags (dates, bignums, decimals, regular expressions, MIME, shared and
# string references). The verifier reads every tag as a plain CBORTag instead: hostile input
# never reaches those conversions, and a claim of the wrong type is a claims problem, not a
# decoding failure.
_PLAIN_TAGS = {tag: _keep_tag(tag) for tag in (*range(1100), 55799)}


def _cbor(data: bytes, what: str) -> Any:
    """Decode one complete CBOR item, or reject as bad_format."""
    stream = io.BytesIO(data)
    try:
        item = cbor2.CBORDecoder(
            stream,
            semantic_decoders=_PLAIN_TAGS,
            read_size=1,
            max_depth=MAX_CBOR_DEPTH,
            str_errors="strict",
            # RFC 8949 section 5.6: a map with a repeated key is not valid CBOR, and which
            # of the values counts would depend on the decoder.
            allow_duplicate_keys=False,
        ).decode()
    except Exception as exc:  # hostile input reaches every corner of the decoder
        detail = f"{what} is not valid CBOR ({type(exc).__name__})"
        raise CodeRejected(Reason.BAD_FORMAT, detail) from None
    if stream.tell() != len(data):
        raise CodeRejected(Reason.BAD_FORMAT, f"{what} has bytes after its CBOR item")
    return item


def _untag(item: Any) -> Any:
    """Strip the optional CWT tag (61), then the optional COSE_Sign1 tag (18)."""
    if isinstance(item, cbor2.CBORTag) and item.tag == TAG_CWT:
        item = item.value
    if isinstance(item, cbor2.CBORTag) and item.tag == TAG_COSE_SIGN1:
        item = item.value
    if isinstance(item, cbor2.CBORTag):
        raise CodeRejected(Reason.BAD_FORMAT, f"CBOR tag {item.tag} is not a COSE_Sign1")
    return item


@dataclass(frozen=True, slots=True)
class _Sign1:
    protected_bytes: bytes
    protected: Mapping[Any, Any]
    unprotected: Mapping[Any, Any]
    payload: bytes
    signature: bytes
    claims: Any


def _parse_text(text: str | bytes) -> bytes:
    """Prefix and size checks, Base45 and bounded zlib: the COSE message's bytes."""
    if isinstance(text, bytes | bytearray):
        raw = bytes(text).rstrip(b"\r\n")
        if not raw.startswith(PREFIX.encode()):
            raise CodeRejected(Reason.NOT_A_CODE, "no HC1: prefix")
        if len(raw) - len(PREFIX) > MAX_TEXT_CHARS:
            raise CodeRejected(Reason.BAD_FORMAT, f"longer than {MAX_TEXT_CHARS} characters")
        try:
            body = raw[len(PREFIX) :].decode("ascii")
        except UnicodeDecodeError:
            raise CodeRejected(Reason.BAD_FORMAT, "bytes after HC1: are not ASCII") from None
    elif isinstance(text, str):
        stripped = text.rstrip("\r\n")
        if not stripped.startswith(PREFIX):
            raise CodeRejected(Reason.NOT_A_CODE, "no HC1: prefix")
        if len(stripped) - len(PREFIX) > MAX_TEXT_CHARS:
            raise CodeRejected(Reason.BAD_FORMAT, f"longer than {MAX_TEXT_CHARS} characters")
        body = stripped[len(PREFIX) :]
    else:
        raise CodeRejected(Reason.NOT_A_CODE, f"input is {type(text).__name__}, not text")
    try:
        compressed: bytes = base45.b45decode(body)
    except ValueError:
        raise CodeRejected(Reason.BAD_FORMAT, "not Base45") from None
    inflater = zlib.decompressobj()
    try:
        cose = inflater.decompress(compressed, MAX_COSE_BYTES)
    except zlib.error:
        raise CodeRejected(Reason.BAD_FORMAT, "not a zlib stream") from None
    if inflater.unconsumed_tail:
        raise CodeRejected(Reason.BAD_FORMAT, f"inflates beyond {MAX_COSE_BYTES} bytes")
    if not inflater.eof:
        raise CodeRejected(Reason.BAD_FORMAT, "zlib stream is truncated")
    if inflater.unused_data:
        raise CodeRejected(Reason.BAD_FORMAT, "bytes after the zlib stream")
    return cose


def _parse_cose(cose: bytes) -> _Sign1:
    """COSE_Sign1 structure (RFC 9052 section 4.2) and its headers, or bad_format."""
    msg = _untag(_cbor(cose, "the COSE message"))
    if not isinstance(msg, list | tuple) or len(msg) != 4:
        raise CodeRejected(Reason.BAD_FORMAT, "not a COSE_Sign1 array of four")
    protected_bytes, unprotected, payload, signature = msg
    if not isinstance(protected_bytes, bytes):
        raise CodeRejected(Reason.BAD_FORMAT, "protected header is not a byte string")
    if not isinstance(unprotected, Mapping):
        raise CodeRejected(Reason.BAD_FORMAT, "unprotected header is not a map")
    if not isinstance(payload, bytes):
        raise CodeRejected(Reason.BAD_FORMAT, "payload is not a byte string (detached?)")
    if not isinstance(signature, bytes):
        raise CodeRejected(Reason.BAD_FORMAT, "signature is not a byte string")
    protected: Any = {}
    if protected_bytes:
        protected = _cbor(protected_bytes, "the protected header")
        if not isinstance(protected, Mapping):
            raise CodeRejected(Reason.BAD_FORMAT, "protected header is not a map")
    kid = _kid(protected, unprotected)
    if kid is not None and not isinstance(kid, bytes):
        raise CodeRejected(Reason.BAD_FORMAT, "kid is not a byte string")
    claims = _cbor(payload, "the payload")
    return _Sign1(protected_bytes, protected, unprotected, payload, signature, claims)


def _label(header: Mapping[Any, Any], label: int) -> Any:
    # A CBOR `true` key equals 1 in Python; only a genuine integer label counts.
    for k, v in header.items():
        if type(k) is int and k == label:
            return v
    return None


def _kid(protected: Mapping[Any, Any], unprotected: Mapping[Any, Any]) -> Any:
    kid = _label(protected, HDR_KID)
    return _label(unprotected, HDR_KID) if kid is None else kid


def _parse_claims(payload: Any) -> Claims:
    """The CWT claims of the spec's table, or bad_claims naming the first problem."""

    def bad(detail: str) -> CodeRejected:
        return CodeRejected(Reason.BAD_CLAIMS, detail)

    if not isinstance(payload, Mapping):
        raise bad("payload is not a CWT claims map")
    # Registered claims by integer key, private ones by text; others are ignored.
    by_key: dict[int | str, Any] = {}
    for k, v in payload.items():
        if type(k) is int or type(k) is str:
            by_key[k] = v
    iss, sub = by_key.get(CLAIM_ISS), by_key.get(CLAIM_SUB)
    exp, iat = by_key.get(CLAIM_EXP), by_key.get(CLAIM_IAT)
    color, name, cat = by_key.get("color"), by_key.get("name"), by_key.get("cat", ())
    if not isinstance(iss, str) or not iss:
        raise bad("iss (1) missing or not text")
    if not isinstance(sub, str) or not 1 <= len(sub) <= SUB_MAX_CHARS:
        raise bad(f"sub (2) missing, not text, or not 1-{SUB_MAX_CHARS} characters")
    # bool is an int in Python; CBOR true is not a NumericDate.
    if type(exp) is not int:
        raise bad("exp (4) missing or not an integer")
    if type(iat) is not int:
        raise bad("iat (6) missing or not an integer")
    if not isinstance(color, str) or color not in COLORS:
        raise bad("color missing or not green, yellow or red")
    if "name" in by_key and not isinstance(name, str):
        raise bad("name is not text")
    if not isinstance(cat, list | tuple) or not all(
        isinstance(c, str) and c in CATEGORIES for c in cat
    ):
        raise bad(f"cat is not an array of {', '.join(CATEGORIES)}")
    return Claims(
        iss=iss,
        sub=sub,
        exp=exp,
        iat=iat,
        color=cast(Color, color),
        name=name,
        cat=tuple(dict.fromkeys(cat)),
    )


class CodeVerifier:
    """Verifies resident codes offline against a :class:`TrustStore`."""

    def __init__(self, trust: TrustStore, leeway_s: int = DEFAULT_LEEWAY_S) -> None:
        if leeway_s < 0:
            raise ValueError("leeway_s must not be negative")
        self.trust = trust
        self.leeway_s = leeway_s

    def verify(self, text: str | bytes, now: float) -> Verdict:
        """The verdict on ``text`` at time ``now`` (seconds since the epoch). Never raises."""
        try:
            claims = self._check(text, now)
        except CodeRejected as rejected:
            log.debug("code rejected: %s (%s)", rejected.reason, rejected.detail)
            return Verdict.rejected(rejected.reason, rejected.detail)
        except Exception:
            # Not reachable by any input the tests know; if one finds its way here it is
            # still refused, and the log says where the checks have a gap.
            log.exception("unexpected failure while verifying a code; rejecting it")
            return Verdict.rejected(Reason.BAD_FORMAT, "unexpected verifier failure")
        return Verdict.ok(claims)

    def _check(self, text: str | bytes, now: float) -> Claims:
        sign1 = _parse_cose(_parse_text(text))

        alg = _label(sign1.protected, HDR_ALG)
        if type(alg) is not int or alg not in ALG_NAMES:
            where = "unprotected" if _label(sign1.unprotected, HDR_ALG) is not None else "protected"
            raise CodeRejected(Reason.BAD_ALG, f"alg {alg!r} in the {where} header")
        alg_name = ALG_NAMES[alg]

        kid = _kid(sign1.protected, sign1.unprotected)
        if kid is None:
            raise CodeRejected(Reason.UNKNOWN_KEY, "no kid in either header")
        keys = self.trust.keys_for(kid, alg_name)
        if not keys:
            raise CodeRejected(
                Reason.UNKNOWN_KEY, f"no trusted {alg_name} key with kid {_b64(kid)}"
            )

        to_be_signed = cbor2.dumps(["Signature1", sign1.protected_bytes, b"", sign1.payload])
        if not any(k.verify(sign1.signature, to_be_signed) for k in keys):
            raise CodeRejected(
                Reason.BAD_SIGNATURE, f"none of {len(keys)} key(s) with kid {_b64(kid)} verifies"
            )

        claims = _parse_claims(sign1.claims)

        # Written so that a clock reading of NaN fails closed (every comparison is false).
        if not now < claims.exp + self.leeway_s:
            raise CodeRejected(Reason.EXPIRED, f"expired at {claims.exp}")
        if not now >= claims.iat - self.leeway_s:
            raise CodeRejected(Reason.NOT_YET_VALID, f"issued at {claims.iat}, in the future")
        return claims


def _b64(kid: bytes) -> str:
    return base64.urlsafe_b64encode(kid).rstrip(b"=").decode("ascii")


# ----------------------------------------------------------------------------- display


def mask_name(name: str) -> str:
    """The name as the screen shows it: first character, then one ``*`` per other character."""
    if not name:
        return ""
    return name[0] + "*" * (len(name) - 1)


_MESSAGES: dict[Reason, tuple[str, str]] = {
    Reason.NOT_A_CODE: (
        "This is not a health code. Please show your health code.",
        "这不是健康码。请出示您的健康码。",
    ),
    Reason.BAD_FORMAT: (
        "This code cannot be read. Please show your health code again.",
        "无法识别此码。请重新出示您的健康码。",
    ),
    Reason.BAD_ALG: (
        "This health code cannot be checked here. Please go to the staff desk.",
        "本站无法核验此健康码。请到工作人员处办理。",
    ),
    Reason.UNKNOWN_KEY: (
        "This health code is from an issuer this station does not know. "
        "Please go to the staff desk.",
        "本站不认识此健康码的签发机构。请到工作人员处办理。",
    ),
    Reason.BAD_SIGNATURE: (
        "This health code failed the authenticity check. Please go to the staff desk.",
        "此健康码未通过真伪核验。请到工作人员处办理。",
    ),
    Reason.EXPIRED: (
        "This health code has expired. Please refresh it on your phone and show it again.",
        "此健康码已过期。请在手机上刷新后重新出示。",
    ),
    Reason.NOT_YET_VALID: (
        "This health code is not valid yet. Please go to the staff desk.",
        "此健康码尚未生效。请到工作人员处办理。",
    ),
    Reason.BAD_CLAIMS: (
        "This health code lacks required information. Please go to the staff desk.",
        "此健康码缺少必要信息。请到工作人员处办理。",
    ),
    Reason.NO_CODE: (
        "No code was found. Please hold your health code in front of the camera.",
        "没有找到二维码。请将健康码对准摄像头。",
    ),
}


def rejection_message(reason: Reason, lang: Literal["zh", "en"]) -> str:
    """A short plain sentence for the screen, in Chinese (``zh``) or English (``en``)."""
    en, zh = _MESSAGES[Reason(reason)]
    return zh if lang == "zh" else en
