"""The whole loop back from the lab, against a real Mosquitto and the gateway's store:

a drill at station K03 (two residents in a pooled tube, sealed, the box dispatched) -> the
gateway stores the events -> the lab receives the box -> the LIS file is imported (the pool
is positive) -> the recall list reaches station K04, which was offline at the time, as soon
as it is back -> a recalled resident who checks in at K04 is sent to the single-sample desk.
"""

from __future__ import annotations

import json
import shutil
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from edge_agent import recall_list
from edge_agent.db import open_db
from edge_agent.gateway import recall
from edge_agent.gateway.lab_import import import_results
from edge_agent.gateway.recall_sender import RecallSender
from edge_agent.gateway.receipt import receive_box
from edge_agent.gateway.results import parse_results
from edge_agent.gateway.store import open_store
from edge_agent.link import LinkSettings
from firmware.config import load_config
from kiosk_ui.cli import main
from kiosk_ui.core.national_id import check_char
from tests.support.drills import drill_config
from tests.support.edge import agent_thread, gateway_thread, wait_until
from tests.support.mosquitto import Broker

TUBE, BOX = "TB2026120300001", "BX20261203A1"


def national_id(serial: int) -> str:
    first17 = f"11010519800101{serial:03d}"
    return first17 + check_char(first17)


ALICE, BOB = national_id(11), national_id(22)


def drill(directory: Path, name: str, steps: list[dict[str, Any]]) -> Path:
    path = directory / f"{name}.json"
    path.write_text(json.dumps({"name": name, "steps": steps}, ensure_ascii=False))
    return path


@contextmanager
def recall_sender(broker: Broker, gateway_db: Path) -> Iterator[RecallSender]:
    """``station gateway recall`` in a thread, on its own connection to the store."""
    settings = LinkSettings(
        host="127.0.0.1", port=broker.port, client_id="recall-e2e", tls=False,
        allow_plaintext=True,
    )  # fmt: skip
    with open_store(gateway_db) as store:
        s = RecallSender(store, settings, resend_s=5.0, poll_s=0.2)
        thread = threading.Thread(target=s.run, name="recall-sender")
        thread.start()
        try:
            if not s.connected.wait(10):
                raise TimeoutError("the recall sender did not connect")
            yield s
        finally:
            s.request_stop()
            thread.join(10)
            assert not thread.is_alive()


@pytest.mark.timeout(240)
def test_the_loop_from_a_drill_to_a_recall_at_another_station(
    broker: Broker, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    gateway_db = tmp_path / "gateway.db"
    k03 = drill_config(tmp_path / "k03", broker.url)
    k04 = drill_config(tmp_path / "k04", broker.url, station={"id": "K04", "township": "T01"})
    # One campaign, one ID hash key: the same person is the same sub at every tent.
    shutil.copy(tmp_path / "k03" / "id.key", tmp_path / "k04" / "id.key")
    with gateway_thread(broker.port, gateway_db):
        # K04 has been online before (the gateway knows it), and is offline now.
        with agent_thread(load_config(k04)):
            wait_until(lambda: _online(gateway_db, "K04") is True, 20, "K04 online")
        wait_until(lambda: _online(gateway_db, "K04") is False, 20, "K04 offline")
        day = drill(
            tmp_path,
            "k03-morning",
            [
                {"scan": TUBE},
                {"id": ALICE, "temperature": 36.5},
                {"expect": {"decision": "pool", "position": 1}},
                {"id": BOB, "temperature": 36.6},
                {"expect": {"decision": "pool", "position": 2}},
                {"touch": "seal"},
                {"scan": BOX},
                {"touch": "dispatch", "box": BOX},
            ],
        )
        assert main(["simulate", "--config", str(k03), "--scenario", str(day)]) == 0, (
            capsys.readouterr()
        )
        with open_store(gateway_db) as store:
            last = _last_seq(tmp_path / "k03" / "station.db")
            wait_until(lambda: store.through("T01", "K03") == last, 20, "K03's events stored")
            got = receive_box(store, BOX, [TUBE], limit_h=1e6)
            assert got.problems == [] and got.dispatched_by == "T01/K03"
            report = import_results(
                store, parse_results(f"tube,result\n{TUBE},positive\n".encode()), source="lis"
            )
            assert report.recall == {"T01": (1, 2)}
            recalled = set(recall.listed(store, "T01"))
            assert len(recalled) == 2

        with recall_sender(broker, gateway_db) as sender:
            wait_until(lambda: sender.online.get(("T01", "K04")) is False, 10, "K04's status")
            assert ("T01", "K04") not in sender.sent  # offline: nothing goes its way yet
            back = drill(
                tmp_path,
                "k04-recall",
                [
                    {"recall_version": 2},
                    {"id": ALICE, "temperature": 36.4},
                    {
                        "expect": {
                            "decision": "single",
                            "lane": "single",
                            "reason": "pool_positive",
                        }
                    },
                ],
            )
            code = main(["simulate", "--config", str(k04), "--scenario", str(back)])
            assert code == 0, capsys.readouterr()
            wait_until(lambda: sender.known.get(("T01", "K04")) == 2, 10, "K04's version")
    k04_db = open_db(tmp_path / "k04" / "station.db")
    try:
        assert recall_list.version(k04_db.conn) == 2
        row = k04_db.conn.execute(
            "SELECT decision, lane, reason FROM checkins ORDER BY id DESC LIMIT 1"
        ).fetchone()
        assert tuple(row) == ("single", "single", "pool_positive")
    finally:
        k04_db.conn.close()


def _online(gateway_db: Path, station: str) -> bool | None:
    with open_store(gateway_db) as store:
        rows = store.query(
            "SELECT online FROM stations WHERE township = 'T01' AND station = %s", (station,)
        )
    return None if not rows or rows[0][0] is None else bool(rows[0][0])


def _last_seq(path: Path) -> int:
    db = open_db(path)
    try:
        return int(db.conn.execute("SELECT max(seq) FROM outbox").fetchone()[0])
    finally:
        db.conn.close()
