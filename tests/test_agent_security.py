"""TLS with certificates made at test time, clear text refused, broker ACLs enforced."""

from __future__ import annotations

import logging
import queue
import secrets
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge_agent import outbox
from edge_agent.agent import Agent
from edge_agent.errors import LinkError
from edge_agent.link import Connection, LinkSettings
from tests.support.certs import Issued, TestCA
from tests.support.edge import (
    agent_thread,
    all_events,
    produce,
    station_config,
    station_db,
    undelivered,
    wait_until,
)
from tests.support.gateway_recorder import Recorder, audit
from tests.support.mosquitto import Broker, BrokerTls

# The per-station rules of docs/mosquitto/acl.conf, for township T01.
ACL = """\
user recorder
topic read sampling/#

pattern write sampling/T01/%u/events
pattern write sampling/T01/%u/status
pattern write sampling/T01/%u/telemetry
pattern write sampling/T01/%u/replies
pattern read sampling/T01/%u/commands
pattern read sampling/T01/%u/acks
"""


class Pki:
    def __init__(self, directory: Path) -> None:
        self.ca = TestCA(directory / "ca")
        self.server = self.ca.issue("localhost", server=True)
        self.k03 = self.ca.issue("K03")
        self.recorder = self.ca.issue("recorder")
        self.other_ca = TestCA(directory / "other-ca", name="Some other CA")


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return Pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def tls_broker(tmp_path: Path, pki: Pki) -> Iterator[Broker]:
    acl = tmp_path / "acl.conf"
    acl.write_text(ACL)
    b = Broker(
        tmp_path / "broker",
        tls=BrokerTls(pki.ca.cert_path, pki.server.cert, pki.server.key),
        acl_file=acl,
    )
    b.start()
    try:
        yield b
    finally:
        b.stop()


def _recorder(broker: Broker, pki: Pki) -> Recorder:
    return Recorder(
        broker.port,
        tls_args={
            "ca_certs": str(pki.ca.cert_path),
            "certfile": str(pki.recorder.cert),
            "keyfile": str(pki.recorder.key),
        },
    )


def _client(pki: Pki, who: Issued) -> dict[str, Path]:
    return {"ca_file": pki.ca.cert_path, "cert_file": who.cert, "key_file": who.key}


@pytest.mark.timeout(60)
def test_tls_with_a_client_certificate_delivers(
    tmp_path: Path, pki: Pki, tls_broker: Broker
) -> None:
    _, config = station_config(tmp_path, tls_broker.url, **_client(pki, pki.k03))
    assert config.broker.tls
    db = station_db(config)
    produce(db, config.source, 60, per_transaction=6)
    with _recorder(tls_broker, pki) as rec, agent_thread(config):
        wait_until(lambda: undelivered(db) == 0, 20, "delivered over TLS")
        rec.wait_for(lambda r: len(r.distinct_event_ids()) == 60, 10, "recorded")
        status = rec.on("status")
    assert audit(all_events(db), rec.events()).ok
    assert status[0].json()["state"] == "online"


@pytest.mark.timeout(60)
def test_a_broker_signed_by_another_ca_is_refused(
    tmp_path: Path, pki: Pki, tls_broker: Broker, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="edge_agent")
    _, config = station_config(
        tmp_path,
        tls_broker.url,
        ca_file=pki.other_ca.cert_path,
        cert_file=pki.k03.cert,
        key_file=pki.k03.key,
    )
    db = station_db(config)
    produce(db, config.source, 10)
    with _recorder(tls_broker, pki) as rec, agent_thread(config) as agent:
        wait_until(lambda: "alert.connect" in outbox.read_state(db), 10, "the refusal")
        time.sleep(1.0)
        assert not agent.connected
        state = outbox.read_state(db)
    assert "not trusted" in state["alert.connect"]["reason"]
    assert outbox.read_state(db)["link.state"] == "stopped"
    assert undelivered(db) == 10
    assert rec.events() == [] and rec.on("status") == []
    assert any("not trusted" in r.getMessage() for r in caplog.records)


@pytest.mark.timeout(30)
def test_a_station_without_a_certificate_is_turned_away(
    tmp_path: Path, pki: Pki, tls_broker: Broker
) -> None:
    _, config = station_config(tmp_path, tls_broker.url, ca_file=pki.ca.cert_path)
    db = station_db(config)
    produce(db, config.source, 3)
    with agent_thread(config) as agent:
        wait_until(lambda: agent.failures >= 2, 10, "repeated refusals")
        assert not agent.connected
    assert undelivered(db) == 3


def test_clear_text_is_refused_at_connect_time_unless_waived(tmp_path: Path) -> None:
    plain = LinkSettings(host="127.0.0.1", port=1883, client_id="x", tls=False)
    with pytest.raises(LinkError, match="without TLS"):
        Connection(plain, queue.Queue().put, 1)
    _, config = station_config(tmp_path, "mqtt://127.0.0.1:1883")
    db = station_db(config)
    with pytest.raises(LinkError, match="without TLS"):
        Agent(config, db, settings=plain)
    waived = LinkSettings(
        host="127.0.0.1", port=1883, client_id="x", tls=False, allow_plaintext=True
    )
    Connection(waived, queue.Queue().put, 1)  # accepted: the configuration said so


@pytest.mark.timeout(60)
def test_publishing_under_another_stations_topic_is_refused_and_alerted(
    tmp_path: Path, pki: Pki, tls_broker: Broker, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="edge_agent")
    # Station K04's configuration, but K03's certificate: the ACL allows only K03's topics.
    _, config = station_config(tmp_path, tls_broker.url, station="K04", **_client(pki, pki.k03))
    db = station_db(config)
    produce(db, config.source, 10)
    with _recorder(tls_broker, pki) as rec, agent_thread(config) as agent:
        wait_until(lambda: "alert.delivery" in outbox.read_state(db), 10, "the alert")
        telemetry = agent.telemetry()
        wait_until(lambda: agent.failures >= 2, 10, "retried after a backoff")
    state = outbox.read_state(db)
    assert state["alert.delivery"]["seq"] == 1
    assert "Not authorized" in state["alert.delivery"]["reason"]
    assert telemetry["alerts"]["delivery"]["seq"] == 1
    assert undelivered(db) == 10
    assert (
        db.conn.execute("SELECT count(*) FROM outbox WHERE published_at IS NOT NULL").fetchone()[0]
        == 0
    )
    assert rec.events() == []
    assert any(
        "ALERT" in r.getMessage() and "Not authorized" in r.getMessage() for r in caplog.records
    )


@pytest.mark.skipif(shutil.which("mosquitto_passwd") is None, reason="needs mosquitto_passwd")
@pytest.mark.timeout(60)
def test_username_and_password_file_over_tls(tmp_path: Path, pki: Pki) -> None:
    passwords = tmp_path / "passwd"
    secret = secrets.token_urlsafe(16)
    subprocess.run(
        ["mosquitto_passwd", "-c", "-b", str(passwords), "K03", secret],
        check=True,
        capture_output=True,
    )
    broker = Broker(
        tmp_path / "broker",
        tls=BrokerTls(
            pki.ca.cert_path,
            pki.server.cert,
            pki.server.key,
            require_certificate=False,
            use_identity_as_username=False,
        ),
        allow_anonymous=False,
        extra_conf=f"password_file {passwords}\n",
    )
    broker.start()
    try:
        good = tmp_path / "good.secret"
        good.write_text(secret + "\n")
        bad = tmp_path / "bad.secret"
        bad.write_text("not-the-password\n")
        _, config = station_config(
            tmp_path / "ok",
            broker.url,
            ca_file=pki.ca.cert_path,
            username="K03",
            password_file=good,
        )
        db = station_db(config)
        produce(db, config.source, 10)
        with agent_thread(config):
            wait_until(lambda: undelivered(db) == 0, 20, "delivered with a password")
        _, wrong = station_config(
            tmp_path / "bad",
            broker.url,
            ca_file=pki.ca.cert_path,
            username="K03",
            password_file=bad,
        )
        wdb = station_db(wrong)
        produce(wdb, wrong.source, 3)
        with agent_thread(wrong):
            wait_until(lambda: "alert.connect" in outbox.read_state(wdb), 10, "refusal")
        reason = outbox.read_state(wdb)["alert.connect"]["reason"]
        assert "refused the connection" in reason
        assert undelivered(wdb) == 3
    finally:
        broker.stop()
