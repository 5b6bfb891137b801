"""`station simulate`: the shipped drills run headless on simulated hardware, with the real
station, decoder and edge agent, against a real Mosquitto; what reaches the broker keeps the
event contract."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from edge_agent.db import open_db
from kiosk_ui.cli import main
from tests.support.contract import check_outbox, validate_event
from tests.support.drills import DRILLS, drill_config
from tests.support.gateway_recorder import Recorder, audit
from tests.support.mosquitto import Broker
from tests.support.ports import free_port

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.timeout(120)
@pytest.mark.parametrize("drill", DRILLS, ids=[p.stem for p in DRILLS])
def test_shipped_drill_passes_and_every_event_reaches_the_broker(
    drill: Path, broker: Broker, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = drill_config(tmp_path / "station", broker.url)
    with Recorder(broker.port, ["sampling/T01/K03/events"], client_id="drill-test") as rec:
        code = main(["simulate", "--config", str(config), "--scenario", str(drill)])
        out = capsys.readouterr()
        assert code == 0, out.out + out.err
        assert "steps held" in out.out and "agent delivered all" in out.out
        db = open_db(tmp_path / "station" / "station.db")
        try:
            committed = check_outbox(db.conn)
        finally:
            db.conn.close()
        assert committed, "a drill that commits nothing tests nothing"
        rec.wait_for(lambda r: len(r.distinct_event_ids()) >= len(committed), 10, "every event")
    received = rec.events()
    for event in received:
        validate_event(event)
    result = audit(committed, received)
    assert result.ok, result
    assert result.distinct == len(committed)


def drill_file(directory: Path, steps: list[Any]) -> Path:
    path = directory / "drill.json"
    path.write_text(json.dumps({"name": "test", "steps": steps}))
    return path


@pytest.mark.timeout(60)
def test_a_failing_expectation_names_its_step_and_exits_non_zero(
    broker: Broker, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = drill_config(tmp_path / "station", broker.url)
    drill = drill_file(
        tmp_path,
        [
            {"scan": "TB2026112300001"},
            {"show": "NOT-A-CODE"},
            {"expect": {"decision": "pool"}},
            {"scan": "TB2026112300002"},
        ],
    )
    code = main(["simulate", "--config", str(config), "--scenario", str(drill)])
    err = capsys.readouterr().err
    assert code == 1
    assert "step 3 (steps[2]) expect: decision was 'refer', expected 'pool'" in err
    db = open_db(tmp_path / "station" / "station.db")
    try:
        tubes = [r[0] for r in db.conn.execute("SELECT tube FROM tubes")]
    finally:
        db.conn.close()
    assert tubes == ["TB2026112300001"]  # nothing after the failing step ran


@pytest.mark.timeout(60)
def test_a_refused_scan_fails_its_step(
    broker: Broker, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = drill_config(tmp_path / "station", broker.url)
    drill = drill_file(tmp_path, [{"scan": "TB2026112300001"}, {"scan": "TB2026112300001"}])
    assert main(["simulate", "--config", str(config), "--scenario", str(drill)]) == 1
    assert "step 2 (steps[1]) scan TB2026112300001: refused (tube_already_used)" in (
        capsys.readouterr().err
    )


def test_an_unknown_step_key_is_reported_before_anything_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = drill_config(tmp_path / "station", "mqtt://127.0.0.1:9")
    drill = drill_file(tmp_path, [{"scan": "TB2026112300001"}, {"shwo": "HC1:X"}])
    assert main(["simulate", "--config", str(config), "--scenario", str(drill)]) == 1
    assert "step 2 (steps[1]): unknown key 'shwo'" in capsys.readouterr().err
    assert not (tmp_path / "station" / "station.db").exists()


@pytest.mark.timeout(60)
def test_undelivered_events_time_out_with_the_timeout_printed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Nothing listens on the broker's port: the kiosk works, the agent cannot deliver.
    config = drill_config(tmp_path / "station", f"mqtt://127.0.0.1:{free_port()}")
    drill = drill_file(tmp_path, [{"scan": "TB2026112300001"}])
    code = main(["simulate", "--config", str(config), "--scenario", str(drill), "--timeout", "1"])
    out = capsys.readouterr()
    assert code == 3
    assert "all 1 steps held" in out.out
    assert "TIMEOUT after 1 s: 1 events not delivered" in out.err


def test_a_used_database_is_refused_unless_reset(
    broker: Broker, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = drill_config(tmp_path / "station", broker.url)
    drill = drill_file(tmp_path, [{"scan": "TB2026112300001"}])
    assert main(["simulate", "--config", str(config), "--scenario", str(drill)]) == 0
    assert main(["simulate", "--config", str(config), "--scenario", str(drill)]) == 1
    assert "already holds a station's records" in capsys.readouterr().err
    args = ["simulate", "--config", str(config), "--scenario", str(drill), "--reset-db"]
    assert main(args) == 0


def test_a_pi_configuration_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = drill_config(tmp_path / "station", "mqtt://127.0.0.1:9", hardware={"backend": "pi"})
    drill = drill_file(tmp_path, [{"scan": "TB2026112300001"}])
    assert main(["simulate", "--config", str(config), "--scenario", str(drill)]) == 2
    assert "simulated hardware" in capsys.readouterr().err


def test_make_drills_writes_drills_and_only_public_keys(tmp_path: Path) -> None:
    assert main(["simulate", "--make-drills", str(tmp_path / "drills")]) == 0
    trust = json.loads((tmp_path / "demo-issuers.jwks.json").read_text())
    assert len(trust["keys"]) == 2
    for key in trust["keys"]:
        assert "d" not in key  # a JWK's private part
    assert len(list((tmp_path / "drills").glob("*.json"))) == 7


@pytest.mark.timeout(60)
def test_watch_prints_each_event_as_it_reaches_the_broker(
    broker: Broker, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = drill_config(tmp_path / "station", broker.url)
    drill = ROOT / "examples" / "drills" / "fever.json"
    assert main(["simulate", "--config", str(config), "--scenario", str(drill), "--watch"]) == 0
    lines = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("broker <- ")]
    assert lines[0] == "broker <- #1 sampling.tube.opened tube=TB2026112300011"
    assert any("sampling.alert.raised" in ln and "kind=fever" in ln for ln in lines)
    assert len(lines) == 8


@pytest.mark.timeout(60)
def test_watch_without_a_broker_is_a_clear_error_before_anything_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = drill_config(tmp_path / "station", f"mqtt://127.0.0.1:{free_port()}")
    drill = drill_file(tmp_path, [{"scan": "TB2026112300001"}])
    args = ["simulate", "--config", str(config), "--scenario", str(drill), "--watch"]
    assert main(args) == 1
    err = capsys.readouterr().err
    assert "station simulate: --watch cannot reach the broker: cannot reach 127.0.0.1:" in err
    assert not (tmp_path / "station" / "station.db").exists()
