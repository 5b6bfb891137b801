"""Power cuts: a real kiosk process (tests/support/powercut.py) is killed with SIGKILL, with
everything it started, at random moments while residents check in, again and again, and
started again; a real agent delivers to a real Mosquitto throughout.

After every cut: ``PRAGMA integrity_check`` is ok; every check-in the screen confirmed is in
the store with its event, in the tube and place (or the queue) the screen showed; every
check-in in the store is whole (its row and its events, nothing half-written, seq without
gaps, every event keeps the contract); and the restarted kiosk finds the open tube and the
waiting queue as they were. At the end every confirmed check-in reached the broker.
"""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from kiosk_ui.drills.issuer import Issuer, jwks
from tests.support.contract import check_outbox
from tests.support.drills import drill_config
from tests.support.edge import ROOT, agent_process, stop_agent, wait_until
from tests.support.gateway_recorder import Recorder
from tests.support.mosquitto import Broker
from tests.support.powercut import PER_RUN

CUTS_FOR_S = 50.0  # cut the power for about this long, at least MIN_CUTS times
MIN_CUTS = 8


def read_log(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:  # the last line, cut by the SIGKILL half-way
            continue
    return out


def store_state(db: Path) -> dict[str, Any]:
    """What the database holds, read as a technician would (read-only, with SQL)."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        events = check_outbox(conn)  # every event keeps the contract, seq has no gaps
        checkins = conn.execute("SELECT resident, event_seq FROM checkins").fetchall()
        open_tube = conn.execute("SELECT tube FROM tubes WHERE state = 'open'").fetchall()
        members = conn.execute(
            "SELECT tube, resident, position FROM tube_members WHERE position IS NOT NULL"
        ).fetchall()
        waiting = conn.execute("SELECT resident FROM waiting ORDER BY id").fetchall()
    finally:
        conn.close()
    return {
        "events": events,
        "checkins": {str(r): int(s) for r, s in checkins},
        "open_tube": open_tube[0][0] if open_tube else None,
        "members": {(str(t), int(p)): str(r) for t, r, p in members},
        "waiting": [str(r) for (r,) in waiting],
    }


def check_after_cut(db: Path, confirmed: list[dict[str, Any]]) -> dict[str, Any]:
    state = store_state(db)
    recorded = {
        e["data"]["resident"]: e
        for e in state["events"]
        if e["type"] == "sampling.checkin.recorded"
    }
    # Every check-in in the store is whole: its row and its event, one each.
    assert set(recorded) == set(state["checkins"])
    for resident, seq in state["checkins"].items():
        assert recorded[resident]["seq"] == seq
    # Every check-in the screen confirmed is there, where the screen said.
    for c in confirmed:
        assert c["confirmed"] in state["checkins"], f"confirmed, then lost: {c}"
        if c["tube"] is not None:
            assert state["members"][(c["tube"], c["position"])] == c["confirmed"], c
        elif c["queue_place"] is not None:
            in_tube = c["confirmed"] in state["members"].values()
            assert in_tube or c["confirmed"] in state["waiting"], c
    return state


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_power_cuts_during_check_ins_lose_nothing_the_screen_confirmed(
    tmp_path: Path, broker: Broker
) -> None:
    issuer = Issuer.generate("ES256")
    config = drill_config(
        tmp_path,
        broker.url,
        sampling={"pool_size": 3},
        kiosk={"id_hash_key_file": "id.key", "result_timeout_s": 1.0},
    )
    (tmp_path / "issuers.jwks.json").write_text(json.dumps(jwks([issuer])))
    db = tmp_path / "station.db"
    codes_file = tmp_path / "codes.json"
    subs = [f"pc-{i:05d}" for i in range(PER_RUN * 60)]
    codes_file.write_text(json.dumps([[issuer.issue(s), s] for s in subs]))
    log = tmp_path / "confirmed.log"
    rng = random.Random(20261203)
    cuts, started = 0, time.monotonic()
    last: dict[str, Any] = {"open_tube": None, "members": {}, "waiting": [], "checkins": {}}
    with Recorder(broker.port) as rec, (tmp_path / "kiosk.log").open("ab") as kiosk_err:
        agent = agent_process(config, tmp_path / "agent.log")
        try:
            while cuts < MIN_CUTS or time.monotonic() - started < CUTS_FOR_S:
                before = len(read_log(log))
                kiosk = subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "tests.support.powercut",
                        str(config),
                        str(codes_file),
                        str(log),
                        str(cuts * PER_RUN),
                        str(cuts),
                    ],
                    cwd=ROOT,
                    start_new_session=True,
                    stdout=subprocess.DEVNULL,
                    stderr=kiosk_err,
                )
                try:
                    wait_until(lambda b=before: len(read_log(log)) > b, 60, "the kiosk up")
                    entries = read_log(log)
                    started_as = entries[before]
                    assert started_as["run"] == cuts
                    # The restarted kiosk finds the tube and the queue as they were.
                    assert started_as["open_tube"] == last["open_tube"]
                    assert started_as["members"] == [
                        r for (t, _), r in sorted(last["members"].items()) if t == last["open_tube"]
                    ]
                    assert started_as["waiting"] == last["waiting"]
                    time.sleep(rng.uniform(0.2, 2.5))
                    assert kiosk.poll() is None, (tmp_path / "kiosk.log").read_text()[-3000:]
                finally:
                    os.killpg(kiosk.pid, signal.SIGKILL)  # the power goes, for all it runs
                    kiosk.wait(10)
                cuts += 1
                confirmed = [e for e in read_log(log) if "confirmed" in e]
                last = check_after_cut(db, confirmed)
            wait_until(lambda: _delivered(db), 60, "the agent delivering everything")
        finally:
            stop_agent(agent, tmp_path / "agent.log")
    confirmed = [e for e in read_log(log) if "confirmed" in e]
    seen = {c["confirmed"] for c in confirmed}
    unseen = set(last["checkins"]) - seen  # committed as the power went, never shown
    print(f"{cuts} cuts, {len(seen)} check-ins confirmed, {len(unseen)} committed unseen")
    assert len(seen) >= 2 * cuts, f"{len(confirmed)} check-ins in {cuts} runs"
    with rec.lock:
        sent = [m.json() for m in rec.messages if m.topic.endswith("/events")]
    at_broker = {e["data"]["resident"] for e in sent if e["type"] == "sampling.checkin.recorded"}
    assert seen <= at_broker
    assert at_broker == set(last["checkins"])


def _delivered(db: Path) -> bool:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return (
            conn.execute("SELECT count(*) FROM outbox WHERE delivered_at IS NULL").fetchone()[0]
            == 0
        )
    finally:
        conn.close()
