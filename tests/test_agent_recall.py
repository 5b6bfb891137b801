"""recall_update through a real agent and a real Mosquitto: validated like every command,
applied durably, answered with the version held, and that version in telemetry."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest

from edge_agent import recall_list
from edge_agent.gateway import recall
from tests.support.edge import agent_thread, station_config, station_db
from tests.support.gateway_recorder import Recorder
from tests.support.mosquitto import Broker

PREFIX = "sampling/T01/K03"


def chunk(first: int, last: int, township: str = "T01") -> dict[str, Any]:
    changes = [
        recall.Change(v, "add", f"sub-{v}", f"TB{v:06d}", "pool_positive", "single")
        for v in range(first, last + 1)
    ]
    return recall.commands(township, changes)[0]


def replies(rec: Recorder) -> dict[str, dict[str, Any]]:
    return {m.json()["id"]: m.json() for m in rec.on("replies")}


@pytest.mark.timeout(60)
def test_recall_update_over_mqtt(tmp_path: Path, broker: Broker) -> None:
    _, config = station_config(tmp_path, broker.url)
    db = station_db(config)
    with Recorder(broker.port) as rec, agent_thread(config):
        rec.wait_for(lambda r: len(r.on("telemetry")) == 1, 10, "first telemetry")
        assert rec.on("telemetry")[0].json()["recall_version"] == 0

        def send(command: dict[str, Any]) -> str:
            rec.client.publish(f"{PREFIX}/commands", json.dumps(command).encode(), qos=1)
            cid = str(command["id"])
            rec.wait_for(lambda r: cid in replies(r), 10, f"the reply to {cid}")
            return cid

        ok = send(chunk(1, 3))
        assert replies(rec)[ok] == {
            "id": ok,
            "ok": True,
            "error": None,
            "result": {"recall_version": 3, "applied": 3},
        }
        again = send(chunk(1, 3))  # QoS 1 may deliver twice: nothing changes
        assert replies(rec)[again]["result"] == {"recall_version": 3, "applied": 0}
        gap = send(chunk(6, 8))
        assert replies(rec)[gap] == {
            "id": gap,
            "ok": False,
            "error": "recall_update from 6 leaves a gap: this station holds version 3; send from 4",
            "result": {"recall_version": 3},
        }
        stranger = send(chunk(4, 4, township="T02"))
        assert replies(rec)[stranger]["error"] == (
            "args.township: this station belongs to T01, not T02"
        )
        broken = chunk(4, 4)
        broken["args"]["changes"][0]["action"] = "quarantine"
        bad = send(broken)
        assert replies(rec)[bad]["ok"] is False
        assert "args.changes.0.action" in replies(rec)[bad]["error"]
        assert recall_list.version(db.conn) == 3
        assert db.conn.execute("SELECT count(*) FROM recall_list").fetchone()[0] == 3

        tel = {"id": str(uuid.uuid4()), "command": "request_telemetry"}
        send(tel)
        rec.wait_for(lambda r: len(r.on("telemetry")) == 2, 10, "telemetry on request")
        assert rec.on("telemetry")[-1].json()["recall_version"] == 3
    db.conn.close()
