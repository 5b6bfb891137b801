"""The sampler panel's lock: a staff PIN or badge opens it, inactivity closes it again.

``kiosk.staff_pin_file`` holds one PBKDF2 hash per PIN or badge (``station kiosk
--hash-pin`` makes one), never a PIN itself; ``StaffLock`` checks a typed PIN or a scanned
badge against them in constant time.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from firmware.errors import ConfigError

PIN_ITERATIONS = 200_000


def hash_secret(secret: str, iterations: int = PIN_ITERATIONS, salt: bytes | None = None) -> str:
    """One line of ``kiosk.staff_pin_file``: ``pbkdf2_sha256$iterations$salt$hash``."""
    salt = salt or secrets.token_bytes(16)
    digest = hashlib.pbkdf2_hmac("sha256", secret.encode(), salt, iterations)
    b64 = base64.urlsafe_b64encode
    return f"pbkdf2_sha256${iterations}${b64(salt).decode()}${b64(digest).decode()}"


def _check(secret: str, line: str) -> bool:
    try:
        algo, iterations, salt, digest = line.split("$")
        if algo != "pbkdf2_sha256":
            return False
        got = hashlib.pbkdf2_hmac(
            "sha256", secret.encode(), base64.urlsafe_b64decode(salt), int(iterations)
        )
        return hmac.compare_digest(got, base64.urlsafe_b64decode(digest))
    except ValueError:
        return False


def load_secret_hashes(path: Path | None) -> list[str]:
    """The PIN and badge hashes of ``kiosk.staff_pin_file`` (one per line, # comments)."""
    if path is None:
        return []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise ConfigError("kiosk.staff_pin_file", [f"{path}: {exc.strerror}"]) from None
    hashes = [ln.strip() for ln in lines if ln.strip() and not ln.lstrip().startswith("#")]
    bad = [h for h in hashes if h.count("$") != 3 or not h.startswith("pbkdf2_sha256$")]
    if bad:
        raise ConfigError(
            "kiosk.staff_pin_file",
            [f"{path}: a line is not a pbkdf2_sha256 hash (station kiosk --hash-pin makes one)"],
        )
    return hashes


class StaffLock:
    """The sampler panel's lock: a PIN or a badge opens it, inactivity closes it again."""

    def __init__(
        self,
        hashes: Sequence[str],
        lock_after_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.hashes = list(hashes)
        self.lock_after_s = lock_after_s
        self.clock = clock
        self._last: float | None = None
        self.who: str | None = None

    @property
    def unlocked(self) -> bool:
        if self._last is None:
            return False
        if self.clock() - self._last >= self.lock_after_s:
            self.lock()
            return False
        return True

    def unlock(self, secret: str, who: str = "staff") -> bool:
        """True (and unlocked) when ``secret`` matches one of the PIN or badge hashes."""
        if secret and any(_check(secret, h) for h in self.hashes):
            self._last = self.clock()
            self.who = who
            return True
        return False

    def touch(self) -> None:
        """A staff touch: the panel stays open for another ``lock_after_s``."""
        if self.unlocked:
            self._last = self.clock()

    def lock(self) -> None:
        self._last = None
        self.who = None
