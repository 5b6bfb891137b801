"""`station verify-code`, run as staff run it: the real entry point in a subprocess."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import segno
from PIL import Image

from kiosk_ui.drills.issuer import Issuer, jwks
from tests.conftest import SHARED
from tests.support.codes import NOW

ROOT = Path(__file__).resolve().parents[1]
DAY = 24 * 3600
AT = "2026-05-01T07:00:00+08:00"  # == NOW


def station(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kiosk_ui.cli", "verify-code", *args],
        cwd=ROOT,
        input=stdin,
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=60,
        check=False,
    )


def verdict(result: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    lines = result.stdout.splitlines()
    assert len(lines) == 1, result.stdout + result.stderr
    out: dict[str, Any] = json.loads(lines[0])
    return out


@pytest.fixture(scope="module")
def issuer() -> Issuer:
    return Issuer.generate("EdDSA", iss="T03-HEALTH")


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory, issuer: Issuer) -> Path:
    path = tmp_path_factory.mktemp("trust") / "issuers.jwks.json"
    path.write_text(json.dumps(jwks([Issuer.generate("ES256"), issuer])))
    return path


@pytest.fixture(scope="module")
def code(issuer: Issuer) -> str:
    return issuer.issue("R-0042", "green", name="王小明", cat=["child"], now=NOW)


CLAIMS = {
    "iss": "T03-HEALTH",
    "sub": "R-0042",
    "exp": NOW + DAY,
    "iat": NOW,
    "color": "green",
    "name": "王小明",
    "cat": ["child"],
}


def test_a_valid_code_prints_its_claims_and_exits_0(keys: Path, code: str) -> None:
    result = station("--keys", str(keys), "--at", AT, code)
    assert result.returncode == 0, result.stderr
    assert verdict(result) == {"valid": True, "reason": None, "claims": CLAIMS}
    assert result.stderr == ""


def test_epoch_seconds_and_stdin(keys: Path, code: str) -> None:
    result = station("--keys", str(keys), "--at", str(NOW + 3600), "-", stdin=code + "\n")
    assert result.returncode == 0, result.stderr
    assert verdict(result)["claims"] == CLAIMS


def test_rejected_codes_exit_1_without_claims(keys: Path, code: str) -> None:
    expired = station("--keys", str(keys), "--at", str(NOW + 2 * DAY), code)
    assert (expired.returncode, verdict(expired)) == (1, {"valid": False, "reason": "expired"})
    tube = station("--keys", str(keys), "TUBE-00042")
    assert (tube.returncode, verdict(tube)) == (1, {"valid": False, "reason": "not_a_code"})


def test_without_at_it_verifies_as_of_now(keys: Path, issuer: Issuer) -> None:
    result = station("--keys", str(keys), issuer.issue("R-9"))
    assert result.returncode == 0, result.stderr
    assert verdict(result)["claims"]["sub"] == "R-9"


def _picture(text: str | None, path: Path) -> Path:
    """A 640x480 camera-like frame, with the code's QR in it (or nothing)."""
    frame = Image.new("L", (640, 480), 200)
    if text is not None:
        qr = segno.make(text, error="m")
        buf = path.with_suffix(".qr.png")
        qr.save(buf, scale=3, border=4)
        with Image.open(buf) as img:
            frame.paste(img.convert("L"), (120, 40))
    frame.save(path)
    return path


def test_a_picture_of_a_valid_code(keys: Path, code: str, tmp_path: Path) -> None:
    picture = _picture(code, tmp_path / "phone.png")
    result = station("--keys", str(keys), "--at", AT, "--image", str(picture))
    assert result.returncode == 0, result.stderr
    assert verdict(result) == {"valid": True, "reason": None, "claims": CLAIMS}


def test_a_picture_without_a_code_is_no_code(keys: Path, tmp_path: Path) -> None:
    result = station("--keys", str(keys), "--image", str(_picture(None, tmp_path / "wall.png")))
    assert (result.returncode, verdict(result)) == (1, {"valid": False, "reason": "no_code"})


def test_a_picture_of_a_tube_label(keys: Path, tmp_path: Path) -> None:
    result = station("--keys", str(keys), "--image", str(_picture("T-0001", tmp_path / "t.png")))
    assert (result.returncode, verdict(result)) == (1, {"valid": False, "reason": "not_a_code"})


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--at", "yesterday", "HC1:x"], "argument --at: 'yesterday' is neither RFC 3339"),
        (["--at", "2026-05-01T07:00:00", "HC1:x"], "has no time zone"),
        ([], "one of the arguments TEXT --image is required"),
        (["HC1:x", "--image", "a.png"], "not allowed with argument"),
    ],
)
def test_usage_errors_exit_2(keys: Path, args: list[str], message: str) -> None:
    result = station("--keys", str(keys), *args)
    assert result.returncode == 2
    assert result.stdout == ""
    assert message in result.stderr


def test_missing_keys_option_exits_2() -> None:
    result = station("HC1:x")
    assert result.returncode == 2
    assert "--keys" in result.stderr


def test_trust_file_problems_exit_2(tmp_path: Path, issuer: Issuer, code: str) -> None:
    missing = tmp_path / "nowhere.json"
    result = station("--keys", str(missing), code)
    assert (result.returncode, result.stdout) == (2, "")
    assert f"trust file {missing} cannot be used:\n  - no such file" in result.stderr

    not_jwks = tmp_path / "keys.json"
    not_jwks.write_text(json.dumps(issuer.jwk()))  # one JWK, not a set
    result = station("--keys", str(not_jwks), code)
    assert (result.returncode, result.stdout) == (2, "")
    assert f"trust file {not_jwks} cannot be used" in result.stderr
    assert "is not a JWKS" in result.stderr


def test_a_picture_that_cannot_be_read_exits_2(keys: Path, tmp_path: Path) -> None:
    text_file = tmp_path / "code.png"
    text_file.write_text("HC1:not a picture")
    result = station("--keys", str(keys), "--image", str(text_file))
    assert (result.returncode, result.stdout) == (2, "")
    assert "not a picture" in result.stderr
    result = station("--keys", str(keys), "--image", str(tmp_path / "none.png"))
    assert (result.returncode, result.stdout) == (2, "")
    assert "no such file" in result.stderr


DCC = SHARED / "conformance" / "dcc"


@pytest.mark.skipif(not (DCC / "cases.json").is_file(), reason=f"conformance data absent: {DCC}")
def test_conformance_pictures_through_the_command() -> None:
    cases = [c for c in json.loads((DCC / "cases.json").read_text()) if "png" in c]
    # A few, from different countries; the whole set runs in-process in
    # test_codes_conformance (a subprocess each would take minutes).
    sample = list({c["source"].split("/")[0]: c for c in cases}.values())[:4]
    assert len(sample) == 4
    for case in sample:
        args = ["--keys", str(DCC / "keys.jwks.json"), "--at", "2023-11-14T22:13:20Z"]
        result = station(*args, "--image", str(DCC / case["png"]))
        assert result.returncode == 1, result.stderr
        assert verdict(result) == {"valid": False, "reason": case["reason"]}
