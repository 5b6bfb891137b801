"""The township broker template of docs/mosquitto, run for real: TLS, per-station ACL,
persistence, the bridge to a city broker, the reference gateway and a station end to end."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from string import Template

import pytest

from edge_agent import outbox
from tests.support.certs import TestCA
from tests.support.edge import (
    agent_thread,
    all_events,
    gateway_events,
    gateway_thread,
    produce,
    station_config,
    station_db,
    undelivered,
    wait_until,
)
from tests.support.gateway_recorder import Recorder, audit
from tests.support.mosquitto import Broker, BrokerTls
from tests.support.ports import free_port

DOCS = Path(__file__).resolve().parents[1] / "docs" / "mosquitto"


def render(name: str, **values: object) -> str:
    return Template((DOCS / name).read_text()).substitute({k: str(v) for k, v in values.items()})


class Township:
    def __init__(self, tmp: Path) -> None:
        self.ca = TestCA(tmp / "ca")
        certs = tmp / "certs"
        certs.mkdir()
        server = self.ca.issue("localhost", server=True)
        bridge = self.ca.issue("bridge-T01")
        shutil.copy(self.ca.cert_path, certs / "township-ca.pem")
        shutil.copy(self.ca.cert_path, certs / "city-ca.pem")
        shutil.copy(server.cert, certs / "broker.pem")
        shutil.copy(server.key, certs / "broker.key")
        shutil.copy(bridge.cert, certs / "bridge.pem")
        shutil.copy(bridge.key, certs / "bridge.key")
        self.k03 = self.ca.issue("K03")
        self.gateway = self.ca.issue("gateway")
        self.city = Broker(
            tmp / "city",
            tls=BrokerTls(
                self.ca.cert_path, server.cert, server.key, use_identity_as_username=False
            ),
        )
        acl = tmp / "acl.conf"
        acl.write_text(render("acl.conf.in", TOWNSHIP="T01"))
        port = free_port()
        conf = render(
            "township.conf.in",
            TOWNSHIP="T01",
            PORT=port,
            CERTS=certs,
            DATA=f"{tmp / 'data'}/",
            ACL=acl,
        ) + render(
            "bridge.conf.in", TOWNSHIP="T01", CERTS=certs, CITY_BROKER=f"127.0.0.1:{self.city.port}"
        )
        (tmp / "data").mkdir()
        conf = conf.replace("log_dest syslog", "log_dest stderr")
        self.broker = Broker(tmp / "township", port=port, raw_conf=conf)
        self.url = f"mqtts://127.0.0.1:{port}"

    def tls_args(self, who: str) -> dict[str, str]:
        issued = self.k03 if who == "K03" else self.gateway
        return {
            "ca_certs": str(self.ca.cert_path),
            "certfile": str(issued.cert),
            "keyfile": str(issued.key),
        }


@pytest.fixture
def township(tmp_path: Path) -> Iterator[Township]:
    t = Township(tmp_path)
    t.city.start()
    t.broker.start()
    try:
        yield t
    finally:
        t.broker.stop()
        t.city.stop()


@pytest.mark.timeout(60)
def test_township_template_end_to_end(tmp_path: Path, township: Township) -> None:
    t = township
    _, config = station_config(
        tmp_path / "station",
        t.url,
        end_to_end_ack=True,
        ca_file=t.ca.cert_path,
        cert_file=t.k03.cert,
        key_file=t.k03.key,
    )
    db = station_db(config)
    gw_db = tmp_path / "gateway.db"
    with (
        Recorder(
            t.city.port,
            ["sampling/T01/+/events"],
            client_id="city-app",
            tls_args=t.tls_args("gateway"),
        ) as city,
        gateway_thread(
            t.broker.port,
            gw_db,
            tls=True,
            ca_file=t.ca.cert_path,
            cert_file=t.gateway.cert,
            key_file=t.gateway.key,
        ),
        agent_thread(config) as agent,
    ):
        produce(db, config.source, 80, per_transaction=8)
        wait_until(lambda: undelivered(db) == 0, 30, "acknowledged by the gateway")
        assert agent.acked_through == 80
        city.wait_for(lambda r: len(r.distinct_event_ids()) == 80, 20, "bridged to the city")
    assert audit(all_events(db), gateway_events(gw_db)).ok
    assert audit(all_events(db), city.events()).ok
    assert "alert.delivery" not in outbox.read_state(db)


@pytest.mark.timeout(30)
def test_template_acl_keeps_stations_to_their_own_topics(township: Township) -> None:
    t = township
    intruder = Recorder(
        t.broker.port,
        ["sampling/T01/+/commands"],
        client_id="k03-snoop",
        tls_args=t.tls_args("K03"),
        persistent=False,
    )
    with intruder:
        # K03 may not write another station's events, nor any acks or commands.
        denied = [
            intruder.client.publish(topic, b"{}", qos=1)
            for topic in (
                "sampling/T01/K04/events",
                "sampling/T01/K03/acks",
                "sampling/T01/K04/commands",
            )
        ]
        allowed = intruder.client.publish("sampling/T01/K03/telemetry", b"{}", qos=1)
        for info in [*denied, allowed]:
            info.wait_for_publish(5)
        with Recorder(
            t.broker.port,
            [
                "sampling/T01/+/acks",
                "sampling/T01/+/commands",
                "sampling/T01/+/events",
                "sampling/T01/+/telemetry",
            ],
            client_id="gw-watch",
            tls_args=t.tls_args("gateway"),
            persistent=False,
        ) as watch:
            intruder.client.publish("sampling/T01/K04/events", b"{}", qos=1).wait_for_publish(5)
            intruder.client.publish("sampling/T01/K03/telemetry", b"{}", qos=1).wait_for_publish(5)
            watch.wait_for(lambda r: bool(r.on("telemetry")), 5, "the allowed publish")
            assert [m.topic for m in watch.messages] == ["sampling/T01/K03/telemetry"]
        # Nor read the commands of another station: the gateway's command to K04 never
        # reaches K03.
        with Recorder(
            t.broker.port, [], client_id="gw-cmd", tls_args=t.tls_args("gateway"), persistent=False
        ) as gw:
            gw.client.publish("sampling/T01/K04/commands", b"{}", qos=1).wait_for_publish(5)
            gw.client.publish("sampling/T01/K03/commands", b"{}", qos=1).wait_for_publish(5)
        intruder.wait_for(lambda r: bool(r.on("commands")), 5, "its own command")
        assert [m.topic for m in intruder.messages] == ["sampling/T01/K03/commands"]
