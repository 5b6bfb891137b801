"""The trust file: a JWKS of issuer keys; anything else is a clear error naming file and problem."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from firmware.errors import ConfigError
from kiosk_ui.core.codes import CodeVerifier, TrustStore
from kiosk_ui.drills.issuer import Issuer, b64url, jwks
from kiosk_ui.errors import TrustFileError
from tests.support.codes import NOW


@pytest.fixture(scope="module")
def es() -> Issuer:
    return Issuer.generate("ES256", kid=b"\x01\x02\x03kid")


@pytest.fixture(scope="module")
def ed() -> Issuer:
    return Issuer.generate("EdDSA", kid=b"ed")


def test_load_a_jwks_file_and_verify_with_it(tmp_path: Path, es: Issuer, ed: Issuer) -> None:
    path = tmp_path / "issuers.jwks.json"
    path.write_text(json.dumps(jwks([es, ed])))
    trust = TrustStore.load(path)
    assert len(trust) == 2
    assert [k.alg for k in trust.keys_for(es.kid)] == ["ES256"]
    assert [k.alg for k in trust.keys_for(ed.kid)] == ["EdDSA"]
    assert trust.keys_for(b"other") == []
    verifier = CodeVerifier(trust)
    assert verifier.verify(es.issue("R-1", now=NOW), NOW).valid
    assert verifier.verify(ed.issue("R-2", now=NOW), NOW).valid


def test_jwk_members_the_station_does_not_need_are_accepted(es: Issuer) -> None:
    jwk: dict[str, Any] = {**es.jwk(), "use": "sig", "x5t#S256": "abc", "key_ops": ["verify"]}
    del jwk["alg"]  # alg is optional in a JWK
    trust = TrustStore.from_jwks({"keys": [jwk], "issuer": "T01"})
    assert len(trust) == 1


def _problem(data: Any) -> str:
    with pytest.raises(TrustFileError) as info:
        TrustStore.from_jwks(data, origin="issuers.jwks.json")
    message = str(info.value)
    assert message.startswith("trust file issuers.jwks.json cannot be used:")
    return message


@pytest.mark.parametrize(
    "data", [[], {}, {"keys": {}}, {"keys": "k"}, "keys", 7, None, {"key": []}]
)
def test_not_a_jwks(data: Any) -> None:
    assert "is not a JWKS" in _problem(data)


def _key_problem(es: Issuer, **changes: Any) -> str:
    jwk: dict[str, Any] = es.jwk()
    for k, v in changes.items():
        if v is None:
            jwk.pop(k)
        else:
            jwk[k] = v
    return _problem({"keys": [jwk]})


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"kid": None}, "'kid' must be a non-empty base64url string"),
        ({"kid": ""}, "'kid' must be a non-empty base64url string"),
        ({"kid": "a+b/"}, "'kid' is not valid base64url"),
        ({"kid": 17}, "'kid' must be a non-empty base64url string"),
        ({"kty": "RSA"}, "key type 'RSA' is not supported"),
        ({"kty": None}, "key type None is not supported"),
        ({"crv": "P-384"}, "EC curve 'P-384' is not supported"),
        ({"alg": "ES384"}, "'alg' 'ES384' does not fit an EC P-256 key"),
        ({"x": None}, "'x' must be a non-empty base64url string"),
        ({"y": "AAAA"}, "'x' and 'y' must be 32 bytes each"),
        ({"y": b64url(b"\x01" * 32)}, "is not on the P-256 curve"),
        ({"d": "c2VjcmV0"}, "holds a private key ('d')"),
        ({"use": "enc"}, "'use' is 'enc', not 'sig'"),
    ],
)
def test_a_bad_ec_key(es: Issuer, changes: dict[str, Any], expected: str) -> None:
    message = _key_problem(es, **changes)
    assert expected in message
    assert "key 0" in message


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"crv": "X25519"}, "OKP curve 'X25519' is not supported"),
        ({"x": b64url(b"\x01" * 31)}, "'x' must be 32 bytes for Ed25519"),
        ({"alg": "ES256"}, "'alg' 'ES256' does not fit an Ed25519 key"),
    ],
)
def test_a_bad_ed25519_key(ed: Issuer, changes: dict[str, Any], expected: str) -> None:
    assert expected in _key_problem(ed, **changes)


def test_every_bad_key_is_named(es: Issuer, ed: Issuer) -> None:
    bad_ec = {**es.jwk(), "kty": "RSA"}
    bad_ed = {**ed.jwk(), "crv": "X448"}
    message = _problem({"keys": [es.jwk(), bad_ec, "not a key", bad_ed]})
    assert f"key 1 (kid '{b64url(es.kid)}') key type 'RSA'" in message
    assert "key 2 is not a JSON object" in message
    assert "key 3 (kid 'ZWQ') OKP curve 'X448'" in message
    assert "key 0" not in message


def test_a_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nowhere.jwks.json"
    with pytest.raises(TrustFileError) as info:
        TrustStore.load(path)
    assert str(info.value) == f"trust file {path} cannot be used:\n  - no such file"
    assert isinstance(info.value, ConfigError)


def test_a_directory(tmp_path: Path) -> None:
    with pytest.raises(TrustFileError, match="is a directory"):
        TrustStore.load(tmp_path)


def test_a_file_that_is_not_json(tmp_path: Path) -> None:
    path = tmp_path / "keys.pem"
    path.write_text("-----BEGIN PUBLIC KEY-----\nMFkw\n-----END PUBLIC KEY-----\n")
    with pytest.raises(TrustFileError, match=r"keys\.pem.*\n.*is not JSON \(line 1, column 1"):
        TrustStore.load(path)


def test_a_file_that_is_not_text(tmp_path: Path) -> None:
    path = tmp_path / "keys.der"
    path.write_bytes(b"\x30\x82\xff\xfe\x00")
    with pytest.raises(TrustFileError, match="is not UTF-8 text"):
        TrustStore.load(path)


def test_an_unreadable_path(tmp_path: Path) -> None:
    (tmp_path / "etc").write_text("a file where a folder should be")
    with pytest.raises(TrustFileError, match="cannot be read: Not a directory"):
        TrustStore.load(tmp_path / "etc" / "issuers.jwks.json")


def test_a_file_with_a_jwks_that_is_not_jwks(tmp_path: Path, es: Issuer) -> None:
    path = tmp_path / "issuers.jwks.json"
    path.write_text(json.dumps([es.jwk()]))  # a bare list of keys
    with pytest.raises(TrustFileError, match=r'is not a JWKS: expected \{"keys"'):
        TrustStore.load(path)
