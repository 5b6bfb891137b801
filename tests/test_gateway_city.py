"""City topology: a township Mosquitto bridged to a city Mosquitto with docs/mosquitto's
bridge template, the gateway at city level on PostgreSQL. Two real brokers on loopback."""

from __future__ import annotations

import shutil
from pathlib import Path
from string import Template

import pytest

from edge_agent.db import Database
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
from tests.support.gateway_recorder import audit
from tests.support.mosquitto import Broker, BrokerTls

DOCS = Path(__file__).resolve().parents[1] / "docs" / "mosquitto"


def bridge_conf(certs: Path, city_port: int) -> str:
    text = Template((DOCS / "bridge.conf.in").read_text()).substitute(
        TOWNSHIP="T01", CITY_BROKER=f"127.0.0.1:{city_port}", CERTS=str(certs)
    )
    return "\nconnection_messages true\n" + text


def published_not_acked(db: Database) -> int:
    return int(
        db.conn.execute(
            "SELECT count(*) FROM outbox WHERE published_at IS NOT NULL AND delivered_at IS NULL"
        ).fetchone()[0]
    )


@pytest.mark.timeout(150)
def test_events_reach_the_city_and_acks_come_back_across_broker_restarts(
    tmp_path: Path, pg_url: str
) -> None:
    ca = TestCA(tmp_path / "ca")
    server, bridge, gateway = (
        ca.issue("localhost", server=True),
        ca.issue("township-T01"),
        ca.issue("gateway"),
    )
    certs = tmp_path / "certs"
    certs.mkdir()
    shutil.copy(ca.cert_path, certs / "city-ca.pem")
    shutil.copy(bridge.cert, certs / "bridge.pem")
    shutil.copy(bridge.key, certs / "bridge.key")
    city = Broker(
        tmp_path / "city",
        tls=BrokerTls(ca.cert_path, server.cert, server.key, use_identity_as_username=False),
        persistence=True,
    )
    city.start()
    township = Broker(
        tmp_path / "township", extra_conf=bridge_conf(certs, city.port), persistence=True
    )
    township.start()
    _, config = station_config(tmp_path, township.url, end_to_end_ack=True, ack_timeout_s=2.0)
    db = station_db(config)
    tls = {"tls": True, "ca_file": ca.cert_path, "cert_file": gateway.cert, "key_file": gateway.key}
    try:
        with gateway_thread(city.port, pg_url, **tls), agent_thread(config) as agent:
            produce(db, config.source, 60, per_transaction=6)
            wait_until(lambda: agent.acked_through == 60, 30, "acked from the city")
            # The uplink drops (the city forgets what it held in memory); the township queues.
            city.kill()
            produce(db, config.source, 60, per_transaction=6)
            wait_until(lambda: published_not_acked(db) == 60, 20, "queued at the township")
            city.start()
            wait_until(lambda: agent.acked_through == 120, 60, "acked after the city's return")
            # Again, and this time the township broker dies too, with the queue in its memory.
            city.kill()
            produce(db, config.source, 60, per_transaction=6)
            wait_until(lambda: published_not_acked(db) == 60, 20, "queued at the township")
            township.kill()
            township.start()
            city.start()
            wait_until(lambda: undelivered(db) == 0, 60, "acked after both returned")
            assert agent.acked_through == 180
    finally:
        township.stop()
        city.stop()
    stored = gateway_events(pg_url)
    assert [e["seq"] for e in stored] == list(range(1, 181))
    assert audit(all_events(db), stored).ok
    assert "city-T01" in township.log_text()
