"""The software release a station runs: in its telemetry, and so in the gateway's station list."""

from __future__ import annotations

from importlib import metadata
from pathlib import Path

import pytest

from edge_agent import health
from edge_agent.gateway import open_store
from tests.support.edge import agent_thread, station_config, station_db
from tests.support.gateway_recorder import Recorder
from tests.support.mosquitto import Broker


def test_a_provisioned_release_is_named_by_its_directory() -> None:
    installed = "/opt/sampling-station/releases/2026.12.03-1/lib/edge_agent/health.py"
    assert health.release(installed) == "2026.12.03-1"


def test_a_checkout_is_named_by_the_package_version(tmp_path: Path) -> None:
    assert health.release(str(tmp_path / "edge_agent" / "health.py")) == metadata.version(
        "sampling-station"
    )


@pytest.mark.timeout(60)
def test_the_release_reaches_the_gateways_station_list(tmp_path: Path, broker: Broker) -> None:
    _, config = station_config(tmp_path, broker.url)
    station_db(config)
    with Recorder(broker.port) as rec, agent_thread(config):
        rec.wait_for(lambda r: len(r.on("telemetry")) == 1, 10, "first telemetry")
        body = rec.on("telemetry")[0].json()
    assert body["release"] == health.release() == metadata.version("sampling-station")
    store = open_store(tmp_path / "gateway.db")
    try:
        store.record_station("T01", "K03", "telemetry", body, 1.0)
        rows = store.query("SELECT release FROM stations WHERE station = %s", ("K03",))
    finally:
        store.close()
    assert rows == [(health.release(),)]
