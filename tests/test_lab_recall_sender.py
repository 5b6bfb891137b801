"""`station gateway recall` against a real Mosquitto: every station of the township gets the
list, one that was offline as soon as it is back, one that is behind from where it stands."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from edge_agent.gateway import recall
from edge_agent.gateway.lab_import import import_results
from edge_agent.gateway.recall_sender import RecallSender
from edge_agent.gateway.results import parse_results
from edge_agent.gateway.store import GatewayStore, open_store
from edge_agent.link import LinkSettings
from tests.support.lab import DAY, LightStation, Township, members
from tests.support.mosquitto import Broker


def wait_until(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise TimeoutError(f"{what} not reached within {timeout} s")


@pytest.fixture
def store(tmp_path: Path) -> Iterator[GatewayStore]:
    """The lab's store (the sender opens its own, as its own process would)."""
    with open_store(tmp_path / "gateway.db") as s:
        t = Township(s)
        for n in range(1, 4):
            t.seal(f"TB00000{n}", members(f"TB00000{n}"), at=DAY + n)
        yield s


def results(store: GatewayStore, text: str) -> None:
    import_results(store, parse_results(text.encode()), source="t", now=DAY)


@pytest.fixture
def sender(store: GatewayStore, broker: Broker, tmp_path: Path) -> Iterator[RecallSender]:
    settings = LinkSettings(
        host="127.0.0.1", port=broker.port, client_id="recall-test", tls=False,
        allow_plaintext=True,
    )  # fmt: skip
    with open_store(tmp_path / "gateway.db") as own:
        s = RecallSender(own, settings, resend_s=2.0, poll_s=0.1)
        thread = threading.Thread(target=s.run, name="recall-sender")
        thread.start()
        yield s
        s.request_stop()
        thread.join(10)
        assert not thread.is_alive()


@pytest.mark.timeout(60)
def test_a_station_offline_at_the_time_gets_the_list_when_it_is_back(
    store: GatewayStore, broker: Broker, sender: RecallSender
) -> None:
    store.record_station("T01", "K04", "status", {"state": "offline"}, DAY)
    k03 = LightStation(broker.port, "T01", "K03")
    k03.status("online")
    results(store, "tube,result\nTB000001,positive\n")
    wait_until(lambda: k03.version == 10, 15, "K03 holding version 10")
    assert set(k03.entries) == set(members("TB000001"))
    # K04 was offline: nothing went its way (its session would not have kept a clean start).
    assert sender.known.get(("T01", "K04")) is None
    results(store, "tube,result\nTB000002,invalid\n")
    wait_until(lambda: k03.version == 20, 15, "K03 holding version 20")
    k04 = LightStation(broker.port, "T01", "K04")
    k04.status("online")
    wait_until(lambda: k04.version == 20, 15, "K04 catching up to version 20")
    assert k04.entries == k03.entries
    assert {e["reason"] for e in k04.entries.values()} == {"pool_positive", "pool_invalid"}
    # K04 was unknown: the sender probed with the latest change, K04 named its gap (0), and
    # the rest followed from version 1.
    assert [(a["from"], a["through"]) for a in k04.received[:2]] == [(20, 20), (1, 20)]
    wait_until(
        lambda: store.query("SELECT version FROM recall_delivery WHERE station = 'K04'") == [(20,)],
        10,
        "K04's confirmed version recorded",
    )
    k03.close()
    k04.close()


@pytest.mark.timeout(60)
def test_telemetry_showing_an_older_version_brings_the_rest(
    store: GatewayStore, broker: Broker, sender: RecallSender
) -> None:
    results(store, "tube,result\nTB000001,positive\nTB000003,positive\n")
    assert recall.heads(store) == {"T01": 20}
    k05 = LightStation(broker.port, "T01", "K05", version=0)
    for change in recall.changes_since(store, "T01", 0, 12):  # it held 12 from an earlier day
        k05.entries[change.sub] = change.as_json()
    k05.version = 12
    k05.telemetry()
    wait_until(lambda: sender.known.get(("T01", "K05")) == 12, 10, "the sender reading it")
    k05.status("online")
    wait_until(lambda: k05.version == 20, 15, "K05 at version 20")
    assert k05.received[0]["from"] == 13
    assert len(k05.entries) == 20
    k05.close()


@pytest.mark.timeout(60)
def test_what_is_not_confirmed_is_sent_again(
    store: GatewayStore, broker: Broker, sender: RecallSender
) -> None:
    deaf = LightStation(broker.port, "T01", "K06")
    deaf.deaf_for = 2  # the first two commands are lost on the way (never applied)
    deaf.status("online")
    results(store, "tube,result\nTB000001,positive\n")
    wait_until(lambda: deaf.version == 10, 20, "K06 at version 10 in the end")
    assert len(deaf.received) >= 3
    deaf.close()
