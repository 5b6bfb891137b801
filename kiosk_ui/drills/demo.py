"""The demo drills of examples/drills, and the throwaway issuer that signs their codes.

``station simulate --make-drills DIR`` writes them: a fresh issuer key pair is generated in
memory, signs every resident code the drills show (valid until 2100, so the committed drills
keep working), and only its public half is written, as ``demo-issuers.jwks.json`` in the
parent of DIR, where examples/station.toml finds it. The private key is never written
anywhere; running this again makes new codes under a new key.

The drills assume ``sampling.pool_size = 10`` (the default) and the no-code drill assumes
``kiosk.id_hash_key_file`` is set.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from kiosk_ui.drills.issuer import Issuer, jwks

FAR_FUTURE = 4_102_444_800  # 2100-01-01
TRUST_FILE = "demo-issuers.jwks.json"

SURNAMES = "张王李赵刘陈杨黄周吴徐孙胡朱高林何郭马罗"
GIVEN = "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平"


class _Codes:
    def __init__(self) -> None:
        self.es = Issuer.generate("ES256", kid=b"demo-es256", iss="T01-HEALTH")
        self.ed = Issuer.generate("EdDSA", kid=b"demo-eddsa", iss="T01-HEALTH")
        self.n = 0
        self.iat = int(time.time()) - 3600

    def code(self, color: str = "green", cat: tuple[str, ...] = (), **kw: Any) -> str:
        self.n += 1
        n = self.n
        issuer = self.es if n % 2 else self.ed
        name = SURNAMES[n % len(SURNAMES)] + GIVEN[(n * 7) % len(GIVEN)]
        return issuer.issue(
            self.sub(n),
            color,
            name=kw.get("name", name),
            cat=cat,
            iat=kw.get("iat", self.iat),
            exp=kw.get("exp", FAR_FUTURE),
        )

    @staticmethod
    def sub(n: int) -> str:
        return f"T01-R{n:05d}"


def _show(code: str, t: float | list[float], **extra: Any) -> dict[str, Any]:
    return {"show": code, "temperature": t, **extra}


def _morning(c: _Codes) -> dict[str, Any]:
    steps: list[dict[str, Any]] = [{"scan": "TB2026112300001"}]
    first = c.n + 1
    for k in range(1, 11):
        cat = ("elderly",) if k == 4 else ()
        distort = {"distort": {"rotate": 20, "blur": 1.0, "scale": 0.6}} if k == 7 else {}
        steps.append(_show(c.code(cat=cat), round(36.2 + 0.1 * (k % 6), 1), **distort))
        if k == 1:
            steps.append(
                {
                    "expect": {
                        "decision": "pool",
                        "lane": "main",
                        "tube": "TB2026112300001",
                        "position": 1,
                        "lights": {"main": "go", "green": "idle", "isolation": "idle"},
                    }
                }
            )
        if k == 4:
            steps.append({"expect": {"lane": "green", "position": 4, "lights": {"green": "go"}}})
        if k == 7:
            steps.append({"expect": {"position": 7}})
    steps += [
        {"expect": {"position": 10, "open_tube_count": 10}},
        {"touch": "seal"},
        {"expect": {"tube": "TB2026112300001", "open_tube_count": 0}},
        {"scan": "TB2026112300002"},
        _show(c.code(), 36.5),
        _show(c.code(cat=("child",)), [36.8]),
        {"expect": {"decision": "pool", "lane": "green", "position": 2}},
        {"wait": 0.5},
        {"touch": "seal"},
        {"scan": "BX20261123A1"},
        {"touch": "dispatch", "box": "BX20261123A1"},
        {"expect": {"open_tube_count": 0}},
    ]
    again = _Codes.sub(first)
    # The first resident comes back the same morning.
    c2 = c.es.issue(again, "green", name="张伟", iat=c.iat, exp=FAR_FUTURE)
    steps += [
        _show(c2, 36.6),
        {"expect": {"decision": "refer", "reason": "already_sampled", "lane": "staff"}},
    ]
    return {"name": "a normal morning: two pooled tubes, a priority lane, a box", "steps": steps}


def _fever(c: _Codes) -> dict[str, Any]:
    return {
        "name": "fever: measured again, confirmed, isolated; an implausible reading",
        "steps": [
            {"scan": "TB2026112300011"},
            _show(c.code(), [37.8, 36.8]),
            {"expect": {"decision": "pool", "lane": "main", "position": 1}},
            _show(c.code(), [38.2, 38.4]),
            {
                "expect": {
                    "decision": "isolate",
                    "reason": "fever",
                    "lane": "isolation",
                    "tube": None,
                    "screen": "isolation",
                    "alerts": 1,
                    "lights": {"main": "stop", "isolation": "isolate", "green": "idle"},
                }
            },
            _show(c.code(), [30.1, 29.8, 31.0]),
            {"expect": {"decision": "refer", "reason": "implausible_temperature"}},
            _show(c.code(), 36.4),
            {"expect": {"position": 2, "open_tube_count": 2}},
        ],
    }


def _codes(c: _Codes) -> dict[str, Any]:
    expired = c.code(iat=1_700_000_000, exp=1_700_086_400)
    stranger = Issuer.generate("ES256", kid=b"not-trusted").issue(
        "T01-X0001", "green", exp=FAR_FUTURE
    )
    return {
        "name": "red and yellow codes, and codes that are refused",
        "steps": [
            {"scan": "TB2026112300021"},
            {"show": c.code("red")},
            {
                "expect": {
                    "decision": "isolate",
                    "reason": "red_code",
                    "lane": "isolation",
                    "alerts": 1,
                    "lights": {"isolation": "isolate"},
                }
            },
            _show(c.code("yellow"), 36.6),
            {"expect": {"decision": "single", "lane": "single", "screen": "wait"}},
            {"scan": "TB2026112300022"},
            {"expect": {"tube": "TB2026112300022", "open_tube_count": 0}},
            _show(c.code(), 36.5),
            {"expect": {"decision": "pool", "tube": "TB2026112300021", "position": 1}},
            {"show": expired},
            {"expect": {"decision": "refer", "reason": "expired", "lane": "staff"}},
            {"show": stranger},
            {"expect": {"decision": "refer", "reason": "unknown_key"}},
            {"show": "TB2026112300099"},
            {"expect": {"screen": "staff", "lights": {"main": "stop"}}},
            {"show": "HELLO"},
            {"expect": {"decision": "refer", "reason": "not_a_code"}},
        ],
    }


def _full(c: _Codes) -> dict[str, Any]:
    steps: list[dict[str, Any]] = [{"scan": "TB2026112300031"}]
    steps += [_show(c.code(), 36.5) for _ in range(10)]
    steps += [
        {"expect": {"position": 10, "open_tube_count": 10}},
        _show(c.code(), 36.6),
        {
            "expect": {
                "decision": "pool",
                "position": None,
                "screen": "wait",
                "lights": {"main": "wait"},
            }
        },
        _show(c.code(), 36.7),
        {"expect": {"screen": "wait"}},
        {"touch": "seal"},
        {"scan": "TB2026112300032"},
        {"expect": {"tube": "TB2026112300032", "open_tube_count": 2}},
        _show(c.code(), 36.4),
        {"expect": {"tube": "TB2026112300032", "position": 3}},
    ]
    return {"name": "a full tube: the next residents wait, then join the new tube", "steps": steps}


def _voided(c: _Codes) -> dict[str, Any]:
    codes = [c.code() for _ in range(3)]
    third = _Codes.sub(c.n)
    steps: list[dict[str, Any]] = [{"scan": "TB2026112300041"}]
    steps += [_show(code, 36.5) for code in codes]
    steps += [
        {"expect": {"position": 3, "open_tube_count": 3}},
        {"touch": "void", "reason": "sample spilled"},
        {"expect": {"tube": "TB2026112300041", "open_tube_count": 0}},
        {"scan": "TB2026112300042"},
    ]
    for k, code in enumerate(codes, start=1):
        steps += [_show(code, 36.6), {"expect": {"decision": "pool", "position": k}}]
    steps += [
        {"touch": "remove", "resident": third, "reason": "left the queue"},
        {"expect": {"open_tube_count": 2}},
        _show(c.code(), 36.5),
        {"expect": {"position": 3}},
    ]
    return {"name": "a voided tube: its members check in again", "steps": steps}


def _offline(c: _Codes) -> dict[str, Any]:
    steps: list[dict[str, Any]] = [
        {"scan": "TB2026112300051"},
        _show(c.code(), 36.5),
        {"wait": 0.5},
        {"gateway": "offline"},
    ]
    steps += [_show(c.code(), 36.5) for _ in range(5)]
    steps += [
        {"expect": {"decision": "pool", "position": 6, "lights": {"main": "go"}}},
        {"touch": "seal"},
        {"wait": 1.0},
        {"expect": {"link": "offline", "open_tube_count": 0}},
        {"gateway": "online"},
        {"scan": "TB2026112300052"},
        _show(c.code(), 36.6),
        {"expect": {"position": 1}},
    ]
    return {"name": "the gateway goes offline: the kiosk keeps working", "steps": steps}


def _no_code(c: _Codes) -> dict[str, Any]:
    return {
        "name": "a resident without a code, and the thermometer failing",
        "steps": [
            {"scan": "TB2026112300061"},
            {"id": "11010519491231002X", "temperature": 36.5},
            {"expect": {"decision": "pool", "lane": "main", "position": 1}},
            {"thermometer": "fault"},
            _show(c.code(), 36.7),
            {"expect": {"decision": "pool", "position": 2}},
            _show(c.code(), [37.5, 36.9]),
            {"expect": {"decision": "pool", "position": 3}},
            {"thermometer": "ok"},
            _show(c.code(), 36.6),
            {"expect": {"position": 4}},
        ],
    }


DRILLS = {
    "normal-morning.json": _morning,
    "fever.json": _fever,
    "red-yellow-and-refused-codes.json": _codes,
    "full-tube.json": _full,
    "voided-tube.json": _voided,
    "gateway-offline.json": _offline,
    "no-code-and-thermometer-fault.json": _no_code,
}


def write_drills(directory: Path, trust_file: Path | None = None) -> list[Path]:
    """Write every demo drill into ``directory`` and the throwaway issuer's public keys into
    ``trust_file`` (default: ``demo-issuers.jwks.json`` in the parent of ``directory``)."""
    directory.mkdir(parents=True, exist_ok=True)
    codes = _Codes()
    written: list[Path] = []
    for name, make in DRILLS.items():
        path = directory / name
        path.write_text(
            json.dumps(make(codes), ensure_ascii=False, indent=1) + "\n", encoding="utf-8"
        )
        written.append(path)
    trust = trust_file or directory.parent / TRUST_FILE
    trust.write_text(json.dumps(jwks([codes.es, codes.ed]), indent=1) + "\n", encoding="utf-8")
    written.append(trust)
    return written
