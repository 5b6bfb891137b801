"""`station selftest` against the simulated backend, a real Mosquitto and real TLS."""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import re
import socket
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from gpiozero.pins.mock import MockFactory, MockPin
from hypothesis import given
from hypothesis import strategies as st

from edge_agent import health, outbox
from edge_agent.db import open_db, write_transaction
from firmware.config import load_config
from firmware.lights import STATES
from firmware.qr import decode_image_file
from firmware.rtc import DS3231
from firmware.sim.i2c import FakeSMBus
from firmware.sim.rtc import FakeDS3231
from hardware_tests.clock import BACK_SLACK_S, gateway_time, judge
from hardware_tests.probes import ClockStatus, parse_timedatectl, probe_clock
from hardware_tests.selftest import Check, SelfTest
from hardware_tests.testcard import TEST_CARD_TEXT
from kiosk_ui.cli import main
from tests.support.certs import TestCA
from tests.support.config import write_config
from tests.support.mosquitto import Broker, BrokerTls, running_broker
from tests.support.ports import free_port

SYNCED = ClockStatus(True, "timedatectl", "NTPSynchronized=yes")


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    code = main(["selftest", *args])
    return code, capsys.readouterr().out


def by_name(checks: list[Check]) -> dict[str, Check]:
    return {c.name: c for c in checks}


def test_selftest_passes_on_the_simulated_backend(tmp_path: Path, broker: Broker, capsys) -> None:
    cfg = write_config(tmp_path, {"broker": {"url": broker.url}})
    code, out = run_cli(capsys, "--config", str(cfg), "--json")
    report = json.loads(out)
    statuses = {c["name"]: c["status"] for c in report["checks"]}
    assert list(statuses) == [
        "configuration",
        "thermometer",
        "camera",
        "test card",
        "lights",
        "scanner",
        "storage",
        "rtc",
        "clock",
        "broker",
    ]
    # The clock is the machine's: synchronised or not, it is never a simulated device.
    assert statuses.pop("clock") in ("pass", "skip")
    assert statuses.pop("rtc") == "skip"  # none fitted unless the configuration says so
    assert set(statuses.values()) == {"pass"}, report
    assert report["ok"] is True
    assert code == 0
    details = {c["name"]: c["detail"] for c in report["checks"]}
    assert "PEC verified" in details["thermometer"]
    assert "read by zxing" in details["test card"]
    assert "SELFTEST-0001" in details["scanner"]
    assert f"127.0.0.1:{broker.port} accepted the login" in details["broker"]


def test_human_readable_output_and_a_failure_exits_non_zero(tmp_path: Path, capsys) -> None:
    cfg = write_config(tmp_path, {"broker": {"url": f"mqtt://127.0.0.1:{free_port()}"}})
    code, out = run_cli(capsys, "--config", str(cfg))
    assert code == 1
    assert "  PASS  thermometer" in out
    assert "  FAIL  broker" in out
    assert "refused the connection" in out
    assert "1 failed" in out


def test_invalid_configuration_is_reported_as_a_failed_check(tmp_path: Path, capsys) -> None:
    cfg = write_config(tmp_path, {"hardware": {"lights": {"buzzer": 17}}})
    code, out = run_cli(capsys, "--config", str(cfg), "--json")
    report = json.loads(out)
    assert code == 1
    assert report["ok"] is False
    assert len(report["checks"]) == 1
    assert report["checks"][0]["name"] == "configuration"
    assert "buzzer and main_red both use GPIO 17" in report["checks"][0]["detail"]


def test_missing_referenced_files_fail_the_configuration_check(tmp_path: Path) -> None:
    config = load_config(write_config(tmp_path))
    (tmp_path / "issuers.jwks.json").unlink()
    check = SelfTest(config).check_configuration()
    assert check.status == "fail"
    assert "health_code.trusted_keys" in check.detail


def test_write_test_card_prints_a_code_the_decoder_reads(tmp_path: Path, capsys) -> None:
    png = tmp_path / "card.png"
    code, out = run_cli(capsys, "--write-test-card", str(png))
    assert code == 0
    assert str(png) in out
    assert decode_image_file(png) == [TEST_CARD_TEXT]
    assert decode_image_file(png, "pyzbar") == [TEST_CARD_TEXT]


# -- storage and clock -------------------------------------------------------------------


def test_storage_without_enough_free_space_fails(tmp_path: Path) -> None:
    config = load_config(write_config(tmp_path, {"storage": {"min_free_mb": 10**12}}))
    [check] = SelfTest(config).check_storage()
    assert check.status == "fail"
    assert "storage.min_free_mb" in check.detail


def test_storage_in_a_missing_directory_fails(tmp_path: Path) -> None:
    config = load_config(write_config(tmp_path, {"storage": {"path": "gone/station.db"}}))
    [check] = SelfTest(config).check_storage()
    assert check.status == "fail"
    assert "does not exist" in check.detail


@pytest.mark.parametrize(
    ("status", "backend", "expected"),
    [
        (ClockStatus(True, "timedatectl", "yes"), "sim", "pass"),
        (ClockStatus(False, "timedatectl", "no"), "sim", "skip"),
        (ClockStatus(False, "timedatectl", "no"), "pi", "fail"),
        (ClockStatus(False, "adjtimex", "state 5"), "pi", "fail"),
        (ClockStatus(False, "adjtimex", "state 5"), "sim", "skip"),
        (ClockStatus(None, "none", "nothing to ask"), "pi", "skip"),
    ],
)
def test_clock_check_outcomes(tmp_path: Path, status, backend, expected) -> None:
    config = load_config(write_config(tmp_path, {"hardware": {"backend": backend}}))
    [check] = SelfTest(config, clock_probe=lambda: status).check_clock()
    assert check.status == expected
    assert check.detail


def test_timedatectl_output_and_the_real_probe() -> None:
    assert parse_timedatectl("yes\n") is True
    assert parse_timedatectl("no\n") is False
    assert parse_timedatectl("") is None
    status = probe_clock()
    assert status.source in ("timedatectl", "adjtimex", "none")
    assert status.detail


# -- devices ---------------------------------------------------------------------------


def test_pi_backend_off_a_pi_skips_device_checks_with_a_reason(tmp_path: Path) -> None:
    config = load_config(write_config(tmp_path, {"hardware": {"backend": "pi"}}))
    st = SelfTest(config, on_pi=lambda: False, clock_probe=lambda: SYNCED)
    results = by_name(st.run())
    for name in ("thermometer", "camera", "test card", "lights", "scanner"):
        assert results[name].status == "skip"
        assert "not a Raspberry Pi" in results[name].detail
    assert results["rtc"].status == "skip"
    assert results["rtc"].detail == "none fitted (hardware.rtc.fitted = false)"


def test_pi_backend_on_a_pi_with_parts_missing_fails_each_with_its_reason(tmp_path: Path) -> None:
    config = load_config(
        write_config(tmp_path, {"hardware": {"backend": "pi", "thermometer": {"bus": 97}}})
    )
    st = SelfTest(config, on_pi=lambda: True, pin_factory=MockFactory())
    results = by_name(st.run())
    assert results["thermometer"].status == "fail"
    assert "/dev/i2c-97" in results["thermometer"].detail
    assert results["camera"].status == "fail"
    assert results["lights"].status == "pass"  # goes on with what still works
    assert results["scanner"].status == "skip"
    assert "--interactive" in results["scanner"].detail


def rtc_check(tmp_path: Path, chip: FakeDS3231 | None, **rtc: Any) -> Check:
    """The rtc check of a station with ``[hardware.rtc]`` ``rtc``, reading ``chip``."""
    config = load_config(write_config(tmp_path, {"hardware": {"rtc": rtc}}))
    if chip is None:
        st = SelfTest(config)
    else:
        st = SelfTest(config, rtc_factory=lambda hw: DS3231(FakeSMBus({0x68: chip}), 0x68))
    [check] = st.check_rtc()
    assert check.name == "rtc"
    return check


def test_rtc_check_reports_present_valid_and_how_far_the_system_clock_is(tmp_path: Path) -> None:
    check = rtc_check(tmp_path, None, fitted=True)  # the simulated chip shows the system time
    assert check.status == "pass", check
    assert check.detail.startswith("DS3231 at 0x68 on I2C bus 1: present, valid: 20")
    assert "the system clock is 0 s" in check.detail or "the system clock is 1 s" in check.detail


def test_rtc_check_fails_when_the_oscillator_stopped(tmp_path: Path) -> None:
    chip = FakeDS3231(dt.datetime.now(dt.UTC), running=True)
    chip.stop()
    check = rtc_check(tmp_path, chip, fitted=True)
    assert check.status == "fail"
    assert "present, oscillator stopped (OSF set): shows 2000-01-01 00:00:00 UTC" in check.detail
    assert "check the coin cell" in check.detail


def test_rtc_check_fails_on_a_time_before_any_station_and_on_garbage(tmp_path: Path) -> None:
    chip = FakeDS3231(dt.datetime(2019, 5, 1, tzinfo=dt.UTC), running=True)
    assert "before any station ran" in rtc_check(tmp_path, chip, fitted=True).detail
    chip.inject("garbage")
    check = rtc_check(tmp_path, chip, fitted=True)
    assert check.status == "fail"
    assert "registers hold no time (register 0x00 (seconds) holds 0xFF" in check.detail


def test_rtc_check_fails_when_nothing_answers(tmp_path: Path) -> None:
    config = load_config(write_config(tmp_path, {"hardware": {"rtc": {"fitted": True}}}))
    st = SelfTest(config, rtc_factory=lambda hw: DS3231(FakeSMBus({}), 0x68, retry_delay_s=0))
    [check] = st.check_rtc()
    assert check.status == "fail"
    assert check.detail.startswith("absent: real-time clock at I2C address 0x68")
    pi = load_config(
        write_config(tmp_path, {"hardware": {"backend": "pi", "rtc": {"fitted": True, "bus": 97}}})
    )
    [check] = SelfTest(pi, on_pi=lambda: True).check_rtc()
    assert check.status == "fail" and "no I2C bus /dev/i2c-97" in check.detail


def test_interactive_lights_fail_when_the_technician_does_not_see_one(tmp_path: Path) -> None:
    config = load_config(write_config(tmp_path))
    questions: list[str] = []

    def ask(q: str) -> str:
        questions.append(q)
        return "n" if "beacon" in q else "y"

    [check] = SelfTest(config, interactive=True, ask=ask).check_lights()
    assert len(questions) == 6
    assert check.status == "fail"
    assert check.detail == "the technician did not see: the isolation beacon"


def test_lights_check_reads_back_a_stuck_pin(tmp_path: Path) -> None:
    class StuckLow(MockPin):
        def _set_state(self, value: Any) -> None:
            if self._number == 22:  # main_green's driver is dead
                value = False
            super()._set_state(value)

    config = load_config(write_config(tmp_path))
    [check] = SelfTest(config, pin_factory=MockFactory(pin_class=StuckLow)).check_lights()
    assert check.status == "fail"
    assert "lamp test of main_green" in check.detail


# -- broker ------------------------------------------------------------------------------


def _tls_config(tmp_path: Path, broker: Broker, ca: Path, client: Any) -> Path:
    return write_config(
        tmp_path / "station",
        {
            "broker": {
                "url": f"mqtts://localhost:{broker.port}",
                "allow_plaintext": False,
                "ca_file": str(ca),
                "cert_file": str(client.cert),
                "key_file": str(client.key),
            }
        },
    )


def test_broker_with_a_valid_tls_certificate_passes(tmp_path: Path) -> None:
    ca = TestCA(tmp_path / "ca")
    server, client = ca.issue("broker", server=True), ca.issue("K03")
    tls = BrokerTls(ca.cert_path, server.cert, server.key)
    with running_broker(tmp_path / "b", tls=tls) as broker:
        config = load_config(_tls_config(tmp_path, broker, ca.cert_path, client))
        [check] = SelfTest(config).check_broker()
    assert check.status == "pass", check.detail
    assert "TLSv1." in check.detail
    assert "certificate valid for" in check.detail


def test_broker_certificate_from_another_ca_fails(tmp_path: Path) -> None:
    ca, other = TestCA(tmp_path / "ca"), TestCA(tmp_path / "other", "Someone else")
    server, client = ca.issue("broker", server=True), ca.issue("K03")
    with running_broker(
        tmp_path / "b", tls=BrokerTls(ca.cert_path, server.cert, server.key)
    ) as broker:
        config = load_config(_tls_config(tmp_path, broker, other.cert_path, client))
        [check] = SelfTest(config).check_broker()
    assert check.status == "fail"
    assert "certificate" in check.detail
    assert "not valid" in check.detail


def _expired_server_cert(ca: TestCA, directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "broker")]))
        .issuer_name(ca.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=30))
        .not_valid_after(now - dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .sign(ca.key, hashes.SHA256())
    )
    cert_path, key_path = directory / "expired.pem", directory / "expired.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def test_broker_with_an_expired_certificate_fails(tmp_path: Path) -> None:
    ca = TestCA(tmp_path / "ca")
    client = ca.issue("K03")
    cert, key = _expired_server_cert(ca, tmp_path / "ca")
    with running_broker(tmp_path / "b", tls=BrokerTls(ca.cert_path, cert, key)) as broker:
        config = load_config(_tls_config(tmp_path, broker, ca.cert_path, client))
        [check] = SelfTest(config).check_broker()
    assert check.status == "fail"
    assert "expired" in check.detail


def test_broker_refusing_the_login_fails(tmp_path: Path) -> None:
    with running_broker(tmp_path / "b", allow_anonymous=False) as broker:
        config = load_config(write_config(tmp_path / "s", {"broker": {"url": broker.url}}))
        [check] = SelfTest(config).check_broker()
    assert check.status == "fail"
    assert "refused the MQTT login" in check.detail


def test_a_port_that_does_not_speak_mqtt_fails(tmp_path: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]

        def answer_like_a_web_server() -> None:
            conn, _ = server.accept()
            with conn:
                conn.recv(1024)
                conn.sendall(b"HTTP/1.1 400 Bad Request\r\n\r\n")

        t = threading.Thread(target=answer_like_a_web_server, daemon=True)
        t.start()
        url = f"mqtt://127.0.0.1:{port}"
        config = load_config(write_config(tmp_path, {"broker": {"url": url}}))
        [check] = SelfTest(config, timeout_s=2.0).check_broker()
        t.join(5)
    assert check.status == "fail"
    assert f"127.0.0.1:{port} does not answer like an MQTT broker" in check.detail


def test_an_unreadable_password_file_fails_before_connecting(tmp_path: Path) -> None:
    missing = tmp_path / "absent.secret"
    overrides = {"broker": {"username": "K03", "password_file": str(missing)}}
    config = load_config(write_config(tmp_path, overrides))
    [check] = SelfTest(config).check_broker()
    assert check.status == "fail"
    assert "cannot read the broker password file" in check.detail


def test_the_technicians_guide_explains_every_check_and_light_state(tmp_path: Path) -> None:
    guide = (Path(__file__).resolve().parents[1] / "docs" / "hardware.md").read_text()
    config = load_config(write_config(tmp_path))
    names = [c.name for c in SelfTest(config, clock_probe=lambda: SYNCED).run()]
    assert len(names) == 10
    for name in names:
        assert f"| `{name}` |" in guide, name
    for state in STATES:
        assert f"`{state}`" in guide, state


# -- the clock: which sources vouch for it, and the newest fact ------------------------


def _clock_after_rtc(tmp_path: Path, chip: FakeDS3231, status: ClockStatus) -> Check:
    config = load_config(
        write_config(tmp_path, {"hardware": {"backend": "pi", "rtc": {"fitted": True}}})
    )
    st = SelfTest(
        config,
        on_pi=lambda: True,
        clock_probe=lambda: status,
        rtc_factory=lambda hw: DS3231(FakeSMBus({0x68: chip}), 0x68),
    )
    st.check_rtc()
    [check] = st.check_clock()
    return check


UNSYNCED = ClockStatus(False, "timedatectl", "NTPSynchronized=no")


def test_a_valid_real_time_clock_vouches_for_the_clock_without_ntp(tmp_path: Path) -> None:
    chip = FakeDS3231(dt.datetime.now(dt.UTC), running=True)
    check = _clock_after_rtc(tmp_path, chip, UNSYNCED)
    assert check.status == "pass", check
    assert check.detail.startswith("the real-time clock vouches for it (NTP: not synchronised")
    assert "RTC: valid, 0 s" in check.detail or "RTC: valid, 1 s" in check.detail


def test_a_real_time_clock_an_hour_off_or_stopped_vouches_for_nothing(tmp_path: Path) -> None:
    off = FakeDS3231(dt.datetime.now(dt.UTC) + dt.timedelta(hours=1), running=True)
    check = _clock_after_rtc(tmp_path, off, UNSYNCED)
    assert check.status == "fail"
    assert re.search(r"RTC: valid, 3(599|600|601) s ahead", check.detail), check.detail
    assert "no source vouches for it" in check.detail
    stopped = FakeDS3231(dt.datetime.now(dt.UTC), running=True)
    stopped.stop()
    check = _clock_after_rtc(tmp_path / "b", stopped, UNSYNCED)
    assert check.status == "fail" and "RTC: oscillator stopped (OSF set)" in check.detail


def test_a_clock_before_the_newest_fact_went_back_whatever_ntp_says(tmp_path: Path) -> None:
    config = load_config(write_config(tmp_path))
    db = open_db(config.storage.path)
    outbox.install(db)
    with write_transaction(db) as conn:  # a fact recorded an hour from now
        outbox.append(
            conn,
            source=config.source,
            type="sampling.alert.raised",
            data={"kind": "storage_low", "resident": None, "detail": "x"},
            at=time.time() + 3600,
        )
    conn.execute("UPDATE outbox SET created_at = created_at + 3600")
    db.conn.close()
    [check] = SelfTest(config, clock_probe=lambda: SYNCED).check_clock()
    assert check.status == "fail"
    assert "s before the newest fact the station recorded: it went back" in check.detail
    assert "NTP: synchronised" in check.detail


@given(
    now=st.floats(1.7e9, 2.0e9),
    back=st.floats(0, 1e6),
    synced=st.sampled_from([True, False, None]),
    sim=st.booleans(),
)
def test_the_clock_never_passes_before_the_newest_fact(
    now: float, back: float, synced: bool | None, sim: bool
) -> None:
    verdict = judge(now, ClockStatus(synced, "t", "d"), None, now + back, sim=sim)
    if back > BACK_SLACK_S:
        assert verdict.status == "fail" and "went back" in verdict.detail
    else:
        assert verdict.status == ("pass" if synced else "skip" if synced is None or sim else "fail")


@pytest.mark.parametrize(("gateway_off_s", "status"), [(5.0, "pass"), (600.0, "fail")])
def test_the_gateway_time_the_agent_recorded_vouches_for_the_clock(
    tmp_path: Path, gateway_off_s: float, status: str
) -> None:
    config = load_config(write_config(tmp_path))
    db = open_db(config.storage.path)
    outbox.install(db)
    now = time.time()
    health.record_gateway_time(db, outbox.rfc3339(now - 120 + gateway_off_s), now - 120)
    db.conn.close()
    verdict = judge(
        time.time(),
        UNSYNCED,
        None,
        None,
        sim=False,
        gateway=gateway_time(config.storage.path),
    )
    assert verdict.status == status, verdict.detail
    assert f"gateway: {gateway_off_s:.0f} s ahead, 120 s ago" in verdict.detail
    [check] = SelfTest(config, clock_probe=lambda: UNSYNCED).check_clock()
    assert f"gateway: {gateway_off_s:.0f} s ahead" in check.detail
