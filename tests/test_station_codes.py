"""Real signed codes through the real verifier into the Station, at the station's clock."""

from __future__ import annotations

from pathlib import Path

import pytest

from kiosk_ui.core.codes import CodeVerifier, TrustStore, Verdict
from kiosk_ui.drills.issuer import Issuer, jwks
from kiosk_ui.errors import RuleViolation
from tests.support.contract import check_outbox
from tests.support.station import T0, Rig, open_station

TUBE = "TB2026112300001"


@pytest.fixture(scope="module")
def issuers() -> tuple[Issuer, Issuer]:
    return Issuer.generate("ES256"), Issuer.generate("EdDSA")


@pytest.fixture
def rig(tmp_path: Path, issuers: tuple[Issuer, Issuer]):
    verifier = CodeVerifier(TrustStore.from_jwks(jwks(issuers)), leeway_s=60)
    r = open_station(tmp_path, {"pool_size": 5}, verifier=verifier)
    r.station.scan(TUBE, "S07")
    yield r
    check_outbox(r.station.db.conn)
    r.station.close()


def test_valid_codes_of_both_algorithms_join_the_tube(rig: Rig, issuers) -> None:
    es, ed = issuers
    a = rig.station.verify(es.issue("sub-a", "green", name="张三", now=T0 - 60))
    b = rig.station.verify(ed.issue("sub-b", "green", cat=["elderly"], now=T0 - 60))
    assert isinstance(a, Verdict) and a.valid and b.valid
    ra = rig.station.check_in(a, [36.4])
    rb = rig.station.check_in(b, [36.8])
    assert (ra.resident, ra.lane, ra.position, ra.name) == ("sub-a", "main", 1, "张*")
    assert (rb.resident, rb.lane, rb.position, rb.name) == ("sub-b", "green", 2, None)
    assert ra.events[0]["data"]["color"] == "green"


def test_yellow_and_red_real_codes(rig: Rig, issuers) -> None:
    es, _ = issuers
    red = rig.station.verify(es.issue("sub-r", "red", now=T0))
    assert rig.station.needs_temperature(red) is False
    r = rig.station.check_in(red)
    assert (r.decision, r.reason, r.alert) == ("isolate", "red_code", "red_code")
    y = rig.station.check_in(rig.station.verify(es.issue("sub-y", "yellow", now=T0)), [36.5])
    assert (y.decision, y.lane) == ("single", "single")


def test_the_station_clock_decides_expiry(rig: Rig, issuers) -> None:
    es, _ = issuers
    text = es.issue("sub-e", "green", now=T0, exp=int(T0) + 3600)
    assert rig.station.verify(text).valid
    rig.clock.advance(3600 + 61)  # past exp and the 60 s leeway
    verdict = rig.station.verify(text)
    assert (verdict.valid, verdict.reason) == (False, "expired")
    r = rig.station.check_in(verdict)
    assert (r.decision, r.lane, r.reason, r.resident) == ("refer", "staff", "expired", None)


def test_unknown_issuer_and_garbage_are_referred_with_their_reason(rig: Rig) -> None:
    stranger = Issuer.generate("ES256")
    for text, reason in [
        (stranger.issue("sub-x", now=T0), "unknown_key"),
        ("HC1:not base45 at all", "bad_format"),
        ("hello", "not_a_code"),
    ]:
        r = rig.station.check_in(rig.station.verify(text))
        assert (r.decision, r.reason) == ("refer", reason)
    assert rig.station.open_tube().members == ()


def test_a_tube_barcode_on_the_camera_is_not_a_check_in(rig: Rig) -> None:
    with pytest.raises(RuleViolation) as info:
        rig.station.verify("TB2026112300009")
    assert info.value.code == "tube_barcode_on_camera"
    assert rig.station.counters().checkins == 0
