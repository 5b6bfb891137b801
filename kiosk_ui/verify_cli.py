"""`station verify-code`: verify one resident code offline and print the verdict as JSON.

    station verify-code --keys FILE [--at TIME] (TEXT | --image FILE)

Prints ``{"valid": bool, "reason": null | reason, "claims": {...}}`` (``claims`` only for a
valid code) and exits 0 for a valid code, 1 for a rejected one, 2 for a usage error (no such
trust file, a trust file that is not a JWKS, a picture that cannot be read, a bad ``--at``).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
import time
from datetime import datetime
from pathlib import Path

from firmware.errors import DecoderError
from kiosk_ui.core.codes import PREFIX, CodeVerifier, Reason, TrustStore, Verdict
from kiosk_ui.errors import UsageError

log = logging.getLogger(__name__)

EXIT_VALID = 0
EXIT_REJECTED = 1
EXIT_USAGE = 2


def parse_time(value: str) -> float:
    """RFC 3339 (``2026-05-01T07:00:00+08:00``, ``...Z``) or epoch seconds, as epoch seconds."""
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        if math.isfinite(seconds):
            return seconds
        raise argparse.ArgumentTypeError(f"{value!r} is not a moment in time")
    try:
        moment = datetime.fromisoformat(text.replace("z", "Z"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{value!r} is neither RFC 3339 (e.g. 2026-05-01T07:00:00+08:00) nor epoch seconds"
        ) from None
    if moment.tzinfo is None:
        raise argparse.ArgumentTypeError(
            f"{value!r} has no time zone; add Z or an offset such as +08:00"
        )
    return moment.timestamp()


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--keys", type=Path, required=True, metavar="FILE", help="trust file of issuer keys (JWKS)"
    )
    parser.add_argument(
        "--at",
        type=parse_time,
        metavar="TIME",
        help="verify as of TIME (RFC 3339 or epoch seconds) instead of now",
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "text", nargs="?", metavar="TEXT", help="the code's text (HC1:...); '-' reads stdin"
    )
    source.add_argument(
        "--image", type=Path, metavar="FILE", help="a picture (PNG, JPEG, ...) holding the QR code"
    )


def _codes_in_image(path: Path) -> list[str]:
    from firmware.qr import decode_image_file  # noqa: PLC0415 (numpy, zxing only when needed)

    try:
        return decode_image_file(path)
    except DecoderError as exc:
        raise UsageError("--image", [str(exc)]) from None


def verdict_for(args: argparse.Namespace) -> Verdict:
    """Load the trust file, read the code and verify it (usage problems raise ConfigError)."""
    trust = TrustStore.load(args.keys)
    now = time.time() if args.at is None else args.at
    verifier = CodeVerifier(trust)
    if args.image is not None:
        texts = _codes_in_image(args.image)
        if not texts:
            return Verdict.rejected(Reason.NO_CODE, f"no QR code in {args.image}")
        # A picture may show several codes; a resident code is the one to judge.
        text = next((t for t in texts if t.startswith(PREFIX)), texts[0])
        if len(texts) > 1:
            log.info("%d codes in the picture; verifying %r...", len(texts), text[:12])
        return verifier.verify(text, now)
    text = sys.stdin.read() if args.text == "-" else args.text
    return verifier.verify(text, now)


def run(args: argparse.Namespace) -> int:
    verdict = verdict_for(args)
    if not verdict.valid:
        log.info("rejected: %s (%s)", verdict.reason, verdict.detail)
    out = json.dumps(verdict.as_json(), ensure_ascii=False) + "\n"
    sys.stdout.buffer.write(out.encode("utf-8"))
    sys.stdout.flush()
    return EXIT_VALID if verdict.valid else EXIT_REJECTED
